"""The face stage's logic: photo.uploaded → faces found, aligned chips stored, faces.detected (or no_face/failed).

Pure of Kafka/S3/HTTP: dependencies arrive in ``FaceStage``. Idempotent: the same photo gives the same chip keys
(faces/{photo_id}/{n}.png), the same manifest, and a faces.detected whose event id derives from the upload's and whose
time is the first publication's (kept in the manifest).
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from PIL import Image

from libs.common import keys
from libs.common.alignment import AlignedFace, align_face
from libs.common.blobs import BlobNotFound, BlobStore, StorageGiveUp
from libs.common.bus import EventPublisher
from libs.common.deletion import undo_if_deleted
from libs.common.documents import FacesManifest, first_stamp
from libs.common.ephemeral import discard_images_if_ephemeral, keeps_photo
from libs.common.events import FaceBox, FacesDetected, InvalidEvent, PhotoFailed, PhotoUploaded, derived_event_id
from libs.common.images import ImageRejected, decode_image_bytes
from services.face.detector import DetectedFace
from services.face.quality import face_quality

MANIFEST_CONTENT_TYPE = "application/json"
CHIP_CONTENT_TYPE = "image/png"
PNG_COMPRESS_LEVEL = 1  # chips are small and short-lived; fast encoding beats a few percent of bytes
ROUND = 2
STORAGE_FAILED = "storage_unavailable"
STORAGE_FAILED_REASON = "Our photo storage kept failing while we processed your photo. Please upload it again."

DetectFn = Callable[[np.ndarray], Awaitable[list[DetectedFace]]]


@dataclass
class FaceStage:
    """What the handler needs: storage, the event publisher and the (micro-batched) detector."""

    blobs: BlobStore
    publisher: EventPublisher
    detect: DetectFn
    detector_name: str
    producer: str = "face"
    storage_give_up: StorageGiveUp = field(default_factory=StorageGiveUp)


@dataclass(frozen=True)
class ProcessedFace:
    """One face, ready to store and announce."""

    detection: DetectedFace
    aligned: AlignedFace
    png: bytes
    blur: float
    yaw: float


def encode_png(chip: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(chip).save(buffer, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def process_faces(image: np.ndarray, faces: list[DetectedFace]) -> list[ProcessedFace]:
    """Align, measure and encode every face (CPU work: the caller runs it in a thread)."""
    out = []
    for face in faces:
        aligned = align_face(image, face.landmarks_array())
        quality = face_quality(aligned.chip, aligned.landmarks)
        out.append(ProcessedFace(face, aligned, encode_png(aligned.chip), quality.blur_variance, quality.yaw_deg))
    return out


def _pairs(points: np.ndarray | tuple[tuple[float, float], ...]) -> list[tuple[float, float]]:
    return [(round(float(x), ROUND), round(float(y), ROUND)) for x, y in np.asarray(points).reshape(5, 2)]


async def _first_stamp(stage: FaceStage, event: PhotoUploaded, *, failed: bool) -> datetime:
    """When this outcome (faces.detected, or photo.failed) was first published: a redelivery keeps that time."""
    return await first_stamp(stage.blobs, keys.faces_manifest(event.photo_id), FacesManifest,
                             lambda previous: previous.emitted_at if (previous.status == "failed") == failed else None)


async def _erased(stage: FaceStage, photo_id: str) -> bool:
    """Whether the photo was deleted; if so, whatever this stage ever wrote for it goes (libs/common/deletion.py).

    Called before detecting too: an earlier attempt may have written, then failed (storage) before its own check."""
    return await undo_if_deleted(stage.blobs, photo_id, single_keys=[keys.faces_manifest(photo_id)],
                                 prefixes=[keys.chips_prefix(photo_id)])


async def _fail(stage: FaceStage, event: PhotoUploaded, code: str, reason: str) -> None:
    """Make the failure the photo's terminal state (the user is told), then dead-letter the event with the reason."""
    failed_at = await _first_stamp(stage, event, failed=True)
    manifest = FacesManifest(photo_id=event.photo_id, status="failed", code=code, reason=reason,
                             detector=stage.detector_name, emitted_at=failed_at)
    await stage.blobs.put(keys.faces_manifest(event.photo_id), manifest.model_dump_json().encode(),
                          MANIFEST_CONTENT_TYPE)
    if await _erased(stage, event.photo_id):
        raise InvalidEvent(f"{code}: {reason} (the photo was deleted meanwhile)")
    await stage.publisher.publish(PhotoFailed(
        event_id=derived_event_id(event, "photo.failed"), occurred_at=failed_at, photo_id=event.photo_id,
        stage="face", code=code, reason=reason, trace_id=event.trace_id, producer=stage.producer,
    ))
    raise InvalidEvent(f"{code}: {reason}")


