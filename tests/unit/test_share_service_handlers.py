"""The share stage's photo.scored / photo.deleted handlers on a real LocalBlobStore and real face chips: three cards
stored and card.rendered published, idempotent on redelivery, nothing for deleted or faceless photos, age only for
minors, and the same featured face everywhere."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from libs.common import keys
from libs.common.blobs import BlobStoreUnavailable, LocalBlobStore
from libs.common.bus import RecordingPublisher
from libs.common.documents import FacesManifest, PhotoMeta
from libs.common.events import CardRendered, FaceBox, FaceResult, InvalidEvent, PhotoDeleted, PhotoScored
from libs.common.ids import new_id
from services.share.cards import TEMPLATE_VERSION, card_key
from services.share.featured import choose_featured_face, description, headline, share_url
from services.share.handlers import EAGER_FORMATS, ShareHandlers
from services.share.render import CARD_FORMATS, CardRenderer

BASE_URL = "https://howhot.example"
ASTRONAUT_FACE_BOX = (130, 30, 320, 220)  # x0, y0, x1, y1 of the face in skimage's astronaut (public domain)
CHIP_SIZE = 256
EXPECTED_SIZES = {"og": (1200, 630), "square": (1080, 1080), "story": (1080, 1920)}
LANDMARKS = [(90.0, 110.0), (166.0, 110.0), (128.0, 150.0), (98.0, 190.0), (158.0, 190.0)]

ADULT = FaceResult(
    index=0, age=33.6, age_low=29.2, age_high=38.9, p_female=0.9, gender="female",
    attractiveness=7.4, attractiveness_word="Hot",
)
MINOR = FaceResult(
    index=0, age=14.2, age_low=11.0, age_high=17.5, p_female=0.2, gender="male",
    withheld_reason="possible_minor",
)


def chip_png() -> bytes:
    """A 256×256 face chip cut from the astronaut photo, like the face service's aligned chips."""
    chip = Image.fromarray(data.astronaut()).crop(ASTRONAUT_FACE_BOX).resize((CHIP_SIZE, CHIP_SIZE))
    buf = io.BytesIO()
    chip.save(buf, "PNG")
    return buf.getvalue()


async def seed_photo(
    store: LocalBlobStore, *, faces: int = 1, sizes: tuple[float, ...] | None = None
) -> tuple[str, str]:
    """A photo as upload and face leave it: meta with a pre-allocated share id, chips, and a faces manifest."""
    photo_id, share_id = new_id(), new_id()
    meta = PhotoMeta(
        photo_id=photo_id, created_at=datetime.now(UTC), delete_token_sha256="0" * 64, width=512, height=512,
        share_id=share_id,
    )
    await store.put(keys.meta(photo_id), meta.model_dump_json().encode(), "application/json")
    boxes = []
    for n in range(faces):
        await store.put(keys.chip(photo_id, n), chip_png(), "image/png")
        size = sizes[n] if sizes else 100.0
        boxes.append(FaceBox(
            index=n, box=(0, 0, size, size), score=0.99, landmarks=LANDMARKS, chip_key=keys.chip(photo_id, n),
            chip_landmarks=LANDMARKS, size=size,
        ))
    manifest = FacesManifest(photo_id=photo_id, status="faces_found", faces=boxes, detector="test")
    await store.put(keys.faces_manifest(photo_id), manifest.model_dump_json().encode(), "application/json")
    return photo_id, share_id


def scored(photo_id: str, *faces: FaceResult) -> PhotoScored:
    return PhotoScored(photo_id=photo_id, result_key=keys.result(photo_id), faces=list(faces), elapsed_ms=50.0)


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path)


@pytest.fixture
def events() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def handlers(store: LocalBlobStore, events: RecordingPublisher) -> ShareHandlers:
    return ShareHandlers(store, events, CardRenderer(), BASE_URL)


async def test_the_og_card_is_stored_and_card_rendered_is_published(
    handlers: ShareHandlers, store: LocalBlobStore, events: RecordingPublisher
) -> None:
    photo_id, _ = await seed_photo(store)
    event = scored(photo_id, ADULT)
    out = await handlers.on_photo_scored(event)

    assert out is not None
    assert events.events == [out]
    assert out.card_keys == {fmt: card_key(photo_id, fmt) for fmt in EAGER_FORMATS} == {"og": card_key(photo_id, "og")}
    assert out.template_version == TEMPLATE_VERSION
    assert out.trace_id == event.trace_id  # one trace from upload to card
    assert out.elapsed_ms > 0
    for fmt, key in out.card_keys.items():
        blob = await store.get(key)
        assert blob.content_type == "image/png"
        assert Image.open(io.BytesIO(blob.data)).size == EXPECTED_SIZES[fmt]


async def test_redelivery_overwrites_with_identical_bytes(
    handlers: ShareHandlers, store: LocalBlobStore, events: RecordingPublisher
) -> None:
    photo_id, _ = await seed_photo(store)
    event = scored(photo_id, ADULT)
    first = await handlers.on_photo_scored(event)
    assert first is not None
    before = {key: (await store.get(key)).data for key in first.card_keys.values()}
    second = await handlers.on_photo_scored(event)
    assert second is not None
    assert second.card_keys == first.card_keys
    assert {key: (await store.get(key)).data for key in second.card_keys.values()} == before
    assert await store.list(keys.cards_prefix(photo_id)) == sorted([*before, keys.cards_stamp(photo_id)])
    assert second.event_id == first.event_id and second.occurred_at == first.occurred_at  # one event to analytics


