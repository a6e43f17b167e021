"""Event contracts: every example validates and round-trips; bad payloads are rejected as InvalidEvent."""

from __future__ import annotations

import json

import pytest

from libs.common.events import EVENT_TYPES, TOPICS, InvalidEvent, PhotoUploaded, decode_event, dlq_topic
from libs.common.events.examples import examples


def test_there_is_one_example_per_event_type_and_each_round_trips() -> None:
    found = examples()
    assert {type(e) for e in found} == set(EVENT_TYPES)
    for event in found:
        assert decode_event(event.to_bytes(), event.TOPIC) == event
        assert event.occurred_at.tzinfo is not None


def test_envelope_fields_are_present() -> None:
    doc = json.loads(examples()[0].to_bytes())
    for field in ("event_id", "type", "schema_version", "occurred_at", "trace_id", "producer"):
        assert field in doc


@pytest.mark.parametrize(
    "raw",
    [b"", b"\xff\xfe", b"not json", b"[]", b'{"type": "unknown.event"}', b'{"type": "photo.uploaded"}'],
)
def test_garbage_is_an_invalid_event(raw: bytes) -> None:
    with pytest.raises(InvalidEvent):
        decode_event(raw)


def test_an_event_on_the_wrong_topic_is_invalid() -> None:
    event = examples()[0]
    with pytest.raises(InvalidEvent):
        decode_event(event.to_bytes(), "photo.deleted")


def test_naive_timestamps_and_bad_ids_are_rejected() -> None:
    doc = json.loads(examples()[0].to_bytes())
    with pytest.raises(InvalidEvent):
        decode_event(json.dumps({**doc, "occurred_at": "2026-01-01T00:00:00"}).encode())
    with pytest.raises(InvalidEvent):
        decode_event(json.dumps({**doc, "photo_id": "../../etc/passwd"}).encode())


def test_every_topic_has_a_dead_letter_twin_and_per_photo_events_are_keyed_by_photo() -> None:
    assert len(TOPICS) == len(set(TOPICS))
    assert dlq_topic("photo.uploaded") == "photo.uploaded.dlq"
    event = next(e for e in examples() if isinstance(e, PhotoUploaded))
    assert event.partition_key == event.photo_id
