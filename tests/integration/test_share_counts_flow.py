"""Share counting end to end: the real upload app (its own Kafka producer) → a real Tansu broker → the real analytics
app (its consumer, chDB, the HTTP query API).

The result page makes a photo public with a channel-less POST .../share and counts each channel press (X, copy…) with
a POST carrying the channel. It remembers that it already shared only until the page is reloaded: pressing "Share"
again after a reload POSTs again, and the upload service (rightly: a retry after a broker outage must re-publish)
publishes another photo.shared. Analytics must count that once, like the page does without the reload, while every
channel press still counts.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer

from libs.common import analytics_store, keys
from libs.common.blobs import LocalBlobStore
from libs.common.broker import EmbeddedBroker
from libs.common.bus import ensure_topics
from libs.common.documents import ResultDocument
from libs.common.events import PhotoShared, utcnow
from libs.common.ids import new_id
from libs.common.settings import AnalyticsSettings, CoreSettings, KafkaSettings, Settings, UploadSettings
from services.analytics.app import create_app as create_analytics_app
from services.analytics.consumer import batch_writer
from services.analytics.ingest import EVENT_COLUMNS, build_blocks
from services.analytics.queries import QUERIES
from services.analytics.simulate.seeded import as_deliveries
from services.analytics.store import AnalyticsStore
from services.upload.app import create_app as create_upload_app
from services.upload.web.visitor import VISITOR_COOKIE

pytestmark = pytest.mark.integration

VISITOR = "ShareCountVisitor00001"
FACE = {
    "index": 0, "box": [100, 80, 300, 320], "age": 31.0, "age_low": 27.0, "age_high": 36.0, "p_female": 0.9,
    "gender": "female", "attractiveness": 7.2, "attractiveness_word": "Hot", "withheld_reason": None,
}
NO_LIMIT = 10**12  # no face service drains this broker: no admission limit
WAIT_S = 60.0  # producer connect + consumer group join on a cold broker
POLL_S = 0.2


@pytest.fixture(scope="module")
def own_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A broker of its own: the session broker carries other tests' shares, which would land in the same minutes."""
    with EmbeddedBroker(log_file=tmp_path_factory.mktemp("tansu") / "tansu.log") as broker:
        yield broker


