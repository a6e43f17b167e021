"""rating.submitted → the rater's personal-model state, and face.rated → the rated face's item state.

Two consumer groups of the scoring service:
- "personalize" (rating.submitted, keyed by rater): the rater's state (services/scoring/personalize/rater.py), one
  blob per rater (``personalize/raters/{visitor_id}.json``). At-least-once delivery and double-clicks must not count
  a rating twice, so a rating of a face already in the history is ignored (the first rating of a face wins, and the
  event id is kept next to it for tracing). One rater's events arrive in order on one partition; with
  ``concurrency`` > 1 a per-rater lock still keeps read-modify-write of a state strictly sequential. Before saving,
  it publishes face.rated: the rating on the model's scale with the rater's weights as they were.
- "face-items" (face.rated, keyed by photo): the face's item state (personalize/item.py, ``personalize/faces/...``),
  so a face that visitors have rated is predicted from their ratings as well as from its pixels. Keying by photo
  makes one consumer the only writer of a face's state; each rater counts once per face.
Publishing before saving means a crash in between re-publishes the same event (same derived id, same weights) on
redelivery, which the face's state absorbs: nothing is lost and nothing counts twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from aiohttp import web

from libs.common import keys
from libs.common.blobs import BlobStore
from libs.common.bus import ConsumerRunner
from libs.common.deletion import undo_if_deleted
from libs.common.events import Event, FaceRated, RatingSubmitted, derived_event_id
from libs.common.service import PUBLISHER, consumer_context
from libs.common.settings import Settings
from services.scoring.features_store import FaceFeatureStore, RatePool, face_key
from services.scoring.personalize.model import PersonalModel
from services.scoring.personalize.rater import RaterState
from services.scoring.personalize.store import (
    BlobItemStateStore,
    BlobRaterStateStore,
    CachedItemStates,
    RaterStateStore,
)

log = logging.getLogger(__name__)

CONSUMER_GROUP = "personalize"
FACE_ITEMS_GROUP = "face-items"
CONSUMER_CONCURRENCY = 8  # state updates are blob round trips, not CPU: overlap them across raters
MAX_FACE_RATINGS = 1000  # a face's state stops growing here: its vector is as sharp as it gets (FRL: 50 → 200
# ratings adds +0.006 hot-or-not), and the state (rater ids + ratings, ~40 KB) stays cheap to rewrite per rating
FEATURE_CACHE_SIZE = 4096  # ~19 KB each as float32 on disk, ~38 KB as float64 in memory: ~150 MB at most
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent / "weights" / "personal_frl_london.npz"

Outcome = Literal["added", "duplicate", "no_features"]
ItemOutcome = Literal["added", "duplicate", "no_features", "other_model", "saturated"]
Publish = Callable[[Event], Awaitable[None]]


def load_personal_model(settings: Settings) -> PersonalModel:
    """The configured bundle, with the operator's rating thresholds when set (HOWHOT_SCORING_MIN_RATINGS,
    HOWHOT_SCORING_CROWD_MIN_RATINGS)."""
    path = Path(settings.scoring.personal_model) if settings.scoring.personal_model else DEFAULT_MODEL_PATH
    model = PersonalModel.load(path)
    if settings.scoring.min_ratings > 0:
        model = dataclasses.replace(model, min_ratings=settings.scoring.min_ratings)
    if settings.scoring.crowd_min_ratings > 0:
        model = dataclasses.replace(model, crowd_min_ratings=settings.scoring.crowd_min_ratings)
    return model


class KeyedLocks:
    """One asyncio.Lock per key (rater, face) while in use (dropped when nobody holds or waits: bounded memory)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[asyncio.Lock]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            yield lock
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


@dataclass
class PersonalizeStage:
    """What the consumers and the personal API share: the model, rater and face states, face vectors, the rate pool."""

    model: PersonalModel
    states: RaterStateStore
    features: FaceFeatureStore
    pool: RatePool
    items: BlobItemStateStore
    queue_items: CachedItemStates  # the same states, up to a minute old, for ranking the rate-others queue
    locks: KeyedLocks = field(default_factory=KeyedLocks)  # per rater
    face_locks: KeyedLocks = field(default_factory=KeyedLocks)  # per face

    @classmethod
    def from_blobs(cls, model: PersonalModel, blobs: BlobStore, *, pool_size: int = 500,
                   cache_size: int = FEATURE_CACHE_SIZE) -> PersonalizeStage:
        items = BlobItemStateStore(blobs)
        return cls(model, BlobRaterStateStore(blobs), FaceFeatureStore(blobs, cache_size, model.item_map.mean.shape[0]),
                   RatePool(blobs, pool_size), items, CachedItemStates(items))


