"""Validate a whole poll of Kafka records in one pydantic call instead of one call per record.

For high-volume consumers (analytics reads every topic at tens of thousands of events/s) the per-record
``decode_event`` call — JSON parse, discriminated-union dispatch and model construction, each entered from Python —
was the largest single cost. One ``list[Json[AnyEvent]]`` validation over the raw values does the same work inside
pydantic-core and costs ~55-70 % of it (benchmarks/results/ingest_throughput.md).

The contract is unchanged: an event is accepted here exactly when ``decode_event(value, topic)`` accepts it (same
union, JSON parsed by pydantic-core, same topic check; tests/unit/test_bus_bulk_decode.py compares both over a
mutation corpus), and every rejected record gets the error message ``decode_event`` gives it, because rejected
records are re-decoded one by one (rare, so the cost does not matter).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, Union

from aiokafka import ConsumerRecord
from pydantic import Field, Json, TypeAdapter, ValidationError

from libs.common.events import EVENT_TYPES, Event, InvalidEvent, decode_event

_ANY_EVENTS_JSON: TypeAdapter[list[Event]] = TypeAdapter(
    list[Json[Annotated[Union[EVENT_TYPES], Field(discriminator="type")]]]  # type: ignore[valid-type]  # noqa: UP007
)
"""The same discriminated union as ``decode_event``, over a list of raw JSON values (each parsed on its own, so one
record can never spill into its neighbour the way joining values into one JSON array could)."""


INGEST_GC_GEN0_THRESHOLD = 50_000
"""Young-generation threshold for processes that ingest in bulk: Python's 700 re-scans each batch (~10 live objects per
event) dozens of times."""


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector for one synchronous burst of allocations (no awaits inside).

    Validating a poll allocates ~10 tracked objects per event that all stay alive until the batch is written, so
    the collector, triggered every 700 allocations, traverses the same growing young generation over and over: it
    tripled the cost of bulk validation in the benchmark. These objects hold no reference cycles (models, tuples,
    records), so deferring collection loses nothing; one collection runs when allocation resumes afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


Decoded = tuple[list[tuple[ConsumerRecord[Any, Any], Event]], list[tuple[ConsumerRecord[Any, Any], InvalidEvent]]]


def decode_records(records: Sequence[ConsumerRecord[Any, Any]]) -> Decoded:
    """Split ``records`` into (record, event) pairs and (record, error) pairs, both in the records' order.

    Valid records are validated in bulk; the indices pydantic reports as failing are decoded singly with
    ``decode_event`` for their exact error, and the rest are validated in bulk again. Each round removes at least one
    record, so a poll with a few poison messages costs a few extra bulk calls, never a per-record fallback.
    """
    valid: dict[int, Event] = {}
    invalid: dict[int, InvalidEvent] = {}
    pending = []
    for index, record in enumerate(records):
        if record.value:
            pending.append(index)
        else:
            invalid[index] = InvalidEvent("empty message")
    while pending:
        try:
            events = _ANY_EVENTS_JSON.validate_python([records[i].value for i in pending])
        except ValidationError as exc:
            failing = {pending[loc[0]] for loc in (e["loc"] for e in exc.errors()) if loc and isinstance(loc[0], int)}
            if not failing:  # no per-item location: decode this round one by one (never seen; kept exact anyway)
                failing = set(pending)
            for index in failing:
                _decode_single(records[index], index, valid, invalid)
            pending = [i for i in pending if i not in failing]
            continue
        for index, event in zip(pending, events, strict=True):
            record = records[index]
            if record.topic == event.TOPIC:
                valid[index] = event
            else:
                _decode_single(record, index, valid, invalid)  # for decode_event's exact wrong-topic message
        pending = []
    return (
        [(records[i], valid[i]) for i in sorted(valid)],
        [(records[i], invalid[i]) for i in sorted(invalid)],
    )


def _decode_single(
    record: ConsumerRecord[Any, Any], index: int, valid: dict[int, Event], invalid: dict[int, InvalidEvent]
) -> None:
    try:
        valid[index] = decode_event(record.value, record.topic)
    except InvalidEvent as exc:
        invalid[index] = exc
