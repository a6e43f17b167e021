"""The scoring service's composition root: the ensemble loaded once behind a micro-batcher, and a consumer of
faces.detected that keeps up to ``max_batch`` photos in flight so batches fill across messages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from aiohttp import web

from libs.common.blobs import BlobStore, StorageGiveUp, create_blob_store
from libs.common.bus import ConsumerRunner, EventPublisher
from libs.common.events import FacesDetected
from libs.common.model_serving import BatchedModel, batched_model_context, set_torch_threads
from libs.common.observability import install_observability
from libs.common.precision import resolve_device
from libs.common.service import PUBLISHER, blob_store_context, consumer_context, publisher_context, stage_consumer
from libs.common.settings import Settings
from services.scoring.attractiveness import Attractiveness
from services.scoring.features_store import PERSONAL_VECTOR, personal_members, personal_vectors
from services.scoring.handlers import ScoringStage, handle_faces_detected
from services.scoring.personal_api import install_personal_api
from services.scoring.personalize.model import PersonalModel
from services.scoring.ratings_consumer import (
    PersonalizeStage,
    face_items_consumer_context,
    load_personal_model,
    ratings_consumer_context,
)
from services.scoring.scorer import FaceScore, FaceScorer

SERVICE = "scoring"
CONSUMER_GROUP = "scoring"
MODEL = web.AppKey("scoring_model", BatchedModel)
AppContext = Callable[[web.Application], AsyncIterator[None]]


@dataclass
class ScoringModels:
    """Everything scored per face, loaded once: the age/gender ensemble and the attractiveness head."""

    scorer: FaceScorer
    attractiveness: Attractiveness
    personal: PersonalModel | None = None  # set: each adult face's personalization vector rides along in its extras

    def score(self, items: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[FaceScore, dict[str, Any]]]:
        """One batch: ensemble forward passes, then attractiveness on the same chips (minors withheld)."""
        extra_members = personal_members(self.personal) if self.personal is not None else []
        scores = self.scorer.score_items(items, self.attractiveness.tap(extra_members))
        versions = dict(self.attractiveness.model_versions)
        if self.personal is not None:
            versions["personalization"] = self.personal.version
        for score in scores:  # which head, embeddings and personalization model produced the extra fields
            score.model_versions = {**score.model_versions, **versions}
        extras, blocks = self.attractiveness.enrich(
            self.scorer, [c for c, _ in items], [lm for _, lm in items], scores, extra_members
        )
        if self.personal is not None:
            vectors = personal_vectors(self.personal, blocks, extras)
            for extra, vector in zip(extras, vectors, strict=True):
                if vector is not None:
                    extra[PERSONAL_VECTOR] = vector
        return list(zip(scores, extras, strict=True))


# Why two sizes: on the 2-core CPU the service's whole path is fastest at 8 faces per pass (16.4–17.6 faces/s against
# 14.1–15.2 at 32 in three runs, benchmarks/results/scoring_speed_service.md); a GPU needs large batches to be busy.
CPU_MAX_BATCH = 8
CUDA_MAX_BATCH = 256


def max_batch(settings: Settings) -> int:
    """Faces per forward pass: ``HOWHOT_SCORING_MAX_BATCH`` when set, else the size for the device the models use."""
    if settings.scoring.max_batch:
        return settings.scoring.max_batch
    return CUDA_MAX_BATCH if resolve_device(settings.models.device).type == "cuda" else CPU_MAX_BATCH


def _build_model(
    settings: Settings, scorer: FaceScorer | None, personal: PersonalModel | None = None
) -> Callable[[], BatchedModel]:
    def load() -> ScoringModels:
        set_torch_threads(settings.models.torch_threads)
        ensemble = scorer or FaceScorer(settings.models_dir, settings.models.profile, settings.models.device,
                                        compile=settings.models.compile, warmup=False)
        attractiveness = Attractiveness.load(
            settings.models.profile, settings.scoring.minor_threshold, settings.models_dir,
            personal_members(personal) if personal is not None else (),
        )
        models = ScoringModels(ensemble, attractiveness, personal)
        if scorer is None:  # warmed through the service's own path: compiled graphs trace the feature taps it uses
            ensemble.warmup(lambda chips, landmarks: models.score(list(zip(chips, landmarks, strict=True))),
                            max_batch(settings))
        return models

    return lambda: BatchedModel(
        load, lambda models, items: models.score(items), max_batch(settings), settings.scoring.max_wait_ms
    )


def build_consumer(settings: Settings, app: web.Application, blobs: BlobStore) -> ConsumerRunner:
    stage = ScoringStage(blobs=blobs, publisher=app[PUBLISHER], score=app[MODEL].submit, producer=SERVICE,
                         storage_give_up=StorageGiveUp(settings.blobs.give_up_after_s))
    return stage_consumer(
        settings, app, group_id=CONSUMER_GROUP, event_type=FacesDetected,
        handle=lambda event: handle_faces_detected(event, stage), stage_label="score_photo",
        concurrency=max_batch(settings),
    )


def create_app(
    settings: Settings,
    *,
    blob_store: BlobStore | None = None,
    publisher: EventPublisher | None = None,
    scorer: FaceScorer | None = None,
    consume: bool = True,
) -> web.Application:
    """Wire the scoring service; injected adapters (tests) are used as-is and left to their owner."""
    app = web.Application()
    install_observability(app, SERVICE)
    blobs = blob_store if blob_store is not None else create_blob_store(settings)
    app.cleanup_ctx.append(blob_store_context(blobs, owned=blob_store is None))
    app.cleanup_ctx.append(publisher_context(settings, SERVICE, publisher))
    personal = load_personal_model(settings)
    app.cleanup_ctx.append(batched_model_context(MODEL, _build_model(settings, scorer, personal)))
    personalize = PersonalizeStage.from_blobs(personal, blobs, pool_size=settings.scoring.rate_pool_size)
    install_personal_api(app, personalize)
    if consume:
        app.cleanup_ctx.append(consumer_context(lambda a: build_consumer(settings, a, blobs)))
        app.cleanup_ctx.append(ratings_consumer_context(settings, personalize))
        app.cleanup_ctx.append(face_items_consumer_context(settings, personalize))
    return app