async def test_deleted_photo_gets_no_card(
    handlers: ShareHandlers, store: LocalBlobStore, events: RecordingPublisher
) -> None:
    tombstoned, _ = await seed_photo(store)
    await store.put(keys.tombstone(tombstoned), b"{}", "application/json")
    meta_gone, _ = await seed_photo(store)
    await store.delete(keys.meta(meta_gone))
    chip_gone, _ = await seed_photo(store)
    await store.delete_prefix(keys.chips_prefix(chip_gone))

    for photo_id in (tombstoned, meta_gone, chip_gone):
        assert await handlers.on_photo_scored(scored(photo_id, ADULT)) is None
        assert await store.list(keys.cards_prefix(photo_id)) == []
    assert events.events == []


async def test_photo_without_scored_faces_gets_no_card(
    handlers: ShareHandlers, store: LocalBlobStore, events: RecordingPublisher
) -> None:
    photo_id, _ = await seed_photo(store, faces=0)
    assert await handlers.on_photo_scored(scored(photo_id)) is None
    assert await store.list(keys.cards_prefix(photo_id)) == []
    assert events.events == []


async def test_minor_card_is_rendered_without_a_score(
    handlers: ShareHandlers, store: LocalBlobStore, events: RecordingPublisher
) -> None:
    adult_id, _ = await seed_photo(store)
    minor_id, _ = await seed_photo(store)
    adult = await handlers.on_photo_scored(scored(adult_id, ADULT))
    minor = await handlers.on_photo_scored(scored(minor_id, MINOR))
    assert adult is not None and minor is not None
    for fmt in EAGER_FORMATS:  # same chip, different text: the minor card must not be the adult one
        assert (await store.get(minor.card_keys[fmt])).data != (await store.get(adult.card_keys[fmt])).data
    assert headline(MINOR) == "I look 14 on Howhot"
    assert "hotness" not in description(MINOR).lower()
    assert headline(ADULT) == "I look 34 — and I'm 'Hot' on Howhot"


async def test_photo_deleted_removes_every_card_and_is_idempotent(
    handlers: ShareHandlers, store: LocalBlobStore
) -> None:
    photo_id, _ = await seed_photo(store)
    source = await handlers.card_source(photo_id, [ADULT])
    assert source is not None
    await handlers.render_and_store(source)  # every format, as after on-demand renders
    deleted = PhotoDeleted(photo_id=photo_id)
    assert await handlers.on_photo_deleted(deleted) == len(CARD_FORMATS)
    assert await handlers.on_photo_deleted(deleted) == 0
    assert await store.list(keys.cards_prefix(photo_id)) == []
    assert await store.exists(keys.meta(photo_id))  # not ours to delete


async def test_handle_routes_by_event_type(
    handlers: ShareHandlers, store: LocalBlobStore, events: RecordingPublisher
) -> None:
    photo_id, _ = await seed_photo(store)
    await handlers.handle(scored(photo_id, ADULT))
    assert len(events.of_type(CardRendered)) == 1
    await handlers.handle(PhotoDeleted(photo_id=photo_id))
    assert await store.list(keys.cards_prefix(photo_id)) == []


async def test_a_score_outside_the_card_range_is_an_invalid_event(
    handlers: ShareHandlers, store: LocalBlobStore
) -> None:
    photo_id, _ = await seed_photo(store)
    broken = ADULT.model_copy(update={"attractiveness": 11.0})
    with pytest.raises(InvalidEvent):  # a contract violation by scoring: dead-letter, don't retry
        await handlers.on_photo_scored(scored(photo_id, broken))


async def test_the_largest_face_is_featured(handlers: ShareHandlers, store: LocalBlobStore) -> None:
    photo_id, _ = await seed_photo(store, faces=2, sizes=(80.0, 160.0))
    manifest = FacesManifest.model_validate_json((await store.get(keys.faces_manifest(photo_id))).data)
    small, big = ADULT, ADULT.model_copy(update={"index": 1, "age": 50.0, "age_high": 55.0})
    assert choose_featured_face([small, big], manifest) == big
    assert choose_featured_face([small, big], None) == small  # no manifest: the first face
    assert choose_featured_face([], manifest) is None


def test_share_url_is_the_public_origin_plus_the_short_path() -> None:
    assert share_url("https://howhot.example/", "AbCdEfGhIjKlMnOp") == "https://howhot.example/s/AbCdEfGhIjKlMnOp"


async def test_every_example_of_a_consumed_event_is_handled(handlers: ShareHandlers) -> None:
    """The contract examples go through the dispatcher without error (unknown photo: skipped quietly)."""
    from libs.common.events.examples import examples
    from services.share.consumer import TOPICS

    consumed = [e for e in examples() if e.TOPIC in TOPICS]
    assert {type(e) for e in consumed} == {PhotoScored, PhotoDeleted}
    for event in consumed:
        await handlers.handle(event)


class FailingPuts(LocalBlobStore):
    """A store whose writes fail as an unreachable S3 would (after the adapter's own retries)."""

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        raise BlobStoreUnavailable(f"put {key}: connection refused")


async def test_storage_failures_wait_then_dead_letter_after_the_deadline(tmp_path: Path) -> None:
    from libs.common.blobs import StorageGiveUp

    clock = [0.0]
    store = FailingPuts(tmp_path)
    events = RecordingPublisher()
    handlers = ShareHandlers(store, events, CardRenderer(), BASE_URL,
                             storage_give_up=StorageGiveUp(60.0, clock=lambda: clock[0]))
    photo_id, _ = await seed_photo(LocalBlobStore(tmp_path))
    event = scored(photo_id, ADULT)
    with pytest.raises(BlobStoreUnavailable):  # before the deadline: the consumer backs off and retries
        await handlers.handle(event)
    clock[0] = 61.0
    with pytest.raises(InvalidEvent, match="storage_unavailable"):  # after it: dead-lettered, replayable
        await handlers.handle(event)
    assert events.events == []
    assert handlers.storage_give_up.tracked() == 0
