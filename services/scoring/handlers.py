"""The scoring stage's logic: faces.detected → ensemble scores per face → results/{photo_id}.json + photo.scored.

Pure of Kafka/S3/HTTP: dependencies arrive in ``ScoringStage``. Idempotent: the same faces.detected produces the same
result document and a photo.scored with the same event id (derived from the input's) and the same time (the first
publication's, kept in the result as scored_at), so redelivery changes nothing.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from PIL import Image

from libs.common import keys
from libs.common.blobs import BlobNotFound, BlobStore, StorageGiveUp
from libs.common.bus import EventPublisher
from libs.common.deletion import undo_if_deleted
from libs.common.documents import ResultDocument, first_stamp
from libs.common.ephemeral import discard_images_if_ephemeral, keeps_photo
from libs.common.events import FaceResult, FacesDetected, InvalidEvent, PhotoFailed, PhotoScored, derived_event_id
from services.scoring.features_store import PERSONAL_VECTOR, store_personalization
from services.scoring.scorer import FaceScore

RESULT_CONTENT_TYPE = "application/json"
ROUND = 2  # decimals kept in the result document: more is noise to a person and bytes to the wire
MIN_EYE_DISTANCE_PX = 2.0  # aligned chips put the eyes tens of pixels apart; closer is a broken detection
STORAGE_FAILED = "storage_unavailable"
STORAGE_FAILED_REASON = "Our photo storage kept failing while we scored your photo. Please upload it again."

ScoreFn = Callable[[tuple[np.ndarray, np.ndarray]], Awaitable[tuple[FaceScore, dict[str, Any]]]]
"""(chip, chip landmarks) → the ensemble's FaceScore and the extra fields (attractiveness or the minors notice)."""


@dataclass
class ScoringStage:
    """What the handler needs: storage, the event publisher and the (micro-batched) scoring function."""

    blobs: BlobStore
    publisher: EventPublisher
    score: ScoreFn
    producer: str = "scoring"
    extra_versions: dict[str, str] = field(default_factory=dict)
    storage_give_up: StorageGiveUp = field(default_factory=StorageGiveUp)


def decode_chip(data: bytes) -> np.ndarray:
    """A stored chip (PNG written by the face stage) as an RGB uint8 array."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.uint8)


def landmarks_usable(landmarks: np.ndarray, chip_size: int) -> bool:
    """Five finite points, inside the chip's neighbourhood, with the eyes apart: what every member's crop needs.

    The contract refuses NaN; this catches a producer's degenerate points (all equal, far outside the chip), which
    would make a crop raise inside a micro-batch shared with other photos' faces.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        return False
    inside = bool(((points >= -chip_size) & (points <= 2 * chip_size)).all())
    return inside and float(np.linalg.norm(points[1] - points[0])) >= MIN_EYE_DISTANCE_PX


def _rounded(values: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, ROUND) if isinstance(v, float) else v for k, v in values.items()}


async def _first_stamp(stage: ScoringStage, event: FacesDetected, status: str) -> datetime:
    """When this outcome (photo.scored for "done", photo.failed) was first published: a redelivery keeps that time."""
    return await first_stamp(stage.blobs, keys.result(event.photo_id), ResultDocument,
                             lambda previous: previous.scored_at if previous.status == status else None)


async def _erased(stage: ScoringStage, photo_id: str) -> bool:
    """Whether the photo was deleted; if so, whatever this stage ever wrote for it goes (libs/common/deletion.py).

    Called before scoring too: an earlier attempt may have written, then failed (storage) before its own check."""
    return await undo_if_deleted(
        stage.blobs, photo_id, single_keys=[keys.result(photo_id), keys.rate_pool_entry(photo_id)],
        prefixes=[keys.face_features_prefix(photo_id)],
    )


async def _fail(stage: ScoringStage, event: FacesDetected, code: str, reason: str) -> None:
    """Make the failure the photo's terminal state (the user is told), then dead-letter the event."""
    failed_at = await _first_stamp(stage, event, "failed")
    doc = ResultDocument(photo_id=event.photo_id, status="failed", code=code, reason=reason, scored_at=failed_at)
    await stage.blobs.put(keys.result(event.photo_id), doc.model_dump_json().encode(), RESULT_CONTENT_TYPE)
    if await _erased(stage, event.photo_id):
        raise InvalidEvent(f"{code}: {reason} (the photo was deleted meanwhile)")
    await stage.publisher.publish(PhotoFailed(
        event_id=derived_event_id(event, "photo.failed"), occurred_at=failed_at, photo_id=event.photo_id,
        stage="scoring", code=code, reason=reason, trace_id=event.trace_id, producer=stage.producer,
    ))
    raise InvalidEvent(f"{code}: {reason}")


