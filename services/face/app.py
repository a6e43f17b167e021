"""The face service's composition root: RetinaFace loaded once behind a micro-batcher, and a consumer of
photo.uploaded that keeps up to ``max_batch`` photos in flight so detection batches fill across messages."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from aiohttp import web

from libs.common.blobs import BlobStore, StorageGiveUp, create_blob_store
from libs.common.bus import ConsumerRunner, EventPublisher
from libs.common.events import PhotoUploaded
from libs.common.model_serving import BatchedModel, batched_model_context, set_torch_threads
from libs.common.observability import install_observability
from libs.common.service import PUBLISHER, blob_store_context, consumer_context, publisher_context, stage_consumer
from libs.common.settings import Settings
from services.face.detector import DetectedFace, FaceDetector
from services.face.handlers import FaceStage, handle_photo_uploaded

SERVICE = "face"
CONSUMER_GROUP = "face"
MODEL = web.AppKey("face_model", BatchedModel)


def _build_model(settings: Settings, detector: FaceDetector | None) -> Callable[[], BatchedModel]:
    def load() -> FaceDetector:
        if detector is not None:
            return detector
        set_torch_threads(settings.models.torch_threads)
        return FaceDetector.from_settings(settings)

    def run(model: FaceDetector, images: list[np.ndarray]) -> list[list[DetectedFace]]:
        return model.detect_batch(images)

    return lambda: BatchedModel(load, run, settings.face.max_batch, settings.face.max_wait_ms)


def build_consumer(settings: Settings, app: web.Application, blobs: BlobStore) -> ConsumerRunner:
    stage = FaceStage(blobs=blobs, publisher=app[PUBLISHER], detect=app[MODEL].submit,
                      detector_name=settings.face.detector, producer=SERVICE,
                      storage_give_up=StorageGiveUp(settings.blobs.give_up_after_s))
    return stage_consumer(
        settings, app, group_id=CONSUMER_GROUP, event_type=PhotoUploaded,
        handle=lambda event: handle_photo_uploaded(event, stage), stage_label="detect_photo",
        concurrency=settings.face.max_batch,
    )


def create_app(
    settings: Settings,
    *,
    blob_store: BlobStore | None = None,
    publisher: EventPublisher | None = None,
    detector: FaceDetector | None = None,
    consume: bool = True,
) -> web.Application:
    """Wire the face service; injected adapters (tests) are used as-is and left to their owner."""
    app = web.Application()
    install_observability(app, SERVICE)
    blobs = blob_store if blob_store is not None else create_blob_store(settings)
    app.cleanup_ctx.append(blob_store_context(blobs, owned=blob_store is None))
    app.cleanup_ctx.append(publisher_context(settings, SERVICE, publisher))
    app.cleanup_ctx.append(batched_model_context(MODEL, _build_model(settings, detector)))
    if consume:
        app.cleanup_ctx.append(consumer_context(lambda a: build_consumer(settings, a, blobs)))
    return app
