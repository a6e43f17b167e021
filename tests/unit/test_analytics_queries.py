"""The query registry and the query API over a fake store: parameter validation, JSON shapes, auth, errors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from pydantic import SecretStr, ValidationError

from libs.common.settings import AnalyticsSettings, CoreSettings, Settings
from services.analytics.app import create_app
from services.analytics.ingest import InsertBlock
from services.analytics.queries import QUERIES, EventsPerMinuteParams, RecentEventsParams
from services.analytics.store import QueryResult

PHOTO = "ph0t0ExampleId_abcdef"


class FakeStore:
    """Records queries and answers a fixed result (the real SQL is exercised by the chDB integration tests)."""

    database = "howhot"

    def __init__(self, fail: bool = False) -> None:
        self.queries: list[tuple[str, dict[str, Any]]] = []
        self.fail = fail

    async def insert_blocks(self, blocks: Sequence[InsertBlock]) -> None:
        return None

    async def query(self, sql: str, parameters: dict[str, Any]) -> QueryResult:
        self.queries.append((sql, parameters))
        if self.fail:
            raise RuntimeError("DB::Exception: secret internals")
        when = datetime(2026, 1, 1, 12, tzinfo=UTC)
        return QueryResult(["event_id", "occurred_at", "n"], [(UUID(int=1), when, 3)])

    async def ping(self) -> bool:
        return True


def settings(token: str | None = None) -> Settings:
    return Settings(
        core=CoreSettings(data_dir="/nonexistent"),
        analytics=AnalyticsSettings(dashboard_token=SecretStr(token) if token else None),
    )


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
async def client(aiohttp_client, store: FakeStore):
    return await aiohttp_client(create_app(settings(), store=store, consume=False))


def test_every_query_renders_its_database_and_has_a_schema() -> None:
    for query in QUERIES.values():
        assert "{db}" not in query.render("howhot") and "howhot.events" in query.render("howhot")
        assert query.schema()["parameters"]["type"] == "object"
    assert {"event_counts", "photo_events", "events_per_minute", "recent_events"} <= set(QUERIES)


def test_params_reject_unknown_and_out_of_range_values() -> None:
    with pytest.raises(ValidationError):
        RecentEventsParams.model_validate({"limit": "0"})
    with pytest.raises(ValidationError):
        RecentEventsParams.model_validate({"limt": "5"})
    with pytest.raises(ValidationError):  # naive datetimes are ambiguous
        EventsPerMinuteParams.model_validate({"type": "photo.uploaded", "from": "2026-01-01T00:00", "to": "2026-01-02"})
    with pytest.raises(ValidationError):  # not an event type
        EventsPerMinuteParams.model_validate(
            {"type": "nope", "from": "2026-01-01T00:00Z", "to": "2026-01-01T01:00Z"}
        )
    with pytest.raises(ValidationError):  # reversed range
        EventsPerMinuteParams.model_validate(
            {"type": "photo.uploaded", "from": "2026-01-02T00:00Z", "to": "2026-01-01T00:00Z"}
        )
    with pytest.raises(ValidationError):  # longer than the per-minute series allows
        EventsPerMinuteParams.model_validate(
            {"type": "photo.uploaded", "from": "2026-01-01T00:00Z", "to": "2026-03-01T00:00Z"}
        )


def test_params_bind_under_their_placeholder_names() -> None:
    params = EventsPerMinuteParams.model_validate(
        {"type": "photo.uploaded", "from": "2026-01-01T00:00:00+02:00", "to": "2026-01-01T01:00Z"}
    )
    bound = params.bind()
    assert set(bound) == {"type", "from", "to"}
    assert bound["from"] == datetime(2025, 12, 31, 22, tzinfo=UTC)


async def test_list_queries_returns_parameter_schemas(client) -> None:
    response = await client.get("/api/v1/queries")
    assert response.status == 200
    doc = await response.json()
    by_name = {q["name"]: q for q in doc["queries"]}
    assert set(by_name["events_per_minute"]["parameters"]["properties"]) == {"type", "from", "to"}
    assert by_name["recent_events"]["description"]


async def test_run_query_answers_columns_and_rows_as_json(client, store: FakeStore) -> None:
    response = await client.get("/api/v1/query/photo_events", params={"photo_id": PHOTO})
    assert response.status == 200
    assert await response.json() == {
        "name": "photo_events",
        "columns": ["event_id", "occurred_at", "n"],
        "rows": [["00000000-0000-0000-0000-000000000001", "2026-01-01T12:00:00+00:00", 3]],
    }
    sql, bound = store.queries[-1]
    assert "howhot.events" in sql and bound == {"photo_id": PHOTO}


async def test_invalid_params_are_a_400_with_details(client, store: FakeStore) -> None:
    response = await client.get("/api/v1/query/recent_events", params={"limit": "100000"})
    assert response.status == 400
    doc = await response.json()
    assert doc["error"] == "invalid parameters" and doc["details"][0]["loc"] == ["limit"]
    response = await client.get("/api/v1/query/photo_events?photo_id=x'%20OR%201=1")
    assert response.status == 400
    response = await client.get("/api/v1/query/recent_events?limit=1&limit=2")
    assert response.status == 400
    assert store.queries == []


async def test_unknown_query_is_a_404(client) -> None:
    response = await client.get("/api/v1/query/drop_table")
    assert response.status == 404
    assert "event_counts" in (await response.json())["queries"]


async def test_store_errors_are_a_500_json_without_internals(aiohttp_client) -> None:
    client = await aiohttp_client(create_app(settings(), store=FakeStore(fail=True), consume=False))
    response = await client.get("/api/v1/query/recent_events")
    assert response.status == 500
    assert "secret internals" not in (await response.json())["error"]


async def test_token_protects_the_query_api_but_not_healthz(aiohttp_client) -> None:
    client = await aiohttp_client(create_app(settings("s3cret"), store=FakeStore(), consume=False))
    assert (await client.get("/api/v1/queries")).status == 401
    assert (await client.get("/api/v1/queries", headers={"Authorization": "Bearer wrong"})).status == 401
    assert (await client.get("/api/v1/queries", headers={"Authorization": "Bearer s3cret"})).status == 200
    ok = await client.get("/api/v1/query/recent_events", headers={"Authorization": "bearer s3cret"})
    assert ok.status == 200
    health = await client.get("/healthz")
    assert (await health.json())["checks"]["analytics_store"] is True