async def handle_photo_uploaded(event: PhotoUploaded, stage: FaceStage) -> None:
    """Find, align and store every face of an uploaded photo; announce the outcome.

    Storage errors are retried by the consumer with backoff; a photo whose storage keeps failing past
    ``stage.storage_give_up`` is failed with a reason and dead-lettered instead of blocking its partition forever.
    """

    async def give_up() -> None:
        await _fail(stage, event, STORAGE_FAILED, STORAGE_FAILED_REASON)

    await stage.storage_give_up.run(event.event_id, lambda: _detect_faces(event, stage), give_up)


async def _detect_faces(event: PhotoUploaded, stage: FaceStage) -> None:
    if await _erased(stage, event.photo_id):
        return  # deleted while queued
    started = time.perf_counter()
    try:
        blob = await stage.blobs.get(event.blob_key)
    except BlobNotFound:
        if await _erased(stage, event.photo_id):
            return
        if await stage.blobs.exists(keys.faces_manifest(event.photo_id)) and not await keeps_photo(
            stage.blobs, event.photo_id
        ):
            return  # redelivery of a photo its owner did not want kept: handled before it was discarded
        await _fail(stage, event, "photo_missing", "We could not find your photo any more. Please upload it again.")
    try:
        image = await asyncio.to_thread(decode_image_bytes, blob.data)
    except (ImageRejected, OSError, ValueError) as exc:
        await _fail(stage, event, "photo_unreadable", f"Your photo could not be read ({exc}). Try another one.")
    faces = await stage.detect(image)
    processed = await asyncio.to_thread(process_faces, image, faces)
    await asyncio.gather(*(
        stage.blobs.put(keys.chip(event.photo_id, n), face.png, CHIP_CONTENT_TYPE) for n, face in enumerate(processed)
    ))
    boxes = [
        FaceBox(
            index=n, box=tuple(round(v, ROUND) for v in face.detection.box),  # type: ignore[arg-type]
            score=round(face.detection.score, 5), landmarks=_pairs(face.detection.landmarks),
            chip_key=keys.chip(event.photo_id, n), chip_landmarks=_pairs(face.aligned.landmarks),
            size=round(face.detection.size, ROUND), blur=round(face.blur, ROUND), yaw=round(face.yaw, ROUND),
        )
        for n, face in enumerate(processed)
    ]
    detected_at = await _first_stamp(stage, event, failed=False)
    manifest = FacesManifest(
        photo_id=event.photo_id, status="faces_found" if boxes else "no_face", faces=boxes,
        detector=stage.detector_name, emitted_at=detected_at,
    )
    await stage.blobs.put(keys.faces_manifest(event.photo_id), manifest.model_dump_json().encode(),
                          MANIFEST_CONTENT_TYPE)
    if await _erased(stage, event.photo_id):
        return  # deleted while we detected: no chip may outlive the deletion
    height, width = image.shape[:2]
    await stage.publisher.publish(FacesDetected(
        event_id=derived_event_id(event, "faces.detected"), occurred_at=detected_at, photo_id=event.photo_id,
        faces=boxes, detector=stage.detector_name, image_width=width, image_height=height,
        elapsed_ms=round((time.perf_counter() - started) * 1000, 1), trace_id=event.trace_id, producer=stage.producer,
    ))
    if not boxes:
        # no_face is terminal: a photo the owner did not want kept goes now, after the event (a failed publish is
        # retried while the photo is still there)
        await discard_images_if_ephemeral(stage.blobs, event.photo_id)
