"""rating.submitted → the rater's personal-model state (consumer group "personalize" of the scoring service).

The state (services/scoring/personalize/rater.py) is sufficient statistics plus history, stored as one blob per rater
(``personalize/raters/{visitor_id}.json``, owned by scoring). At-least-once delivery and double-clicks must not count a
rating twice, so a rating of a face already in the history is ignored (the first rating of a face wins, and the
event id is kept next to it for tracing). Ratings are keyed by rater, so one rater's events arrive in order on one
partition; with ``concurrency`` > 1 a per-rater lock still keeps read-modify-write of a state strictly sequential.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from aiohttp import web

from libs.common.blobs import BlobStore
from libs.common.bus import ConsumerRunner
from libs.common.events import Event, RatingSubmitted
from libs.common.service import PUBLISHER, consumer_context
from libs.common.settings import Settings
from services.scoring.features_store import FaceFeatureStore, RatePool, face_key
from services.scoring.personalize.model import PersonalModel
from services.scoring.personalize.rater import RaterState
from services.scoring.personalize.store import BlobRaterStateStore, RaterStateStore

log = logging.getLogger(__name__)

CONSUMER_GROUP = "personalize"
CONSUMER_CONCURRENCY = 8  # state updates are blob round trips, not CPU: overlap them across raters
FEATURE_CACHE_SIZE = 4096  # ~19 KB each as float32 on disk, ~38 KB as float64 in memory: ~150 MB at most
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "weights" / "personal_frl_london.npz"

Outcome = Literal["added", "duplicate", "no_features"]


def load_personal_model(settings: Settings) -> PersonalModel:
    """The configured bundle, with the operator's rating threshold when set (HOWHOT_SCORING_MIN_RATINGS)."""
    path = Path(settings.scoring.personal_model) if settings.scoring.personal_model else DEFAULT_MODEL_PATH
    model = PersonalModel.load(path)
    if settings.scoring.min_ratings > 0:
        model = dataclasses.replace(model, min_ratings=settings.scoring.min_ratings)
    return model


class RaterLocks:
    """One asyncio.Lock per rater while in use (dropped when nobody holds or waits, so memory stays bounded)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextmanager
    def hold(self, rater_id: str) -> Iterator[asyncio.Lock]:
        lock, users = self._locks.get(rater_id, (asyncio.Lock(), 0))
        self._locks[rater_id] = (lock, users + 1)
        try:
            yield lock
        finally:
            lock, users = self._locks[rater_id]
            if users <= 1:
                del self._locks[rater_id]
            else:
                self._locks[rater_id] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


@dataclass
class PersonalizeStage:
    """What the consumer and the personal API share: the model, rater states, face vectors and the rate pool."""

    model: PersonalModel
    states: RaterStateStore
    features: FaceFeatureStore
    pool: RatePool
    locks: RaterLocks = field(default_factory=RaterLocks)

    @classmethod
    def from_blobs(cls, model: PersonalModel, blobs: BlobStore, *, pool_size: int = 500,
                   cache_size: int = FEATURE_CACHE_SIZE) -> PersonalizeStage:
        return cls(model, BlobRaterStateStore(blobs), FaceFeatureStore(blobs, cache_size, model.item_map.mean.shape[0]),
                   RatePool(blobs, pool_size))


async def load_rater_state(stage: PersonalizeStage, rater_id: str) -> RaterState:
    """The rater's state for the current model: new if never seen, replayed if stored for another model version.

    Replay re-adds the history (model-scale ratings) through the new model's item map; faces whose vectors are gone
    (photo deleted) drop out, which is also what deletion should do to a rater's memory of that face.
    """
    state = await stage.states.load(rater_id)
    if state is None:
        return stage.model.new_state(rater_id)
    if state.model_version == stage.model.version:
        return state
    fresh = stage.model.new_state(rater_id, state.demographics)
    for item in state.history:
        photo_id, _, index = str(item["face"]).partition("/")
        vector = await stage.features.load(photo_id, int(index)) if index.isdigit() else None
        if vector is None:
            continue
        offset, vectors = stage.model.item_params(vector.reshape(1, -1))
        fresh = fresh.with_rating(item["face"], vectors[0], float(offset[0]), float(item["rating"]))
        fresh.history[-1].update({k: v for k, v in item.items() if k not in ("face", "rating")})
    log.info("rater state replayed for a new model", extra={"rater": rater_id, "kept": fresh.n_ratings,
                                                            "had": state.n_ratings})
    return fresh


async def handle_rating_submitted(event: RatingSubmitted, stage: PersonalizeStage) -> Outcome:
    """Add one rating to the rater's state, at most once per (rater, face); returns what happened (tests, logs)."""
    face = face_key(event.photo_id, event.face_index)
    with stage.locks.hold(event.visitor_id) as lock:
        async with lock:
            state = await load_rater_state(stage, event.visitor_id)
            if face in state.rated_faces():
                return "duplicate"
            vector = await stage.features.load(event.photo_id, event.face_index)
            if vector is None:  # photo deleted since, or a face that never had one: nothing to learn from
                log.info("rating of a face without features ignored", extra={"face": face})
                return "no_features"
            updated = stage.model.add_rating(state, face, vector, event.rating, event.scale)
            updated.history[-1]["event_id"] = str(event.event_id)
            await stage.states.save(updated)
            return "added"


def build_ratings_consumer(settings: Settings, app: web.Application, stage: PersonalizeStage) -> ConsumerRunner:
    async def handler(event: Event) -> None:
        if isinstance(event, RatingSubmitted):
            await handle_rating_submitted(event, stage)

    return ConsumerRunner(
        settings.kafka, group_id=CONSUMER_GROUP, topics=[RatingSubmitted.TOPIC], dlq_publisher=app[PUBLISHER],
        handler=handler, concurrency=CONSUMER_CONCURRENCY,
    )


def ratings_consumer_context(
    settings: Settings, stage: PersonalizeStage
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context that runs the consumer for the app's lifetime (after the publisher, for its DLQ)."""
    return consumer_context(lambda app: build_ratings_consumer(settings, app, stage))
