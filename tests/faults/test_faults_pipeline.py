"""Faults injected into a real local stack (Tansu, local blobs, chDB, every service as a child process).

* kill -9 of the scoring service mid-stream, then a restart: every photo still ends terminal, and every event is
  recorded once (derived event ids make redelivered work deduplicate in ClickHouse); meanwhile the upload service's
  consumer-lag probe sees the backlog grow, which proves KafkaLagProbe works against the real broker.
* a poison message on every topic: each lands in ``<topic>.dlq``, and a photo uploaded afterwards still completes.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import pytest
import requests
from aiokafka import AIOKafkaProducer

from libs.cli.dlq import list_dead_letters
from libs.cli.stack import LocalStack
from libs.common.bus import client_kwargs
from libs.common.events import TOPICS
from libs.common.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TERMINAL = frozenset({"done", "no_face", "failed"})
PHOTOS = 10
KILLED_AFTER = 4  # photos uploaded before the kill; the rest arrive while scoring is dead
PIPELINE_TIMEOUT_S = 240.0
ONCE_PER_PHOTO = ("photo.uploaded", "faces.detected", "photo.scored", "card.rendered")  # the last event is the card
POISON = b"\x00\xffpoison: not an event at all"
BACKLOG_METRIC = re.compile(r"^howhot_upload_backlog (\S+)$", re.MULTILINE)




def upload(base: str, jpeg: bytes) -> dict:
    response = requests.post(f"{base}/api/v1/photos", files={"photo": ("a.jpg", jpeg, "image/jpeg")}, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()


def status_of(posted: dict) -> str:
    return requests.get(posted["status_url"], timeout=10).json().get("status", "?")


def photo_events(analytics: str, photo_id: str) -> list[dict]:
    r = requests.get(f"{analytics}/api/v1/query/photo_events", params={"photo_id": photo_id}, timeout=10)
    assert r.status_code == 200, r.text
    doc = r.json()
    return [dict(zip(doc["columns"], row, strict=True)) for row in doc["rows"]]


def dedup_stats(analytics: str, photo_id: str) -> dict:
    r = requests.get(f"{analytics}/api/v1/query/dedup_stats", params={"photo_id": photo_id}, timeout=10)
    assert r.status_code == 200, r.text
    doc = r.json()
    return dict(zip(doc["columns"], doc["rows"][0], strict=True))


def upload_backlog(base: str) -> float | None:
    match = BACKLOG_METRIC.search(requests.get(f"{base}/metrics", timeout=10).text)
    return float(match.group(1)) if match else None


def test_kill_9_scoring_mid_stream_then_restart(fault_stack: LocalStack, astronaut_jpeg: bytes) -> None:
    urls = fault_stack.urls()
    posted = [upload(urls["upload"], astronaut_jpeg) for _ in range(KILLED_AFTER)]
    fault_stack.kill("scoring")
    posted += [upload(urls["upload"], astronaut_jpeg) for _ in range(PHOTOS - KILLED_AFTER)]
    # With scoring dead, faces.detected piles up uncommitted: the lag probe must see it (−1 would mean "unmeasured").
    seen = wait_for(lambda: (v := upload_backlog(urls["upload"])) is not None and v > 0 and v, timeout_s=90)
    assert seen > 0
    fault_stack.restart("scoring")

    def all_terminal() -> dict[str, str] | None:
        statuses = {p["photo_id"]: status_of(p) for p in posted}
        return statuses if all(s in TERMINAL for s in statuses.values()) else None

    statuses = wait_for(all_terminal, timeout_s=PIPELINE_TIMEOUT_S)
    assert set(statuses.values()) == {"done"}, statuses

    for p in posted:
        def recorded(photo_id: str = p["photo_id"]) -> list[dict] | None:
            events = photo_events(urls["analytics"], photo_id)
            return events if set(ONCE_PER_PHOTO) <= {e["type"] for e in events} else None

        events = wait_for(recorded, timeout_s=60)
        counts = Counter(e["type"] for e in events)
        assert all(counts[t] == 1 for t in ONCE_PER_PHOTO), counts
        ids = [e["event_id"] for e in events]
        assert len(ids) == len(set(ids)), "an event is recorded twice"
        stats = dedup_stats(urls["analytics"], p["photo_id"])
        assert stats["events"] == len(ids), stats  # distinct event ids: nothing beyond what photo_events shows


def test_poison_message_on_every_topic_goes_to_dlq(fault_stack: LocalStack, astronaut_jpeg: bytes) -> None:
    kafka = fault_stack.settings.kafka

    async def send_poison() -> None:
        producer = AIOKafkaProducer(**client_kwargs(kafka), acks="all")
        await producer.start()
        try:
            for topic in TOPICS:
                await producer.send_and_wait(topic, POISON, key=b"poison")
        finally:
            await producer.stop()

    asyncio.run(send_poison())

    def every_topic_dead_lettered() -> set[str] | None:
        letters = asyncio.run(list_dead_letters(kafka))
        sources = {d.source_topic for d in letters if d.value == POISON}
        return sources if sources >= set(TOPICS) else None

    wait_for(every_topic_dead_lettered, timeout_s=90, interval_s=2)
    urls = fault_stack.urls()
    posted = upload(urls["upload"], astronaut_jpeg)
    assert wait_for(lambda: (s := status_of(posted)) in TERMINAL and s, timeout_s=PIPELINE_TIMEOUT_S) == "done"
