"""Analytics end to end on real backends: Tansu broker → the real analytics app (chDB in tmp_path) → HTTP query API.

Proves the three promises of the ingestion chain: every event lands exactly once; replays (re-published events and a
consumer group re-reading from the beginning) change no count; invalid messages go to the dead-letter topic with the
error in their headers while the valid events behind them are still ingested.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from libs.common.broker import EmbeddedBroker
from libs.common.bus import KafkaEventPublisher, ensure_topics
from libs.common.events import TOPICS, Event, PhotoDeleted, PhotoUploaded, decode_event, dlq_topic
from libs.common.events.examples import PHOTO, SHARE, VISITOR, examples
from libs.common.ids import new_id
from libs.common.settings import AnalyticsSettings, CoreSettings, KafkaSettings, Settings
from services.analytics import consumer as consumer_module
from services.analytics.app import create_app
from services.analytics.consumer import CONSUMER_GROUP

pytestmark = pytest.mark.integration

WAIT_S = 30.0  # generous: a consumer group join on a cold broker takes a few seconds
POLL_S = 0.2


def analytics_settings(broker: EmbeddedBroker, data_dir: Path, offload: bool = False) -> Settings:
    """``offload``: every poll is validated and encoded by the decode worker process (services/analytics/offload.py)
    instead of in process; the promises below must hold either way."""
    workers = {"decode_workers": 1, "offload_min_records": 1} if offload else {"decode_workers": 0}
    return Settings(
        core=CoreSettings(data_dir=data_dir),
        kafka=KafkaSettings(bootstrap=broker.bootstrap, retry_backoff_s=0.05, handler_retries=1),
        analytics=AnalyticsSettings(batch_size=500, flush_interval_s=0.2, **workers),
    )


both_decode_paths = pytest.mark.parametrize("offload", [False, True], ids=["in-process", "decode-worker"])


def fresh_examples() -> tuple[str, str, list[Event]]:
    """The example events with ids of their own (the session broker is shared with other tests)."""
    photo, visitor, share = new_id() + "Ph", new_id() + "Vi", new_id() + "Sh"
    events = []
    for event in examples():
        if isinstance(event, PhotoDeleted):  # an owner's deletion forgets the photo (tested in test_analytics_forget)
            event = event.model_copy(update={"reason": "ephemeral"})
        text = event.model_dump_json().replace(PHOTO, photo).replace(VISITOR, visitor).replace(SHARE, share)
        events.append(decode_event(text.encode()))
    return photo, visitor, events


async def start_app(settings: Settings) -> TestClient:
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    return client


async def query(client: TestClient, name: str, **params: str) -> list[dict[str, Any]]:
    response = await client.get(f"/api/v1/query/{name}", params=params)
    assert response.status == 200, await response.text()
    doc = await response.json()
    return [dict(zip(doc["columns"], row, strict=True)) for row in doc["rows"]]


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(POLL_S)


async def journey_ids(client: TestClient, photo: str, visitor: str) -> list[str]:
    """Event ids stored for the photo plus the visitor's page views (exact: the queries use FINAL)."""
    rows = await query(client, "photo_events", photo_id=photo)
    rows += [r for r in await query(client, "visitor_events", visitor_id=visitor) if r["type"] == "page.viewed"]
    return [r["event_id"] for r in rows]


async def wait_caught_up(broker: EmbeddedBroker, group: str) -> None:
    """Wait until ``group`` has committed up to today's end of every topic (it commits only after the write)."""
    probe = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False)
    await probe.start()
    try:
        await probe.topics()  # loads metadata
        partitions = [TopicPartition(t, p) for t in TOPICS for p in sorted(probe.partitions_for_topic(t) or ())]
        ends = await probe.end_offsets(partitions)

        async def caught_up() -> bool:
            for tp in partitions:
                if ends[tp] and ((await probe.committed(tp)) or 0) < ends[tp]:
                    return False
            return True

        await eventually(caught_up, f"group {group} caught up")
    finally:
        await probe.stop()


@pytest.fixture
async def topics(kafka_broker: EmbeddedBroker) -> AsyncIterator[None]:
    await ensure_topics(KafkaSettings(bootstrap=kafka_broker.bootstrap))
    yield