async def load_rater_state(stage: PersonalizeStage, rater_id: str) -> RaterState:
    """The rater's state for the current model: new if never seen, replayed if stored for another model version.

    Replay re-adds the history (each rating as given, on the new model's scale) through the new model's item map;
    faces whose vectors are gone (photo deleted) drop out, which is also what deletion should do to a rater's memory
    of that face.
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
        # the rating as given, put on the new model's scale (the stored one is on the old model's: another dataset's
        # scale or μ would turn a "hot" into a "not"); histories from before the raw rating was kept use the stored one
        rating = (stage.model.to_model_scale(item["scale"], float(item["raw_rating"]))
                  if "scale" in item and "raw_rating" in item else float(item["rating"]))
        fresh = fresh.with_rating(item["face"], vectors[0], float(offset[0]), rating)
        fresh.history[-1].update({k: v for k, v in item.items() if k not in ("face", "rating")})
    log.info("rater state replayed for a new model", extra={"rater": rater_id, "kept": fresh.n_ratings,
                                                            "had": state.n_ratings})
    return fresh


async def handle_rating_submitted(event: RatingSubmitted, stage: PersonalizeStage,
                                  publish: Publish | None = None) -> Outcome:
    """Add one rating to the rater's state, at most once per (rater, face); returns what happened (tests, logs).

    ``publish`` (the service's producer) sends the face.rated follow-up before the state is saved."""
    face = face_key(event.photo_id, event.face_index)
    with stage.locks.hold(event.visitor_id) as lock:
        async with lock:
            state = await load_rater_state(stage, event.visitor_id)
            if face in state.rated_faces():
                return "duplicate"
            vector = await stage.features.load(event.photo_id, event.face_index, cached=False)
            if vector is None:  # photo deleted since, or a face that never had one: nothing to learn from
                log.info("rating of a face without features ignored", extra={"face": face})
                return "no_features"
            item = stage.model.current_item(await stage.items.load(event.photo_id, event.face_index), face)
            if publish is not None:
                await publish(FaceRated(
                    event_id=derived_event_id(event, FaceRated.TOPIC), trace_id=event.trace_id, producer="scoring",
                    visitor_id=event.visitor_id, photo_id=event.photo_id, face_index=event.face_index,
                    rating=stage.model.to_model_scale(event.scale, event.rating),
                    rater_weights=[float(w) for w in stage.model.rater_weights(state)],
                    model_version=stage.model.version,
                ))
            updated = stage.model.add_rating(state, face, vector, event.rating, event.scale, item)
            updated.history[-1].update(event_id=str(event.event_id), scale=event.scale, raw_rating=float(event.rating))
            await stage.states.save(updated)
            return "added"


async def handle_face_rated(event: FaceRated, stage: PersonalizeStage) -> ItemOutcome:
    """Fold one rating into the face's item state, at most once per (face, rater)."""
    model = stage.model
    if event.model_version != model.version or len(event.rater_weights) != model.dim:
        return "other_model"  # weights in another model's latent space (a deploy mid-stream): not comparable
    face = face_key(event.photo_id, event.face_index)
    with stage.face_locks.hold(face) as lock:
        async with lock:
            if await stage.features.load(event.photo_id, event.face_index, cached=False) is None:
                # deleted since: no state behind the deletion, not even one an earlier try wrote before failing
                await undo_if_deleted(stage.features.blobs, event.photo_id,
                                      single_keys=[keys.face_item(event.photo_id, event.face_index)])
                return "no_features"
            item = model.current_item(await stage.items.load(event.photo_id, event.face_index), face)
            if event.visitor_id in item.raters:
                return "duplicate"
            if item.n_ratings >= MAX_FACE_RATINGS:
                return "saturated"
            updated = model.add_item_rating(item, np.asarray(event.rater_weights), event.rating, event.visitor_id)
            await stage.items.save(event.photo_id, event.face_index, updated)
            if await undo_if_deleted(stage.features.blobs, event.photo_id,
                                     single_keys=[keys.face_item(event.photo_id, event.face_index)]):
                return "no_features"  # deleted while we folded the rating in
            return "added"


def build_ratings_consumer(settings: Settings, app: web.Application, stage: PersonalizeStage) -> ConsumerRunner:
    publish = app[PUBLISHER].publish

    async def handler(event: Event) -> None:
        if isinstance(event, RatingSubmitted):
            await handle_rating_submitted(event, stage, publish)

    return ConsumerRunner(
        settings.kafka, group_id=CONSUMER_GROUP, topics=[RatingSubmitted.TOPIC], dlq_publisher=app[PUBLISHER],
        handler=handler, concurrency=CONSUMER_CONCURRENCY,
    )


def build_face_items_consumer(settings: Settings, app: web.Application, stage: PersonalizeStage) -> ConsumerRunner:
    async def handler(event: Event) -> None:
        if isinstance(event, FaceRated):
            await handle_face_rated(event, stage)

    return ConsumerRunner(
        settings.kafka, group_id=FACE_ITEMS_GROUP, topics=[FaceRated.TOPIC], dlq_publisher=app[PUBLISHER],
        handler=handler, concurrency=CONSUMER_CONCURRENCY,
    )


def ratings_consumer_context(
    settings: Settings, stage: PersonalizeStage
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context that runs the ratings consumer for the app's lifetime (after the publisher, for its DLQ
    and face.rated)."""
    return consumer_context(lambda app: build_ratings_consumer(settings, app, stage))


def face_items_consumer_context(
    settings: Settings, stage: PersonalizeStage
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The cleanup context that runs the face.rated consumer for the app's lifetime."""
    return consumer_context(lambda app: build_face_items_consumer(settings, app, stage))
