"""The real share app (its own Kafka producer and "share" consumer) against a real Tansu broker: a photo.scored for a
photo whose chip and meta are in the blob store yields three stored cards and a card.rendered event on the topic;
photo.deleted removes the cards again."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from skimage import data

from libs.common import keys
from libs.common.blobs import LocalBlobStore
from libs.common.broker import EmbeddedBroker
from libs.common.bus import KafkaEventPublisher, ensure_topics
from libs.common.documents import PhotoMeta
from libs.common.events import CardRendered, FaceResult, PhotoDeleted, PhotoScored, decode_event
from libs.common.ids import new_id
from libs.common.polling import wait_for_async
from libs.common.settings import CoreSettings, KafkaSettings, Settings
from services.share.app import create_app
from services.share.cards import card_key
from services.share.handlers import EAGER_FORMATS

pytestmark = pytest.mark.integration

READY_TIMEOUT_S = 60.0  # producer connects, renderer warms, consumer joins its group
CONSUME_TIMEOUT_S = 60.0  # group join + rebalance on a fresh topic can take several seconds on Tansu
ASTRONAUT_FACE_BOX = (130, 30, 320, 220)
CHIP_SIZE = 256


def chip_png() -> bytes:
    chip = Image.fromarray(data.astronaut()).crop(ASTRONAUT_FACE_BOX).resize((CHIP_SIZE, CHIP_SIZE))
    buf = io.BytesIO()
    chip.save(buf, "PNG")
    return buf.getvalue()


async def wait_until_healthy(client: Any) -> None:
    deadline = asyncio.get_running_loop().time() + READY_TIMEOUT_S
    while (response := await client.get("/healthz")).status != 200:
        assert asyncio.get_running_loop().time() < deadline, await response.text()
        await asyncio.sleep(0.2)


async def test_photo_scored_becomes_cards_and_card_rendered(
    aiohttp_client: Any, kafka_broker: EmbeddedBroker, tmp_path: Path, find_event: Any
) -> None:
    kafka = KafkaSettings(bootstrap=kafka_broker.bootstrap, session_timeout_ms=6000, heartbeat_interval_ms=500)
    await ensure_topics(kafka)
    store = LocalBlobStore(tmp_path)
    photo_id, share_id = new_id(), new_id()
    meta = PhotoMeta(
        photo_id=photo_id, created_at=datetime.now(UTC), delete_token_sha256="0" * 64, width=512, height=512,
        share_id=share_id,
    )
    await store.put(keys.meta(photo_id), meta.model_dump_json().encode(), "application/json")
    await store.put(keys.chip(photo_id, 0), chip_png(), "image/png")

    settings = Settings(kafka=kafka, core=CoreSettings(public_base_url="https://howhot.example"))
    client = await aiohttp_client(create_app(settings, blob_store=store))
    await wait_until_healthy(client)

    publisher = KafkaEventPublisher(kafka, "test")
    await publisher.start(deadline_s=30)
    try:
        face = FaceResult(index=0, age=31.2, age_low=26, age_high=37, p_female=0.93, gender="female",
                          attractiveness=7.1, attractiveness_word="Hot")
        scored = PhotoScored(photo_id=photo_id, result_key=keys.result(photo_id), faces=[face], elapsed_ms=80.0)
        await publisher.publish(scored)

        key, value, _ = await find_event(kafka.bootstrap, CardRendered.TOPIC, photo_id)
        rendered = decode_event(value, CardRendered.TOPIC)
        assert isinstance(rendered, CardRendered)
        assert key == photo_id.encode()
        assert rendered.trace_id == scored.trace_id
        assert rendered.card_keys == {fmt: card_key(photo_id, fmt) for fmt in EAGER_FORMATS}
        for card in rendered.card_keys.values():
            assert (await store.get(card)).data.startswith(b"\x89PNG\r\n\x1a\n")

        await publisher.publish(PhotoDeleted(photo_id=photo_id))

        async def cards_gone() -> bool:
            return await store.list(keys.cards_prefix(photo_id)) == []

        await wait_for_async(cards_gone, "cards to be deleted", CONSUME_TIMEOUT_S)
    finally:
        await publisher.stop()