async def until(read: Any, done: Any, what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not done(value := await read()):
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for: {what} (last: {value!r})"
        await asyncio.sleep(POLL_S)
    return value


async def test_pressing_share_again_after_a_reload_is_not_another_share(
    own_broker: EmbeddedBroker, tmp_path: Path, astronaut_jpeg: bytes
) -> None:
    kafka = KafkaSettings(bootstrap=own_broker.bootstrap, retry_backoff_s=0.05)
    await ensure_topics(kafka)
    blobs = LocalBlobStore(tmp_path / "blobs")
    upload = TestClient(TestServer(create_upload_app(
        Settings(kafka=kafka, upload=UploadSettings(max_backlog=NO_LIMIT)), blob_store=blobs)))
    analytics = TestClient(TestServer(create_analytics_app(Settings(
        core=CoreSettings(data_dir=tmp_path / "analytics"), kafka=kafka,
        analytics=AnalyticsSettings(batch_size=500, flush_interval_s=0.2)))))
    await upload.start_server()
    await analytics.start_server()
    started = datetime.now(UTC).replace(second=0, microsecond=0)
    try:
        await until(lambda: _status(upload, "/healthz"), lambda s: s == 200, "the upload producer connected")
        upload.session.cookie_jar.update_cookies({VISITOR_COOKIE: VISITOR})
        form = FormData()
        form.add_field("photo", astronaut_jpeg, filename="me.jpg", content_type="image/jpeg")
        accepted = await (await upload.post("/api/v1/photos", data=form)).json()
        photo_id, token = accepted["photo_id"], accepted["delete_token"]
        done = ResultDocument(photo_id=photo_id, status="done", faces=[FACE], scored_at=utcnow())  # scoring's output
        await blobs.put(keys.result(photo_id), done.model_dump_json().encode(), "application/json")

        async def share(body: object = None) -> int:
            url = f"/api/v1/photos/{photo_id}/share"
            return (await upload.post(url, json=body, headers={"X-Delete-Token": token})).status

        assert await share() == 201  # "Share": the page goes public
        assert await share({"channel": "x"}) == 200  # a press of X
        assert await share() == 200  # reload, "Share" again: the page was already public
        assert await share({"channel": "x"}) == 200  # X again: another press, another share

        async def shared_events() -> int:
            response = await analytics.get("/api/v1/query/photo_events", params={"photo_id": photo_id})
            doc = await response.json()
            return sum(1 for row in doc["rows"] if row[doc["columns"].index("type")] == "photo.shared")

        await until(shared_events, lambda n: n == 4, "the four photo.shared events stored")
        span = {"from": started.isoformat(), "to": (started + timedelta(hours=1)).isoformat()}
        response = await analytics.get("/api/v1/query/kpis", params=span)
        assert response.status == 200, await response.text()
        doc = await response.json()
        kpis = dict(zip(doc["columns"], doc["rows"][0], strict=True))
        assert (kpis["shares"], kpis["sharers"]) == (3, 1)  # going public once, and two presses of X
    finally:
        await upload.close()
        await analytics.close()


async def _status(client: TestClient, path: str) -> int:
    return (await client.get(path)).status


T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


async def test_share_actions_are_counted_once_across_minutes_and_redeliveries(tmp_path: Path) -> None:
    """Through the consumer's real batch writer into chDB: going public again five minutes later (another minute's
    rollup row) and a re-published channel press (same event id, new offset) add nothing; the KPI over the range sees
    three actions, the per-minute series one per minute that had a new one."""
    store = await AnalyticsStore.open(Settings(core=CoreSettings(data_dir=tmp_path)))
    try:
        photo, share, owner = new_id(), new_id(), new_id()

        def shared(minute: int, channel: str | None) -> PhotoShared:
            return PhotoShared(occurred_at=T0 + timedelta(minutes=minute, seconds=5), photo_id=photo, share_id=share,
                               visitor_id=owner, channel=channel)

        first_x = shared(1, "x")
        events = [shared(0, None), first_x, shared(5, None), shared(6, "x")]
        write = batch_writer(store)
        await write(as_deliveries(events))
        await write(as_deliveries([first_x], first_offset=len(events)))  # re-published: new offset, same event

        kpis = await run(store, "kpis", {"from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat()})
        assert [(row["shares"], row["sharers"]) for row in kpis] == [(3, 1)]
        series = await run(store, "activity_per_minute", {
            "metric": "shares", "from": T0.isoformat(), "to": (T0 + timedelta(minutes=8)).isoformat()})
        assert [row["value"] for row in series] == [1, 1, 0, 0, 0, 1, 1, 0]  # minute 5: the repeat, in its own minute
        later = await run(store, "kpis", {"from": (T0 + timedelta(minutes=5)).isoformat(),
                                          "to": (T0 + timedelta(hours=1)).isoformat()})
        assert [row["shares"] for row in later] == [2]  # a range that starts after the first press sees the repeat
    finally:
        await store.close()


def test_the_migration_counts_shares_stored_before_it(tmp_path: Path) -> None:
    """Shares ingested before 008 existed are counted as actions once it is applied (its view is backfilled)."""
    older = tmp_path / "migrations"
    older.mkdir()
    for path in sorted(analytics_store.MIGRATIONS_DIR.glob("*.sql")):
        if path.name < "008":
            shutil.copy(path, older / path.name)
    client = analytics_store.connect(Settings(core=CoreSettings(data_dir=tmp_path / "chdb")))
    try:
        database = "default"
        analytics_store.migrate(client, database, older)
        photo, share, owner = new_id(), new_id(), new_id()
        events = [PhotoShared(occurred_at=T0 + timedelta(minutes=m), photo_id=photo, share_id=share,
                              visitor_id=owner, channel=channel) for m, channel in ((0, None), (1, "copy"), (4, None))]
        for block in build_blocks(as_deliveries(events)):
            client.insert(f"{database}.events", block.rows, column_names=list(EVENT_COLUMNS))
        analytics_store.migrate(client, database)
        query = QUERIES["kpis"]
        params = query.params.model_validate({"from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat()})
        result = client.query(query.render(database), parameters=params.bind())
        assert dict(zip(result.column_names, result.result_rows[0], strict=True))["shares"] == 2
    finally:
        client.close()


async def run(store: AnalyticsStore, name: str, params: dict[str, str]) -> list[dict[str, Any]]:
    query = QUERIES[name]
    result = await store.query(query.render(store.database), query.params.model_validate(params).bind())
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]
