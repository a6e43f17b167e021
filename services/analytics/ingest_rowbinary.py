"""Deliveries → ``{db}.events`` rows already encoded as ClickHouse RowBinary: the ingestion fast path.

The tuple rows of ``ingest.build_blocks`` go through clickhouse-connect's generic Native serializer, which walks
every value of every column in Python (~15 µs/event with chDB, the second-largest cost of ingestion). Here each row
is packed once with ``struct`` and handed over as bytes with ``raw_insert``; ClickHouse decodes it in C++. The values
are the ones ``ingest.event_row`` produces (same ids, same share attribution, same millisecond flooring of
DateTime64(3), the original Kafka bytes as payload), so both paths store identical rows — an integration test reads
both back from chDB to prove it. Grouping and per-(topic, partition) tokens are shared with ``ingest``; the store
writes all encoded blocks of a batch in one insert (see ``batch_dedup_token``).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from libs.common.bus import Delivery
from services.analytics.ingest import (
    EVENT_COLUMNS,
    TOKEN_DIGEST_BYTES,
    partition_groups,
    photo_id_of,
    share_id_of,
)

_FIXED_WIDTH_COLUMNS = ("event_id", "occurred_at", "offset")
ROWBINARY_COLUMNS: tuple[str, ...] = _FIXED_WIDTH_COLUMNS + tuple(
    c for c in EVENT_COLUMNS if c not in _FIXED_WIDTH_COLUMNS
)
"""Column order of the encoded rows: the fixed-width values first (one ``struct`` call), then ``EVENT_COLUMNS``'
strings and the block's topic, partition and ingested_at, in their order."""

ROWBINARY_FORMAT = "RowBinary"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)  # DateTime64(3): clickhouse-connect floors to the millisecond; so do we
_LOW_64 = (1 << 64) - 1
_FIXED = struct.Struct("<QQqQ")  # UUID as two little-endian UInt64 (high half first), DateTime64(3), UInt64 offset
_BLOCK_TAIL = struct.Struct("<Hq")  # partition UInt16, ingested_at DateTime64(3): the same for a whole block


@dataclass(frozen=True)
class RowBinaryBlock:
    """One insert's worth of encoded rows from one (topic, partition) and its deduplication token."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    dedup_token: str
    rows: list[bytes]


def batch_dedup_token(blocks: Sequence[RowBinaryBlock]) -> str:
    """The token of one insert holding several blocks: equal exactly when every block's token is.

    A retried write of the same batch is dropped as a whole. A batch re-read after a crash between write and commit
    starts at the same offsets but may end elsewhere (a poll is size-or-time), so its token can differ and its
    duplicates land — as with per-block tokens whenever a range ends at another offset; ReplacingMergeTree and the
    queries' FINAL / uniqExact(event_id) absorb them (see 001_events.sql).
    """
    digest = hashlib.blake2b("|".join(b.dedup_token for b in blocks).encode(), digest_size=TOKEN_DIGEST_BYTES)
    return f"batch:{len(blocks)}:{sum(len(b.rows) for b in blocks)}:{digest.hexdigest()}"


def varint(n: int) -> bytes:
    """LEB128, the length prefix of RowBinary strings (one byte below 128, two below 16384)."""
    if n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_ONE_BYTE = tuple(bytes((n,)) for n in range(0x80))  # the length prefixes of every id and type string


def rowbinary_string(text: str) -> bytes:
    """A String value: length prefix, then the UTF-8 bytes."""
    raw = text.encode()
    return varint(len(raw)) + raw


def datetime64_ms(value: datetime) -> int:
    """Milliseconds since the epoch, floored exactly (no float rounding near a millisecond boundary)."""
    return (value - _EPOCH) // _ONE_MS


def encode_row(delivery: Delivery, block_tail: bytes) -> bytes:
    """One row in ``ROWBINARY_COLUMNS`` order; ``block_tail`` is the encoded topic, partition and ingested_at.

    Written flat (no helper calls per column): this runs once per event on the consumer's event loop.
    """
    event = delivery.event
    fields = event.__dict__  # not getattr: a missing attribute on a pydantic model costs an AttributeError
    uuid = event.event_id.int
    payload = delivery.raw or event.model_dump_json().encode()
    kind = event.type.encode()
    photo = photo_id_of(fields).encode()
    visitor = (fields.get("visitor_id") or "").encode()
    share = share_id_of(fields).encode()
    return b"".join(
        (
            _FIXED.pack(uuid >> 64, uuid & _LOW_64, (event.occurred_at - _EPOCH) // _ONE_MS, delivery.offset),
            varint(len(kind)),
            kind,
            varint(len(photo)),
            photo,
            varint(len(visitor)),
            visitor,
            varint(len(share)),
            share,
            varint(len(payload)),
            payload,
            block_tail,
        )
    )


def build_rowbinary_blocks(deliveries: Sequence[Delivery], ingested_at: datetime | None = None) -> list[RowBinaryBlock]:
    """``ingest.build_blocks`` with encoded rows: same groups, same order, same tokens."""
    ingested_ms = datetime64_ms(ingested_at or datetime.now(UTC))
    blocks: list[RowBinaryBlock] = []
    for group in partition_groups(deliveries):
        tail = rowbinary_string(group.topic) + _BLOCK_TAIL.pack(group.partition, ingested_ms)
        rows = [encode_row(d, tail) for d in group.deliveries]
        blocks.append(
            RowBinaryBlock(group.topic, group.partition, group.first_offset, group.last_offset, group.dedup_token, rows)
        )
    return blocks
