"""The registry of named, parameterized queries: the only SQL the query API will run.

Each query is SQL with ClickHouse ``{name:Type}`` placeholders (bound server-side, never formatted into the string), a
pydantic model that validates its parameters at the edge, and a description for the dashboard and CLI. ``{db}`` is
replaced by the (validated) database name. To add a query: write a params model and append a ``NamedQuery`` to
``QUERIES``; the HTTP API and its schema listing pick it up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from libs.common.events import EVENT_TYPES
from libs.common.ids import ID_PATTERN

EventTypeName = Literal[tuple(cls.model_fields["type"].default for cls in EVENT_TYPES)]  # type: ignore[valid-type]

MAX_ROWS = 1000  # the API returns JSON to a browser: bigger result sets belong in ClickHouse itself
DEFAULT_RECENT = 100
MAX_MINUTES_SPAN = timedelta(days=7)  # 10,080 points: beyond that a chart wants hours, not minutes


class QueryParams(BaseModel):
    """Base of every parameter model: unknown parameters are an error (a typo must not silently widen a query)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def bind(self) -> dict[str, Any]:
        """Values for ClickHouse parameter binding, keyed by their placeholder (alias) names."""
        return self.model_dump(by_alias=True)


class _TimeRange(QueryParams):
    start: AwareDatetime | None = Field(default=None, alias="from", description="inclusive, ISO 8601 with timezone")
    end: AwareDatetime | None = Field(default=None, alias="to", description="exclusive, ISO 8601 with timezone")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError("'from' must be before 'to'")
        return self


class EventCountsParams(_TimeRange):
    """Optional time range over occurred_at."""


class PhotoEventsParams(QueryParams):
    photo_id: str = Field(pattern=ID_PATTERN)


class VisitorEventsParams(QueryParams):
    visitor_id: str = Field(pattern=ID_PATTERN)


class EventsPerMinuteParams(_TimeRange):
    type: EventTypeName  # type: ignore[valid-type]
    start: AwareDatetime = Field(alias="from", description="inclusive, ISO 8601 with timezone")
    end: AwareDatetime = Field(alias="to", description="exclusive, ISO 8601 with timezone")

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if self.end - self.start > MAX_MINUTES_SPAN:
            raise ValueError(f"range longer than {MAX_MINUTES_SPAN.days} days: ask for a coarser series")
        return self


class RecentEventsParams(QueryParams):
    limit: int = Field(default=DEFAULT_RECENT, ge=1, le=MAX_ROWS)


class DedupStatsParams(_TimeRange):
    photo_id: str | None = Field(default=None, pattern=ID_PATTERN)


@dataclass(frozen=True)
class NamedQuery:
    """One query the API may run: its SQL template, parameter model and what it is for."""

    name: str
    description: str
    sql: str
    params: type[QueryParams]

    def render(self, database: str) -> str:
        return self.sql.replace("{db}", database)

    def schema(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "parameters": self.params.model_json_schema(by_alias=True),
        }


_RANGE = (
    "({from:Nullable(DateTime64(3, 'UTC'))} IS NULL OR occurred_at >= {from:Nullable(DateTime64(3, 'UTC'))})"
    " AND ({to:Nullable(DateTime64(3, 'UTC'))} IS NULL OR occurred_at < {to:Nullable(DateTime64(3, 'UTC'))})"
)
_EVENT_COLUMNS = "event_id, type, occurred_at, photo_id, visitor_id, share_id, topic, partition, offset, payload"

# S608 below: the f-strings only splice the module's own constants; every value is a server-side bound parameter.
QUERIES: dict[str, NamedQuery] = {
    q.name: q
    for q in (
        NamedQuery(
            "event_counts",
            "Distinct events per type, optionally within [from, to).",
            f"SELECT type, uniqExact(event_id) AS events FROM {{db}}.events WHERE {_RANGE}"  # noqa: S608
            " GROUP BY type ORDER BY type",
            EventCountsParams,
        ),
        NamedQuery(
            "photo_events",
            "Every event of one photo in the order it happened (its journey through the pipeline).",
            f"SELECT {_EVENT_COLUMNS} FROM {{db}}.events FINAL WHERE photo_id = {{photo_id:String}}"  # noqa: S608
            f" ORDER BY occurred_at, event_id LIMIT {MAX_ROWS}",
            PhotoEventsParams,
        ),
        NamedQuery(
            "visitor_events",
            "Every event of one visitor in the order it happened (page views, uploads, shares, ratings).",
            f"SELECT {_EVENT_COLUMNS} FROM {{db}}.events FINAL WHERE visitor_id = {{visitor_id:String}}"  # noqa: S608
            f" ORDER BY occurred_at, event_id LIMIT {MAX_ROWS}",
            VisitorEventsParams,
        ),
        NamedQuery(
            "events_per_minute",
            "Distinct events of one type per minute within [from, to) (minutes without events are absent).",
            "SELECT toStartOfMinute(occurred_at) AS minute, uniqExact(event_id) AS events FROM {db}.events"
            " WHERE type = {type:String} AND occurred_at >= {from:DateTime64(3, 'UTC')}"
            " AND occurred_at < {to:DateTime64(3, 'UTC')} GROUP BY minute ORDER BY minute",
            EventsPerMinuteParams,
        ),
        NamedQuery(
            "recent_events",
            "The latest events by occurred_at, newest first (LIMIT 1 BY event_id: exact without FINAL).",
            f"SELECT {_EVENT_COLUMNS} FROM {{db}}.events ORDER BY occurred_at DESC, event_id"  # noqa: S608
            " LIMIT 1 BY event_id LIMIT {limit:UInt32}",
            RecentEventsParams,
        ),
        NamedQuery(
            "dedup_stats",
            "Stored rows vs distinct events (duplicates not yet merged away), optionally for one photo and range.",
            "SELECT count() AS rows, uniqExact(event_id) AS events, rows - events AS duplicates FROM {db}.events"  # noqa: S608
            f" WHERE ({{photo_id:Nullable(String)}} IS NULL OR photo_id = {{photo_id:Nullable(String)}}) AND {_RANGE}",
            DedupStatsParams,
        ),
    )
}
