"""The envelope every Howhot event carries, and the base class of all event contracts.

Events carry facts (ids, small results, blob keys), never image bytes. The envelope makes every event traceable
(trace_id from the upload onwards), deduplicable (event_id) and evolvable (schema_version).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import ClassVar
from uuid import UUID, uuid4, uuid5

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    """Timezone-aware now in UTC (naive datetimes are rejected by the contracts)."""
    return datetime.now(UTC)


def new_trace_id() -> str:
    """A W3C-sized trace id (128 random bits, hex)."""
    return secrets.token_hex(16)


class Event(BaseModel):
    """Base of every event: the envelope fields plus the event's own typed fields.

    NaN and infinity are refused in every float field: one NaN rating or landmark would otherwise pass the contract and
    poison whatever state or batch it reaches; refused, it goes to the dead-letter topic with the reason.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    TOPIC: ClassVar[str]
    """The topic this event type is published on."""

    event_id: UUID = Field(default_factory=uuid4)
    type: str
    schema_version: int = 1
    occurred_at: AwareDatetime = Field(default_factory=utcnow)
    trace_id: str = Field(default_factory=new_trace_id, min_length=1, max_length=64)
    producer: str = Field(default="howhot", min_length=1, max_length=64)

    @property
    def partition_key(self) -> str | None:
        """The Kafka key: photo_id for per-photo events (keeps one photo's events ordered), else None."""
        value = getattr(self, "photo_id", None) or getattr(self, "visitor_id", None)
        return str(value) if value else None

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()



def derived_event_id(source: Event, kind: str) -> UUID:
    """A deterministic id for the event a handler emits in reaction to ``source``.

    Redelivery of the same input makes the same output event id, so analytics' dedup on event_id also removes the
    duplicates that at-least-once processing creates downstream.
    """
    return uuid5(source.event_id, kind)