@both_decode_paths
@pytest.mark.usefixtures("topics")
async def test_every_event_lands_once_and_replays_change_nothing(
    kafka_broker: EmbeddedBroker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offload: bool
) -> None:
    settings = analytics_settings(kafka_broker, tmp_path, offload)
    photo, visitor, events = fresh_examples()
    expected = sorted(str(e.event_id) for e in events)
    publisher = KafkaEventPublisher(settings.kafka, "test")
    await publisher.start()
    client = await start_app(settings)
    try:
        await publisher.publish_many(events)

        async def all_arrived() -> bool:
            return len(await journey_ids(client, photo, visitor)) == len(events)

        await eventually(all_arrived, "every example event queryable")
        assert sorted(await journey_ids(client, photo, visitor)) == expected

        await publisher.publish_many(events)  # (b1) the same events again: same event ids, new offsets
        await wait_caught_up(kafka_broker, CONSUMER_GROUP)  # the re-published events were consumed and written
        assert sorted(await journey_ids(client, photo, visitor)) == expected
        assert (await query(client, "dedup_stats", photo_id=photo))[0]["events"] == len(events) - 1
    finally:
        await client.close()  # stops the consumer (commits) and closes chDB
        await publisher.stop()

    # (b2) Restart with a fresh consumer group: it re-reads every topic from offset 0, i.e. every batch written above
    # comes again (what an offset reset or a crash between write and commit does). Tansu refuses offset commits from
    # outside the group (UnknownMemberId), so a new group stands in for `kafka-consumer-groups --reset-offsets`.
    replay_group = f"{CONSUMER_GROUP}-replay-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(consumer_module, "CONSUMER_GROUP", replay_group)
    client = await start_app(settings)
    try:
        await wait_caught_up(kafka_broker, replay_group)
        assert sorted(await journey_ids(client, photo, visitor)) == expected
        counts = {r["type"]: int(r["events"]) for r in await query(client, "event_counts")}
        assert counts["photo.uploaded"] >= 1
        assert (await query(client, "dedup_stats", photo_id=photo))[0]["events"] == len(events) - 1
        health = await client.get("/healthz")
        assert (await health.json())["checks"]["analytics_store"] is True
    finally:
        await client.close()


@both_decode_paths
@pytest.mark.usefixtures("topics")
async def test_invalid_messages_are_dead_lettered_and_valid_ones_still_land(
    kafka_broker: EmbeddedBroker, tmp_path: Path, offload: bool
) -> None:
    settings = analytics_settings(kafka_broker, tmp_path, offload)
    photo = new_id()
    marker = uuid.uuid4().hex.encode()
    garbage = b"\xff\x00 not json " + marker
    invalid = b'{"type": "photo.uploaded", "photo_id": "short", "marker": "' + marker + b'"}'
    valid = PhotoUploaded(photo_id=photo, blob_key=f"photos/{photo}.jpg", width=1, height=1, size_bytes=1)
    topic = PhotoUploaded.TOPIC
    client = await start_app(settings)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    dlq = AIOKafkaConsumer(
        dlq_topic(topic), bootstrap_servers=kafka_broker.bootstrap, group_id=f"dlq-check-{marker.decode()}",
        auto_offset_reset="earliest",
    )
    await producer.start()
    await dlq.start()
    try:
        key = photo.encode()  # one partition: the valid event really is behind the bad ones
        for value in (garbage, invalid, valid.to_bytes()):
            await producer.send_and_wait(topic, value, key=key)

        async def valid_landed() -> bool:
            return len(await query(client, "photo_events", photo_id=photo)) == 1

        await eventually(valid_landed, "the valid event behind two bad ones")

        dead: dict[bytes, dict[str, bytes]] = {}
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while len(dead) < 2 and asyncio.get_running_loop().time() < deadline:
            for records in (await dlq.getmany(timeout_ms=500)).values():
                for record in records:
                    if marker in (record.value or b""):
                        dead[record.value] = dict(record.headers)
        assert set(dead) == {garbage, invalid}
        for headers in dead.values():
            assert headers["source_topic"] == topic.encode()
            assert headers["error_type"] == b"InvalidEvent" and headers["error"]
        assert b"schema validation failed" in dead[invalid]["error"]
    finally:
        await dlq.stop()
        await producer.stop()
        await client.close()
