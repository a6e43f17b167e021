"""Bulk validation (libs.common.bus.bulk) gives exactly decode_event's verdicts and errors, record for record."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka import ConsumerRecord

from libs.common.bus import ConsumerRunner, RecordingPublisher
from libs.common.bus.bulk import decode_records, gc_paused
from libs.common.events import InvalidEvent, decode_event, dlq_topic
from libs.common.events.examples import examples
from libs.common.settings import KafkaSettings

# Replacement values that exercise pydantic's JSON-mode coercions (numbers as strings, bools, nulls, containers).
ALTERNATIVES: list[Any] = [None, True, 0, -1, 1.5, 2.0, "1", "true", "", "x" * 70, [], {}, [1, 2], 1700000000,
                           "2026-01-01T00:00:00+02:00", "ph0t0ExampleId_abcdef"]


def record(topic: str, value: bytes | None, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    size = len(value) if value else 0
    return ConsumerRecord(topic, 0, offset, 0, 0, None, value, None, 0, size, [])


def mutations(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Each top-level field replaced by each alternative or removed, one level deep into objects, plus an extra
    field: a few thousand documents, most of them invalid in one specific way."""
    for key, value in doc.items():
        for alternative in ALTERNATIVES:
            yield {**doc, key: alternative}
        if isinstance(value, dict):
            for inner in mutations(value):
                yield {**doc, key: inner}
        yield {k: v for k, v in doc.items() if k != key}
    yield {**doc, "unexpected": 1}


def single_verdict(rec: ConsumerRecord[bytes, bytes]) -> tuple[str, Any]:
    try:
        return "valid", decode_event(rec.value, rec.topic).model_dump()
    except InvalidEvent as exc:
        return "invalid", str(exc)


def test_bulk_verdicts_and_errors_equal_decode_event_over_a_mutation_corpus() -> None:
    records = []
    for event in examples():
        docs = mutations(json.loads(event.model_dump_json()))
        records += [record(event.TOPIC, json.dumps(doc).encode()) for doc in docs]
    valid, invalid = decode_records(records)
    bulk: dict[int, tuple[str, Any]] = {id(r): ("valid", e.model_dump()) for r, e in valid}
    bulk |= {id(r): ("invalid", str(err)) for r, err in invalid}
    mismatches = []
    for rec in records:
        expected = single_verdict(rec)
        got = bulk[id(rec)]
        if expected[0] != got[0] or (expected[0] == "invalid" and expected != got):
            mismatches.append((rec.value, expected, got))
        elif expected[0] == "valid":  # defaults such as a missing event_id are random: compare the rest
            volatile = {"event_id", "occurred_at", "trace_id"}
            if {k: v for k, v in expected[1].items() if k not in volatile} != {
                k: v for k, v in got[1].items() if k not in volatile
            }:
                mismatches.append((rec.value, expected, got))
    assert len(records) > 1000 and len(invalid) > 500 and len(valid) > 100  # the corpus really has both kinds
    assert mismatches == []


def test_order_is_kept_and_each_bad_record_gets_its_own_error() -> None:
    good = [e for e in examples()]
    page_viewed = next(e for e in good if e.type == "page.viewed")
    records = [record(e.TOPIC, e.to_bytes(), i) for i, e in enumerate(good)]
    records.insert(3, record("photo.uploaded", b"\xff not json"))
    records.insert(5, record("photo.uploaded", page_viewed.to_bytes()))  # valid event, wrong topic
    records.insert(7, record("photo.uploaded", None))
    records.insert(8, record("photo.uploaded", b'{"type": "photo.uploaded", "photo_id": "short"}'))
    valid, invalid = decode_records(records)
    assert [r.offset for r, _ in valid] == list(range(len(good)))
    assert [e.event_id for _, e in valid] == [e.event_id for e in good]
    errors = [str(err) for _, err in invalid]
    assert errors[0].startswith("undecodable") or errors[0].startswith("schema validation failed")
    assert errors[1] == "event type 'page.viewed' does not belong on topic 'photo.uploaded'"
    assert errors[2] == "empty message"
    assert errors[3].startswith("schema validation failed")
    assert [str(single_verdict(r)[1]) for r, _ in invalid] == errors


async def test_the_runner_dead_letters_bulk_rejects_with_their_error_and_keeps_the_rest() -> None:
    publisher = RecordingPublisher()
    runner = ConsumerRunner(
        KafkaSettings(bootstrap="127.0.0.1:9"), group_id="g", topics=["photo.uploaded"], dlq_publisher=publisher,
        batch_handler=lambda deliveries: None,  # type: ignore[arg-type,return-value]  # never called here
        bulk_decode=True,
    )
    event = examples()[0]
    records = [record(event.TOPIC, b"{broken", 0), record(event.TOPIC, event.to_bytes(), 1)]
    deliveries = await runner._decode(records)
    assert [(d.event, d.offset, d.raw) for d in deliveries] == [(event, 1, event.to_bytes())]
    ((topic, value, _, headers),) = publisher.raw
    assert (topic, value) == (dlq_topic(event.TOPIC), b"{broken")
    assert dict(headers)["error"].decode() == single_verdict(records[0])[1]
    assert runner.stats.dead_lettered == 1


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_paused_restores_the_collector_state(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        with gc_paused():
            assert not gc.isenabled()
        assert gc.isenabled() is enabled
        with pytest.raises(RuntimeError), gc_paused():
            raise RuntimeError("boom")
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
