"""Scoring with personalization on, real models on a real photo: each adult face's vector is stored under features/,
an opted-in photo enters the rate pool, and the result document stays free of vectors. Skips when the converted
models are absent (``make install``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from libs.common import keys
from libs.common.blobs import LocalBlobStore
from libs.common.bus import RecordingPublisher
from libs.common.documents import PhotoMeta
from libs.common.events import FacesDetected, PhotoUploaded
from libs.common.ids import new_id
from libs.common.settings import Settings
from services.scoring.features_store import FaceFeatureStore, RatePool
from services.scoring.handlers import ScoringStage, handle_faces_detected
from services.scoring.ratings_consumer import load_personal_model


@pytest.fixture(scope="module")
def models():
    from services.face.detector import FaceDetector
    from services.scoring.app import ScoringModels
    from services.scoring.attractiveness import Attractiveness
    from services.scoring.scorer import FaceScorer

    scorer = FaceScorer(Settings().models_dir)  # `make test` converts the models first: missing ones are a failure
    detector = FaceDetector.from_settings()
    personal = load_personal_model(Settings())
    return detector, ScoringModels(scorer, Attractiveness.load("default", minor_threshold=0.2), personal)


async def test_adult_faces_get_vectors_and_join_the_pool(tmp_path: Path, astronaut_jpeg: bytes, models) -> None:
    from services.face.handlers import FaceStage, handle_photo_uploaded

    detector, scoring = models
    blobs, published = LocalBlobStore(tmp_path), RecordingPublisher()
    photo_id, owner = new_id(), new_id()
    await blobs.put(keys.photo(photo_id), astronaut_jpeg, "image/jpeg")
    meta = PhotoMeta(photo_id=photo_id, created_at=datetime.now(UTC), delete_token_sha256="x" * 64,
                     visitor_id=owner, rateable=True, rate_id=new_id(), width=512, height=512)
    await blobs.put(keys.meta(photo_id), meta.model_dump_json().encode(), "application/json")

    async def detect(image: np.ndarray):
        return detector.detect(image)

    async def score(item):
        return scoring.score([item])[0]

    uploaded = PhotoUploaded(photo_id=photo_id, blob_key=keys.photo(photo_id), width=512, height=512,
                             size_bytes=len(astronaut_jpeg))
    await handle_photo_uploaded(uploaded, FaceStage(blobs=blobs, publisher=published, detect=detect,
                                                    detector_name="retinaface_mobilenetv2"))
    (detected,) = published.of_type(FacesDetected)
    await handle_faces_detected(detected, ScoringStage(blobs=blobs, publisher=published, score=score))

    result = json.loads((await blobs.get(keys.result(photo_id))).data)
    face = result["faces"][0]
    assert "personal_vector" not in face
    assert result["model_versions"]["personalization"] == scoring.personal.version
    vector = await FaceFeatureStore(blobs).load(photo_id, 0)
    entries = await RatePool(blobs).entries()
    if face["withheld_reason"] is None:
        assert vector is not None and vector.shape == scoring.personal.item_map.mean.shape
        assert vector[-1] == pytest.approx(face["attractiveness"], abs=0.01)  # the global score is the last feature
        assert [(e.photo_id, e.faces, e.owner_visitor_id) for e in entries] == [(photo_id, [0], owner)]
    else:  # a probable minor: nothing to personalise, nothing to rate
        assert vector is None and entries == []
