"""The scoring service's two personalization consumers against a real Tansu broker: rating.submitted events from
several raters update each rater's state and, through face.rated (keyed by photo), the rated face's item state; a
re-published rating counts once on both sides."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from libs.common.blobs import LocalBlobStore
from libs.common.broker import EmbeddedBroker
from libs.common.bus import KafkaEventPublisher, ensure_topics
from libs.common.events import FaceRated, decode_event, derived_event_id
from libs.common.ids import new_id
from libs.common.observability import install_observability
from libs.common.polling import wait_for_async
from libs.common.service import publisher_context
from libs.common.settings import KafkaSettings, Settings
from services.scoring.ratings_consumer import (
    PersonalizeStage,
    face_items_consumer_context,
    load_personal_model,
    ratings_consumer_context,
)
from tests.unit.test_personal_consumer import rating, scored_photo

pytestmark = pytest.mark.integration

CONSUME_TIMEOUT_S = 90.0  # two consumer groups join on fresh topics, one after the other's output


async def test_ratings_reach_rater_and_face_states(
    aiohttp_client: Any, kafka_broker: EmbeddedBroker, tmp_path: Path, find_event: Any
) -> None:
    kafka = KafkaSettings(bootstrap=kafka_broker.bootstrap, session_timeout_ms=6000, heartbeat_interval_ms=500)
    await ensure_topics(kafka)
    settings = Settings(kafka=kafka)
    blobs = LocalBlobStore(tmp_path)
    model = load_personal_model(settings)
    stage = PersonalizeStage.from_blobs(model, blobs)
    photo_id = await scored_photo(blobs, model, owner=new_id(), rateable=True, seed=50)

    app = web.Application()
    install_observability(app, "scoring")
    app.cleanup_ctx.append(publisher_context(settings, "scoring"))
    app.cleanup_ctx.append(ratings_consumer_context(settings, stage))
    app.cleanup_ctx.append(face_items_consumer_context(settings, stage))
    await aiohttp_client(app)

    publisher = KafkaEventPublisher(kafka, "test")
    await publisher.start(deadline_s=30)
    raters = [new_id() for _ in range(4)]
    try:
        events = [rating(rater, photo_id, i % 2) for i, rater in enumerate(raters)]
        for event in events:
            await publisher.publish(event)
        await publisher.publish(events[0])  # redelivery of the same event

        async def face_learned() -> bool:
            item = await stage.items.load(photo_id, 0)
            return item is not None and item.n_ratings == len(raters)

        await wait_for_async(face_learned, "the face's item state to hold every rater", CONSUME_TIMEOUT_S)
        for rater in raters:
            state = await stage.states.load(rater)
            assert state is not None and state.n_ratings == 1
        key, value, _ = await find_event(kafka.bootstrap, FaceRated.TOPIC, photo_id)
        follow_up = decode_event(value, FaceRated.TOPIC)
        assert isinstance(follow_up, FaceRated) and key == photo_id.encode()
        assert follow_up.event_id in {derived_event_id(e, FaceRated.TOPIC) for e in events}
        await asyncio.sleep(2.0)  # the duplicate has long been consumed: still one entry per rater
        item = await stage.items.load(photo_id, 0)
        assert item is not None and sorted(item.raters) == sorted(raters)
    finally:
        await publisher.stop()
