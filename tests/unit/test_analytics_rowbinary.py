"""The RowBinary fast path, pure part: encoded rows decode to ``event_row``'s values; blocks and tokens match."""

from __future__ import annotations

import struct
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from libs.common.bus import Delivery
from libs.common.events import Event, PageViewed, decode_event
from libs.common.events.examples import VISITOR, examples
from services.analytics.ingest import EVENT_COLUMNS, build_blocks, event_row
from services.analytics.ingest_rowbinary import (
    ROWBINARY_COLUMNS,
    batch_dedup_token,
    build_rowbinary_blocks,
    datetime64_ms,
    varint,
)

INGESTED_AT = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


class RowReader:
    """Decodes one RowBinary row of ROWBINARY_COLUMNS (what ClickHouse does in C++), for the assertions."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def varint(self) -> int:
        shift = value = 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    def string(self) -> str:
        return self.take(self.varint()).decode()

    def row(self) -> dict[str, Any]:
        high, low, occurred_ms, offset = struct.unpack("<QQqQ", self.take(32))
        row: dict[str, Any] = {"event_id": uuid.UUID(int=(high << 64) | low)}
        row["occurred_at"], row["offset"] = ms_to_datetime(occurred_ms), offset
        for column in ("type", "photo_id", "visitor_id", "share_id", "payload", "topic"):
            row[column] = self.string()
        row["partition"], ingested_ms = struct.unpack("<Hq", self.take(10))
        row["ingested_at"] = ms_to_datetime(ingested_ms)
        assert list(row) == sorted(row, key=ROWBINARY_COLUMNS.index)
        return row


def ms_to_datetime(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)


def truncated_to_ms(value: datetime) -> datetime:
    """What DateTime64(3) keeps of a datetime (clickhouse-connect floors to the millisecond)."""
    return value.astimezone(UTC).replace(microsecond=value.microsecond // 1000 * 1000)


def deliver(event: Event, partition: int = 0, offset: int = 0, raw: bytes | None = None) -> Delivery:
    data = event.to_bytes() if raw is None else raw
    return Delivery(decode_event(data, event.TOPIC) if data else event, event.TOPIC, partition, offset, data)


def odd_events() -> list[Delivery]:
    """Examples plus values that stress the encoding: a UTC+2 timestamp on a millisecond edge, non-ASCII text in a
    ~2 kB payload (two-byte length prefix) and a delivery without raw bytes (payload from the model)."""
    out = [deliver(e, i % 3, 100 + i) for i, e in enumerate(examples())]
    edge = datetime(2026, 3, 1, 2, 0, 0, 999999, tzinfo=timezone(timedelta(hours=2)))
    out.append(deliver(PageViewed(visitor_id=VISITOR, path="/ünïcødé/" + "x" * 2_000, occurred_at=edge), 1, 7))
    out.append(deliver(examples()[0], 2, 9, raw=b""))
    return out


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 16_383, 16_384, 2**21, 2**35])
def test_varint_is_leb128(n: int) -> None:
    reader = RowReader(varint(n))
    assert reader.varint() == n and reader.pos == len(reader.data)


def test_datetime64_ms_floors_exactly_in_any_timezone() -> None:
    assert datetime64_ms(datetime(1970, 1, 1, 0, 0, 0, 999, tzinfo=UTC)) == 0
    assert datetime64_ms(datetime(2026, 1, 1, 0, 0, 0, 999999, tzinfo=UTC)) % 1000 == 999
    assert datetime64_ms(datetime(1969, 12, 31, 23, 59, 59, 999500, tzinfo=UTC)) == -1
    plus_two = datetime(2026, 1, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))
    assert datetime64_ms(plus_two) == datetime64_ms(datetime(2026, 1, 1, tzinfo=UTC))


def test_encoded_rows_decode_to_event_row_values() -> None:
    deliveries = odd_events()
    blocks = build_rowbinary_blocks(deliveries, INGESTED_AT)
    decoded = [RowReader(row).row() for block in blocks for row in block.rows]
    by_offset = {(r["topic"], r["partition"], r["offset"]): r for r in decoded}
    assert len(by_offset) == len(deliveries)
    for delivery in deliveries:
        expected = dict(zip(EVENT_COLUMNS, event_row(delivery, INGESTED_AT), strict=True))
        expected["occurred_at"] = truncated_to_ms(expected["occurred_at"])
        expected["ingested_at"] = truncated_to_ms(expected["ingested_at"])
        assert by_offset[(delivery.topic, delivery.partition, delivery.offset)] == expected


def test_blocks_and_tokens_are_those_of_build_blocks() -> None:
    deliveries = odd_events()
    encoded = build_rowbinary_blocks(deliveries, INGESTED_AT)
    plain = build_blocks(deliveries, INGESTED_AT)
    shape = [(b.topic, b.partition, b.first_offset, b.last_offset, b.dedup_token, len(b.rows)) for b in encoded]
    assert shape == [(b.topic, b.partition, b.first_offset, b.last_offset, b.dedup_token, len(b.rows)) for b in plain]


def test_batch_token_changes_with_any_block_and_repeats_for_a_retry() -> None:
    deliveries = odd_events()
    blocks = build_rowbinary_blocks(deliveries, INGESTED_AT)
    again = build_rowbinary_blocks(deliveries[::-1], datetime.now(UTC))  # order and time do not matter
    assert batch_dedup_token(blocks) == batch_dedup_token(again)
    assert batch_dedup_token(blocks).startswith(f"batch:{len(blocks)}:{sum(len(b.rows) for b in blocks)}:")
    changed = [*blocks[:-1], replace(blocks[-1], dedup_token=blocks[-1].dedup_token + "x")]
    assert batch_dedup_token(changed) != batch_dedup_token(blocks)
    assert batch_dedup_token(blocks[:-1]) != batch_dedup_token(blocks)
