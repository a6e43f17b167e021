"""What the stages leave behind when a photo is deleted, rescored or redelivered mid-way: a real local blob store,
a recording publisher and fake networks (the pipeline's handlers themselves run unchanged)."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from libs.common import keys
from libs.common.blobs import BlobStoreUnavailable, LocalBlobStore
from libs.common.bus import RecordingPublisher
from libs.common.chips import CHIP_TEMPLATE
from libs.common.deletion import erase_photo
from libs.common.documents import PhotoMeta, ResultDocument
from libs.common.events import (
    FaceBox,
    FaceRated,
    FacesDetected,
    InvalidEvent,
    PhotoFailed,
    PhotoScored,
    PhotoUploaded,
    RatingSubmitted,
    derived_event_id,
)
from libs.common.ids import new_id
from libs.common.settings import ScoringSettings, Settings
from services.face.detector import DetectedFace
from services.face.handlers import FaceStage, handle_photo_uploaded
from services.scoring.features_store import PERSONAL_VECTOR, RatePool, RatePoolEntry
from services.scoring.handlers import ScoringStage, handle_faces_detected
from services.scoring.personal_api import install_personal_api
from services.scoring.personalize.model import PersonalModel
from services.scoring.ratings_consumer import (
    PersonalizeStage,
    handle_face_rated,
    handle_rating_submitted,
    load_personal_model,
)
from services.scoring.scorer import FaceScore

JSON = "application/json"
LANDMARKS = ((120.0, 130.0), (180.0, 130.0), (150.0, 160.0), (125.0, 190.0), (175.0, 190.0))
AN_ADULT = FaceScore(age=30.0, age_low=25.0, age_high=35.0, age_std=3.0, p_female=0.5, gender="male")


@pytest.fixture(scope="module")
def model() -> PersonalModel:
    return load_personal_model(Settings(scoring=ScoringSettings(min_ratings=3)))


def face_vector(model: PersonalModel, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (model.item_map.mean + rng.normal(size=model.item_map.mean.shape) * model.item_map.scale).astype(np.float32)


def adult(model: PersonalModel) -> tuple[FaceScore, dict[str, Any]]:
    """What the scoring networks answer for an adult face: scores, an attractiveness and its personal vector."""
    return AN_ADULT, {"attractiveness": 6.0, PERSONAL_VECTOR: face_vector(model)}


def png(size: int, value: int = 128) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


async def photo(blobs: LocalBlobStore, *, store_photo: bool = True, rateable: bool = True) -> PhotoUploaded:
    """An accepted upload: the stored photo and upload's meta."""
    photo_id = new_id()
    data = png(300)
    await blobs.put(keys.photo(photo_id), data, "image/png")
    meta = PhotoMeta(photo_id=photo_id, created_at=datetime.now(UTC), delete_token_sha256="x" * 64,
                     visitor_id=new_id(), rateable=rateable, rate_id=new_id() if rateable else None,
                     store_photo=store_photo, width=300, height=300)
    await blobs.put(keys.meta(photo_id), meta.model_dump_json().encode(), JSON)
    return PhotoUploaded(photo_id=photo_id, blob_key=keys.photo(photo_id), width=300, height=300,
                         size_bytes=len(data), store_photo=store_photo)


async def detected(blobs: LocalBlobStore, upload: PhotoUploaded,
                   chip_landmarks: list[tuple[float, float]] | None = None) -> FacesDetected:
    """What the face stage leaves for one face: its chip and the faces.detected event."""
    chip_key = keys.chip(upload.photo_id, 0)
    await blobs.put(chip_key, png(256), "image/png")
    landmarks = chip_landmarks or [(float(x), float(y)) for x, y in CHIP_TEMPLATE]
    face = FaceBox(index=0, box=(100, 90, 200, 220), score=0.99, landmarks=list(LANDMARKS), chip_key=chip_key,
                   chip_landmarks=landmarks, size=130)
    return FacesDetected(event_id=derived_event_id(upload, "faces.detected"), photo_id=upload.photo_id,
                         faces=[face], detector="fake", image_width=300, image_height=300, elapsed_ms=1.0)


