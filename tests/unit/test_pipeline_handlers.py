"""The face and scoring stages' handlers with the real models, a real local blob store and a recording publisher."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from libs.common import keys
from libs.common.blobs import LocalBlobStore
from libs.common.bus import RecordingPublisher
from libs.common.events import FacesDetected, InvalidEvent, PhotoFailed, PhotoScored, PhotoUploaded
from libs.common.ids import new_id
from libs.common.settings import Settings
from services.face.detector import FaceDetector
from services.face.handlers import FaceStage, handle_photo_uploaded
from services.scoring.app import ScoringModels
from services.scoring.attractiveness import Attractiveness
from services.scoring.handlers import ScoringStage, handle_faces_detected
from services.scoring.scorer import FaceScorer


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    from services.face.models.convert_tf_graph import fetch

    fetch(Settings().models_dir, progress=False)
    return FaceDetector.from_settings()


@pytest.fixture(scope="module")
def scorer() -> FaceScorer:
    from services.scoring.models.registry import fetch

    fetch(Settings().models_dir, progress=False)
    return FaceScorer(Settings().models_dir)


def face_stage(blobs: LocalBlobStore, publisher: RecordingPublisher, detector: FaceDetector) -> FaceStage:
    async def detect(image: np.ndarray):
        return detector.detect(image)

    return FaceStage(blobs=blobs, publisher=publisher, detect=detect, detector_name="retinaface_mobilenetv2")


def scoring_stage(blobs: LocalBlobStore, publisher: RecordingPublisher, scorer: FaceScorer) -> ScoringStage:
    models = ScoringModels(scorer, Attractiveness.load("default", minor_threshold=0.2))

    async def score(item):
        return models.score([item])[0]

    return ScoringStage(blobs=blobs, publisher=publisher, score=score)


async def uploaded(blobs: LocalBlobStore, data: bytes) -> PhotoUploaded:
    photo_id = new_id()
    await blobs.put(keys.photo(photo_id), data, "image/jpeg")
    return PhotoUploaded(photo_id=photo_id, blob_key=keys.photo(photo_id), width=512, height=512, size_bytes=len(data))


async def test_a_photo_goes_from_upload_to_scores(tmp_path: Path, astronaut_jpeg: bytes, detector, scorer) -> None:
    blobs, published = LocalBlobStore(tmp_path), RecordingPublisher()
    event = await uploaded(blobs, astronaut_jpeg)
    await handle_photo_uploaded(event, face_stage(blobs, published, detector))
    (detected,) = published.of_type(FacesDetected)
    assert len(detected.faces) == 1
    face = detected.faces[0]
    x0, y0, x1, y1 = face.box
    assert 150 < (x0 + x1) / 2 < 260 and 50 < (y0 + y1) / 2 < 170  # the astronaut's face, upper middle of the photo
    assert await blobs.exists(face.chip_key)
    manifest = json.loads((await blobs.get(keys.faces_manifest(event.photo_id))).data)
    assert manifest["status"] == "faces_found"

    await handle_faces_detected(detected, scoring_stage(blobs, published, scorer))
    (scored,) = published.of_type(PhotoScored)
    result = json.loads((await blobs.get(keys.result(event.photo_id))).data)
    assert result["status"] == "done" and len(result["faces"]) == 1
    first = result["faces"][0]
    assert 25 <= first["age"] <= 55 and first["age_low"] <= first["age"] <= first["age_high"]
    assert first["gender"] == "female" and first["box"] == [round(v, 1) for v in face.box]
    assert set(first["members"]) >= {"wrn16_8_imdbwiki", "agegender_cc0_age"}
    # the result names every model behind it: members, the attractiveness head and the face embeddings it ran
    assert set(result["model_versions"]) >= {*first["members"], "beauty_head_all", "arcface_mbf", "dlib_face_embedding"}
    assert result["model_versions"]["beauty_head_all"] == "5"
    if first["withheld_reason"] is None:  # an adult: a global attractiveness score with its word
        assert 1 <= first["attractiveness"] <= 10 and first["attractiveness_word"]
    else:
        assert first["attractiveness"] is None and first["p_minor"] > 0.2

    # Redelivery: same keys, same document, same output event id (analytics dedups it).
    await handle_faces_detected(detected, scoring_stage(blobs, published, scorer))
    again = published.of_type(PhotoScored)[-1]
    assert again.event_id == scored.event_id
    assert json.loads((await blobs.get(keys.result(event.photo_id))).data) == result


async def test_no_face_is_a_terminal_state(tmp_path: Path, detector) -> None:
    import io

    from PIL import Image

    blobs, published = LocalBlobStore(tmp_path), RecordingPublisher()
    buf = io.BytesIO()
    Image.fromarray(np.full((300, 400, 3), 120, np.uint8)).save(buf, "JPEG")
    event = await uploaded(blobs, buf.getvalue())
    await handle_photo_uploaded(event, face_stage(blobs, published, detector))
    (detected,) = published.of_type(FacesDetected)
    assert detected.faces == []
    manifest = json.loads((await blobs.get(keys.faces_manifest(event.photo_id))).data)
    assert manifest["status"] == "no_face"


@pytest.mark.parametrize("content", [None, b"\xff\xd8\xff garbage that is no JPEG"])
async def test_missing_or_corrupt_photo_fails_with_a_reason(tmp_path: Path, detector, content: bytes | None) -> None:
    blobs, published = LocalBlobStore(tmp_path), RecordingPublisher()
    photo_id = new_id()
    if content is not None:
        await blobs.put(keys.photo(photo_id), content, "image/jpeg")
    event = PhotoUploaded(photo_id=photo_id, blob_key=keys.photo(photo_id), width=1, height=1, size_bytes=10)
    with pytest.raises(InvalidEvent):
        await handle_photo_uploaded(event, face_stage(blobs, published, detector))
    (failed,) = published.of_type(PhotoFailed)
    assert failed.stage == "face" and failed.reason
    manifest = json.loads((await blobs.get(keys.faces_manifest(photo_id))).data)
    assert manifest["status"] == "failed" and manifest["reason"]


async def test_deleted_photos_are_skipped(tmp_path: Path, astronaut_jpeg: bytes, detector) -> None:
    blobs, published = LocalBlobStore(tmp_path), RecordingPublisher()
    event = await uploaded(blobs, astronaut_jpeg)
    await blobs.put(keys.tombstone(event.photo_id), b"{}", "application/json")
    await handle_photo_uploaded(event, face_stage(blobs, published, detector))
    assert published.events == [] and not await blobs.exists(keys.faces_manifest(event.photo_id))


async def test_a_photo_not_to_be_kept_is_discarded_once_scored(
    tmp_path: Path, astronaut_jpeg: bytes, detector, scorer
) -> None:
    from datetime import UTC, datetime

    from libs.common.documents import PhotoMeta

    blobs, published = LocalBlobStore(tmp_path), RecordingPublisher()
    event = await uploaded(blobs, astronaut_jpeg)
    meta = PhotoMeta(photo_id=event.photo_id, created_at=datetime.now(UTC), delete_token_sha256="0" * 64,
                     store_photo=False, width=512, height=512)
    await blobs.put(keys.meta(event.photo_id), meta.model_dump_json().encode(), "application/json")
    await handle_photo_uploaded(event, face_stage(blobs, published, detector))
    (detected,) = published.of_type(FacesDetected)
    await handle_faces_detected(detected, scoring_stage(blobs, published, scorer))
    assert json.loads((await blobs.get(keys.result(event.photo_id))).data)["status"] == "done"
    assert not await blobs.exists(keys.photo(event.photo_id))
    assert await blobs.list(keys.chips_prefix(event.photo_id)) == []
    # Redelivery after the discard is not a failure: both stages recognise the photo as already handled.
    await handle_photo_uploaded(event, face_stage(blobs, published, detector))
    await handle_faces_detected(detected, scoring_stage(blobs, published, scorer))
    assert published.of_type(PhotoFailed) == []