async def handle_faces_detected(event: FacesDetected, stage: ScoringStage) -> None:
    """Score every face of a photo and publish the result.

    Storage errors are retried by the consumer with backoff; a photo whose storage keeps failing past
    ``stage.storage_give_up`` is failed with a reason and dead-lettered instead of blocking its partition forever.
    """
    if not event.faces:
        return  # no_face is already the photo's terminal state, written by the face stage

    async def give_up() -> None:
        await _fail(stage, event, STORAGE_FAILED, STORAGE_FAILED_REASON)

    await stage.storage_give_up.run(event.event_id, lambda: _score_faces(event, stage), give_up)


async def _score_faces(event: FacesDetected, stage: ScoringStage) -> None:
    if await _erased(stage, event.photo_id):
        return  # deleted while queued: nothing to score, nothing to store
    started = time.perf_counter()
    try:
        blobs = await asyncio.gather(*(stage.blobs.get(face.chip_key) for face in event.faces))
    except BlobNotFound as exc:
        if await _erased(stage, event.photo_id):
            return
        if await stage.blobs.exists(keys.result(event.photo_id)) and not await keeps_photo(stage.blobs, event.photo_id):
            return  # redelivery of an ephemeral photo: scored before its chips were discarded
        await _fail(stage, event, "chip_missing", f"A face image of this photo is missing ({exc.key}).")
    try:
        chips = [decode_chip(blob.data) for blob in blobs]
    except (OSError, ValueError) as exc:
        await _fail(stage, event, "chip_unreadable", f"A face image of this photo could not be read ({exc}).")
    landmarks = [np.asarray(face.chip_landmarks, dtype=np.float32) for face in event.faces]
    if not all(landmarks_usable(lm, chip.shape[0]) for lm, chip in zip(landmarks, chips, strict=True)):
        await _fail(stage, event, "chip_unreadable", "A face of this photo has no usable landmarks.")
    scored = await asyncio.gather(*(stage.score((c, lm)) for c, lm in zip(chips, landmarks, strict=True)))
    scores = [s for s, _ in scored]
    extras = [e for _, e in scored]
    vectors = [e.pop(PERSONAL_VECTOR, None) for e in extras]  # stored as features/, never in the result document

    faces_doc: list[dict[str, Any]] = []
    summaries: list[FaceResult] = []
    versions: dict[str, str] = dict(stage.extra_versions)
    for face, score, extra in zip(event.faces, scores, extras, strict=True):
        versions.update(score.model_versions)
        summary = FaceResult(
            index=face.index, age=round(score.age, 1), age_low=round(score.age_low, 1),
            age_high=round(score.age_high, 1), p_female=round(score.p_female, 4), gender=score.gender,  # type: ignore[arg-type]
            attractiveness=extra.get("attractiveness"), attractiveness_word=extra.get("attractiveness_word"),
            withheld_reason=extra.get("withheld_reason"),
        )
        summaries.append(summary)
        faces_doc.append({
            **summary.model_dump(),
            "box": [round(v, 1) for v in face.box],
            "detection_score": round(face.score, 4),
            "age_std": round(score.age_std, 2),
            "members": {name: _rounded(values) for name, values in score.members.items()},
            **{k: v for k, v in extra.items() if k not in FaceResult.model_fields},
        })
    scored_at = await _first_stamp(stage, event, "done")
    doc = ResultDocument(
        photo_id=event.photo_id, status="done", faces=faces_doc, model_versions=versions, scored_at=scored_at
    )
    # before the result: once a face is visible as done, its vector (and pool entry) exist
    indexed = [(face.index, vector) for face, vector in zip(event.faces, vectors, strict=True)]
    await store_personalization(stage.blobs, event.photo_id, indexed)
    await stage.blobs.put(keys.result(event.photo_id), doc.model_dump_json().encode(), RESULT_CONTENT_TYPE)
    if await _erased(stage, event.photo_id):
        return  # deleted while we scored: nothing of it may stay
    await stage.publisher.publish(PhotoScored(
        event_id=derived_event_id(event, "photo.scored"), occurred_at=scored_at, photo_id=event.photo_id,
        result_key=keys.result(event.photo_id), faces=summaries, model_versions=versions,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 1), trace_id=event.trace_id, producer=stage.producer,
    ))
    # "don't store my photo": scores only from here; after the event, so a failed publish is retried with the chips
    await discard_images_if_ephemeral(stage.blobs, event.photo_id)