def deleting(blobs: LocalBlobStore, photo_id: str, then: Callable[[], Any]) -> Callable[..., Awaitable[Any]]:
    """A fake network during which the owner deletes the photo (upload's own erase), then answers ``then()``."""

    async def run(*_: object) -> Any:
        await erase_photo(blobs, photo_id, share_id=None, reason="owner")
        return then()

    return run


async def left_behind(blobs: LocalBlobStore, photo_id: str) -> list[str]:
    """Every derived blob of the photo still in storage (the meta and the tombstone are not derived)."""
    single, prefixes = keys.derived_keys_and_prefixes(photo_id)
    found = [k for k in single if await blobs.exists(k)]
    for prefix in prefixes:
        found += await blobs.list(prefix)
    return found


class FailingOnce(RecordingPublisher):
    """The broker refuses the first publish, then works (the consumer retries the message)."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def publish(self, event: Any) -> None:
        if not self.failed:
            self.failed = True
            raise ConnectionError("broker down")
        await super().publish(event)


async def test_a_photo_deleted_during_detection_keeps_no_chip(tmp_path: Path) -> None:
    blobs, published = LocalBlobStore(tmp_path), RecordingPublisher()
    upload = await photo(blobs)
    detect = deleting(blobs, upload.photo_id, lambda: [DetectedFace(box=(100.0, 90.0, 200.0, 220.0), score=0.99,
                                                                    landmarks=LANDMARKS)])
    await handle_photo_uploaded(upload, FaceStage(blobs=blobs, publisher=published, detect=detect,
                                                  detector_name="fake"))
    assert await blobs.exists(keys.tombstone(upload.photo_id))
    assert await left_behind(blobs, upload.photo_id) == []
    assert published.events == []  # nothing downstream for a deleted photo


async def test_a_photo_deleted_during_scoring_keeps_no_result_vector_or_pool_entry(
    tmp_path: Path, model: PersonalModel
) -> None:
    blobs, published = LocalBlobStore(tmp_path), RecordingPublisher()
    upload = await photo(blobs, rateable=True)
    event = await detected(blobs, upload)
    score = deleting(blobs, upload.photo_id, lambda: adult(model))
    await handle_faces_detected(event, ScoringStage(blobs=blobs, publisher=published, score=score))
    assert await left_behind(blobs, upload.photo_id) == []
    assert published.of_type(PhotoScored) == []


async def test_erase_removes_what_a_stage_wrote_between_its_first_pass_and_the_tombstone(tmp_path: Path) -> None:
    """A stage whose last write lands after the first pass but whose tombstone check came before the tombstone."""
    photo_id = new_id()

    class LateWriter(LocalBlobStore):
        async def put(self, key: str, data: bytes, content_type: str = JSON) -> None:
            if key == keys.tombstone(photo_id):
                await super().put(keys.chip(photo_id, 0), png(8), "image/png")  # the stage's write, just in time
            await super().put(key, data, content_type)

    blobs = LateWriter(tmp_path)
    await blobs.put(keys.result(photo_id), b"{}", JSON)
    await erase_photo(blobs, photo_id, share_id=None, reason="owner")
    assert await left_behind(blobs, photo_id) == []


async def test_a_rating_folded_in_while_its_photo_is_deleted_leaves_no_face_state(
    tmp_path: Path, model: PersonalModel
) -> None:
    blobs = LocalBlobStore(tmp_path)
    upload = await photo(blobs)
    stage = PersonalizeStage.from_blobs(model, blobs)
    await stage.features.save(upload.photo_id, 0, face_vector(model))
    original_save = stage.items.save

    async def save_then_delete(photo_id: str, index: int, state: Any) -> None:
        await original_save(photo_id, index, state)
        await erase_photo(blobs, photo_id, share_id=None, reason="owner")  # the DELETE lands right after the write

    stage.items.save = save_then_delete  # type: ignore[method-assign]
    event = FaceRated(visitor_id=new_id(), photo_id=upload.photo_id, face_index=0, rating=model.mu,
                      rater_weights=[0.0] * model.dim, model_version=model.version)
    assert await handle_face_rated(event, stage) == "no_features"
    assert await left_behind(blobs, upload.photo_id) == []


async def test_a_cached_vector_does_not_let_a_deleted_face_be_rated(tmp_path: Path, model: PersonalModel) -> None:
    blobs = LocalBlobStore(tmp_path)
    upload = await photo(blobs)
    stage = PersonalizeStage.from_blobs(model, blobs)
    await stage.features.save(upload.photo_id, 0, face_vector(model))
    assert await stage.features.load(upload.photo_id, 0) is not None  # now cached (the rate-others queue read it)
    await erase_photo(blobs, upload.photo_id, share_id=None, reason="owner")
    rating = RatingSubmitted(visitor_id=new_id(), photo_id=upload.photo_id, face_index=0, scale="1to10", rating=7)
    assert await handle_rating_submitted(rating, stage) == "no_features"
    rated = FaceRated(visitor_id=new_id(), photo_id=upload.photo_id, face_index=0, rating=model.mu,
                      rater_weights=[0.0] * model.dim, model_version=model.version)
    assert await handle_face_rated(rated, stage) == "no_features"
    assert await left_behind(blobs, upload.photo_id) == []


async def test_a_rescoring_that_withholds_a_face_takes_it_out_of_the_rate_pool(
    tmp_path: Path, model: PersonalModel
) -> None:
    """First scored as an adult, then (redelivery under a new threshold, a borderline P(age < 18)) withheld."""
    blobs = LocalBlobStore(tmp_path)
    upload = await photo(blobs, rateable=True)
    event = await detected(blobs, upload)
    verdicts = iter([
        {"attractiveness": 6.0, "attractiveness_word": "Nice", PERSONAL_VECTOR: face_vector(model)},
        {"withheld_reason": "P(age < 18) = 0.21 exceeds 0.20"},
    ])

    async def score(_: object) -> tuple[FaceScore, dict[str, Any]]:
        return AN_ADULT, dict(next(verdicts))

    stage = ScoringStage(blobs=blobs, publisher=RecordingPublisher(), score=score)
    await handle_faces_detected(event, stage)
    assert [e.photo_id for e in await RatePool(blobs).entries()] == [upload.photo_id]
    await handle_faces_detected(event, stage)
    doc = ResultDocument.model_validate_json((await blobs.get(keys.result(upload.photo_id))).data)
    assert doc.faces[0]["withheld_reason"]
    assert not await blobs.exists(keys.face_features(upload.photo_id, 0))
    assert await RatePool(blobs).entries() == []


async def test_a_face_without_usable_landmarks_fails_its_photo_with_a_reason(tmp_path: Path) -> None:
    blobs, published = LocalBlobStore(tmp_path), RecordingPublisher()
    upload = await photo(blobs)
    event = await detected(blobs, upload, chip_landmarks=[(10.0, 10.0)] * 5)  # all five points on one pixel
    calls: list[object] = []

    async def score(item: object) -> tuple[FaceScore, dict[str, Any]]:
        calls.append(item)
        return AN_ADULT, {}

    with pytest.raises(InvalidEvent, match="chip_unreadable"):
        await handle_faces_detected(event, ScoringStage(blobs=blobs, publisher=published, score=score))
    assert calls == []  # never reached a batch shared with other photos
    doc = ResultDocument.model_validate_json((await blobs.get(keys.result(upload.photo_id))).data)
    assert doc.status == "failed" and doc.code == "chip_unreadable"
    assert len(published.of_type(PhotoFailed)) == 1


async def test_a_photo_not_kept_still_reports_no_face_after_a_failed_publish(tmp_path: Path) -> None:
    blobs, published = LocalBlobStore(tmp_path), FailingOnce()
    upload = await photo(blobs, store_photo=False)

    async def detect(_: object) -> list[DetectedFace]:
        return []

    stage = FaceStage(blobs=blobs, publisher=published, detect=detect, detector_name="fake")
    with pytest.raises(ConnectionError):
        await handle_photo_uploaded(upload, stage)
    await handle_photo_uploaded(upload, stage)  # the consumer's retry
    (event,) = published.of_type(FacesDetected)
    assert event.faces == []
    assert not await blobs.exists(keys.photo(upload.photo_id))  # discarded once the event was out


async def test_a_photo_not_kept_is_still_reported_scored_after_a_failed_publish(
    tmp_path: Path, model: PersonalModel
) -> None:
    blobs, published = LocalBlobStore(tmp_path), FailingOnce()
    upload = await photo(blobs, store_photo=False)
    event = await detected(blobs, upload)

    async def score(_: object) -> tuple[FaceScore, dict[str, Any]]:
        return adult(model)

    stage = ScoringStage(blobs=blobs, publisher=published, score=score)
    with pytest.raises(ConnectionError):
        await handle_faces_detected(event, stage)
    await handle_faces_detected(event, stage)
    assert len(published.of_type(PhotoScored)) == 1
    assert await blobs.list(keys.chips_prefix(upload.photo_id)) == []  # discarded once the event was out


async def test_a_redelivered_photo_announces_its_faces_and_scores_at_their_first_time(
    tmp_path: Path, model: PersonalModel
) -> None:
    """Same event id and same occurred_at: analytics counts one evaluation, even if the copy comes a day later."""
    blobs, published = LocalBlobStore(tmp_path), RecordingPublisher()
    upload = await photo(blobs)

    async def detect(_: object) -> list[DetectedFace]:
        return [DetectedFace(box=(100.0, 90.0, 200.0, 220.0), score=0.99, landmarks=LANDMARKS)]

    async def score(_: object) -> tuple[FaceScore, dict[str, Any]]:
        return adult(model)

    face_stage = FaceStage(blobs=blobs, publisher=published, detect=detect, detector_name="fake")
    scoring_stage = ScoringStage(blobs=blobs, publisher=published, score=score)
    for _ in range(2):  # the first delivery, then the redelivery after a crash before the offset commit
        await handle_photo_uploaded(upload, face_stage)
        await handle_faces_detected(published.of_type(FacesDetected)[0], scoring_stage)
    for kind in (FacesDetected, PhotoScored):
        first, again = published.of_type(kind)
        assert (again.event_id, again.occurred_at) == (first.event_id, first.occurred_at)
    scored = published.of_type(PhotoScored)[0]
    doc = ResultDocument.model_validate_json((await blobs.get(keys.result(upload.photo_id))).data)
    assert doc.scored_at == scored.occurred_at  # what the owner is shown is the same moment


async def test_a_retry_after_a_storage_blip_removes_what_the_failed_try_wrote_for_a_deleted_photo(
    tmp_path: Path, model: PersonalModel
) -> None:
    """The try that wrote the vectors failed (storage) before its own tombstone check; the retry finds the tombstone
    at once, and must clean up rather than just return."""
    upload: PhotoUploaded | None = None

    class BlipOnResult(LocalBlobStore):
        async def put(self, key: str, data: bytes, content_type: str = JSON) -> None:
            if upload is not None and key == keys.result(upload.photo_id) and not blipped:
                blipped.append(key)
                raise BlobStoreUnavailable("blip")
            await super().put(key, data, content_type)

    blipped: list[str] = []
    blobs = BlipOnResult(tmp_path)
    upload = await photo(blobs, rateable=True)
    event = await detected(blobs, upload)
    stage = ScoringStage(blobs=blobs, publisher=RecordingPublisher(),
                         score=deleting(blobs, upload.photo_id, lambda: adult(model)))
    with pytest.raises(BlobStoreUnavailable):
        await handle_faces_detected(event, stage)
    assert await left_behind(blobs, upload.photo_id)  # the vectors and the pool entry of a deleted photo, for now
    await handle_faces_detected(event, stage)  # the consumer's retry
    assert await left_behind(blobs, upload.photo_id) == []


async def test_pool_entries_from_before_rate_ids_are_not_offered(tmp_path: Path, model: PersonalModel) -> None:
    blobs = LocalBlobStore(tmp_path)
    old = RatePoolEntry(photo_id=new_id(), faces=[0], registered_at=datetime.now(UTC))  # no rate id: never shown
    await RatePool(blobs).register(old)
    stage = PersonalizeStage.from_blobs(model, blobs)
    await stage.features.save(old.photo_id, 0, face_vector(model))
    app = web.Application()
    install_personal_api(app, stage)
    async with TestClient(TestServer(app)) as client:
        answer = await (await client.get("/api/v1/rate/next", params={"viewer": new_id()})).json()
    assert answer == {"faces": []}
