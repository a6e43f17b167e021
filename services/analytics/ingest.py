"""Deliveries → rows of ``{db}.events``, grouped into insert blocks with a deterministic deduplication token.

Pure functions (no Kafka, no ClickHouse): the transform step of the snuba chain. The event was already validated once
on arrival (``decode_event`` or its bulk form); rows are built from that model and the original bytes, never
re-serialized. The consumer encodes the same rows as RowBinary (``ingest_rowbinary``); these tuple rows serve the
dashboard dev server, the simulator and tests.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from libs.common.bus import Delivery
from libs.common.ids import ID_PATTERN

EVENTS_TABLE = "events"

EVENT_COLUMNS: tuple[str, ...] = (
    "event_id",
    "type",
    "occurred_at",
    "photo_id",
    "visitor_id",
    "share_id",
    "payload",
    "topic",
    "partition",
    "offset",
    "ingested_at",
)
"""Column order of every row tuple built here (and of the insert's ``column_names``)."""

TOKEN_DIGEST_BYTES = 8  # 64 bits: a collision between two different batches at the same offsets is negligible

Row = tuple[Any, ...]

RESULT_PAGE_PREFIX = "/p/"  # the website's result page of one photo, /p/{photo_id} (services/upload/web/pages.py)
_PHOTO_ID = re.compile(ID_PATTERN)


@dataclass(frozen=True)
class InsertBlock:
    """The rows of one batch from one (topic, partition): one insert, one deduplication token."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    dedup_token: str
    rows: list[Row]


def share_id_of(fields: dict[str, Any]) -> str:
    """The share this event is about or came through: its own share_id, else its attribution's (the referral loop)."""
    own = fields.get("share_id")
    if own:
        return str(own)
    attribution = fields.get("attribution")
    return str(attribution.share_id) if attribution is not None and attribution.share_id else ""


def photo_id_of(fields: dict[str, Any]) -> str:
    """The photo this event is about: its own photo_id, else the photo of a result page view (/p/{photo_id}).

    A result page is viewed by the photo's owner, so such a view links a visitor to the photo; storing that photo id
    in the ``photo_id`` column lets deleting the photo find and drop the view (services/analytics/forget.py) with the
    column's bloom filter instead of parsing every page view's JSON. Queries select pipeline stages by type, so an
    extra page.viewed row carrying a photo id changes no figure.
    """
    own = fields.get("photo_id")
    if own:
        return str(own)
    path = fields.get("path")  # only page.viewed has one
    if path and path.startswith(RESULT_PAGE_PREFIX):
        candidate = path[len(RESULT_PAGE_PREFIX) :]
        if _PHOTO_ID.fullmatch(candidate):
            return candidate
    return ""


def event_row(delivery: Delivery, ingested_at: datetime) -> Row:
    """One ``events`` row; missing ids become '' (ClickHouse String, not Nullable: cheaper and simpler to filter).

    Reads the model's field dict rather than ``getattr``: a missing attribute on a pydantic model costs an
    AttributeError round trip, which showed up as the biggest cost of this function in the benchmark.
    """
    event = delivery.event
    fields = event.__dict__
    payload = delivery.raw.decode() if delivery.raw else event.model_dump_json()
    return (
        event.event_id,
        event.type,
        event.occurred_at.astimezone(UTC),
        photo_id_of(fields),
        fields.get("visitor_id") or "",
        share_id_of(fields),
        payload,
        delivery.topic,
        delivery.partition,
        delivery.offset,
        ingested_at,
    )


def dedup_token(topic: str, partition: int, first_offset: int, last_offset: int, event_ids: Iterable[bytes]) -> str:
    """``topic:partition:first-last:digest``; identical for a re-read of the same offsets, different otherwise.

    The offsets make the token readable in system tables; the digest of the event ids guards against offsets that
    restart at 0 (a recreated topic, or Tansu's in-memory storage after a broker restart), where offsets alone would
    make ClickHouse silently drop genuinely new events as "duplicates".
    """
    digest = hashlib.blake2b(b"".join(event_ids), digest_size=TOKEN_DIGEST_BYTES).hexdigest()
    return f"{topic}:{partition}:{first_offset}-{last_offset}:{digest}"


@dataclass(frozen=True)
class PartitionGroup:
    """The deliveries of one batch from one (topic, partition), in offset order, with their dedup token."""

    topic: str
    partition: int
    deliveries: list[Delivery]
    dedup_token: str

    @property
    def first_offset(self) -> int:
        return self.deliveries[0].offset

    @property
    def last_offset(self) -> int:
        return self.deliveries[-1].offset


def partition_groups(deliveries: Sequence[Delivery]) -> list[PartitionGroup]:
    """Group a batch by (topic, partition), sorted, deliveries in offset order: one insert and token per group."""
    groups: dict[tuple[str, int], list[Delivery]] = {}
    for delivery in deliveries:
        groups.setdefault((delivery.topic, delivery.partition), []).append(delivery)
    out: list[PartitionGroup] = []
    for (topic, partition), group in sorted(groups.items()):
        group.sort(key=lambda d: d.offset)
        ids = (d.event.event_id.bytes for d in group)
        token = dedup_token(topic, partition, group[0].offset, group[-1].offset, ids)
        out.append(PartitionGroup(topic, partition, group, token))
    return out


def build_blocks(deliveries: Sequence[Delivery], ingested_at: datetime | None = None) -> list[InsertBlock]:
    """Group a batch by (topic, partition), rows in offset order, one block and token per group."""
    ingested_at = ingested_at or datetime.now(UTC)
    return [
        InsertBlock(
            g.topic, g.partition, g.first_offset, g.last_offset, g.dedup_token,
            [event_row(d, ingested_at) for d in g.deliveries],
        )
        for g in partition_groups(deliveries)
    ]
