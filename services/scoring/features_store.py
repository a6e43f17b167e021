"""What the scoring service keeps per face for personalization, and the rate-others pool.

Both are owned by scoring (libs/common/keys.py) and written at scoring time, so the ratings consumer and the personal
API never rerun a network: ``features/{photo_id}/{n}.npy`` holds face n's ``PersonalModel.face_vector`` (adults only:
a withheld minor gets no vector, so no personal score can ever be computed for it), and ``ratepool/{photo_id}.json``
lists the faces other visitors may be asked to rate (owner opted in via ``PhotoMeta.rateable``, adults only). The
upload service deletes both with the photo (``keys.derived_keys_and_prefixes``).
"""

from __future__ import annotations

import asyncio
import io
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import AwareDatetime, BaseModel

from libs.common import keys
from libs.common.blobs import BlobNotFound, BlobStore
from libs.common.documents import PhotoMeta, read_document
from libs.common.events.envelope import utcnow
from services.scoring.personalize.model import PersonalModel

log = logging.getLogger(__name__)

PERSONAL_VECTOR = "personal_vector"
"""Key under which ScoringModels hands a face's vector to the handler in the per-face extras (popped, never stored in
the result document)."""
NPY_CONTENT_TYPE = "application/octet-stream"
JSON_CONTENT_TYPE = "application/json"
POOL_LIST_TTL_S = 5.0  # listing ratepool/ is one LIST call; a rater waiting 5 s for a brand-new photo is fine
POOL_ENTRY_TTL_S = 60.0  # each entry is re-read after a minute: ~8 GETs/s for a full pool of 500 photos


def face_key(photo_id: str, index: int) -> str:
    """The face id used in rater histories ("photo_id/n"): stable, and names the blobs it came from."""
    return f"{photo_id}/{int(index)}"


def personal_vectors(
    personal: PersonalModel,
    blocks_by_face: Mapping[int, Mapping[str, np.ndarray]],
    extras: Sequence[Mapping[str, Any]],
) -> list[np.ndarray | None]:
    """Per face, its personalization vector, or None for faces without an attractiveness score (withheld minors).

    Uses the feature blocks the attractiveness pass already computed (one forward pass per batch, not two).
    """
    out: list[np.ndarray | None] = [None] * len(extras)
    for i, face_blocks in blocks_by_face.items():
        if extras[i].get("attractiveness") is None or extras[i].get("withheld_reason"):
            continue
        missing = [block for block in personal.blocks if block not in face_blocks]
        if missing:  # e.g. the commercial-safe profile lacks WRN: no personalization rather than a wrong vector
            log.warning("personalization disabled for this profile: feature blocks missing",
                        extra={"missing": missing[:5]})
            return [None] * len(extras)
        out[i] = personal.face_vector(dict(face_blocks), float(extras[i]["attractiveness"])).astype(np.float32)
    return out


def personal_members(personal: PersonalModel) -> list[str]:
    """The member networks whose feature blocks the personalization model reads."""
    return sorted({block.split(".", 1)[0] for block in personal.blocks})


def encode_vector(vector: np.ndarray) -> bytes:
    """.npy bytes (no pickle): readable by any numpy, and safe to load from storage."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(vector, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def decode_vector(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False).astype(np.float64)


class FaceFeatureStore:
    """Face vectors in the blob store, with an optional in-process LRU (vectors are immutable once written)."""

    def __init__(self, blobs: BlobStore, cache_size: int = 0, dim: int | None = None) -> None:
        self.blobs = blobs
        self.cache_size = cache_size
        self.dim = dim  # set: a stored vector of another length (an older model's blocks) reads as no vector
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    async def save(self, photo_id: str, index: int, vector: np.ndarray) -> None:
        await self.blobs.put(keys.face_features(photo_id, index), encode_vector(vector), NPY_CONTENT_TYPE)

    async def load(self, photo_id: str, index: int, *, cached: bool = True) -> np.ndarray | None:
        """The face's vector, or None when it has none (withheld minor, deleted photo, not scored yet).

        ``cached=False`` asks storage even for a cached vector: a cached one may belong to a photo deleted since or a
        face withheld on rescoring, which matters when the answer decides whether state gets written.
        """
        key = keys.face_features(photo_id, index)
        cached_vector = self._cache.get(key) if cached else None
        if cached_vector is not None:
            self._cache.move_to_end(key)
            return cached_vector
        try:
            blob = await self.blobs.get(key)
        except BlobNotFound:
            self._cache.pop(key, None)
            return None
        vector = decode_vector(blob.data)
        if self.dim is not None and vector.shape != (self.dim,):
            log.warning("face vector %s has %s values, the personal model reads %d: stored by an older model, "
                        "treated as absent (the global score is shown)", key, vector.shape, self.dim)
            return None
        if self.cache_size > 0:
            self._cache[key] = vector
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return vector


class RatePoolEntry(BaseModel):
    """ratepool/{photo_id}.json: the photo's faces other visitors may rate, whose photo it is (never shown), and the
    alias raters are shown instead of the photo id (PhotoMeta.rate_id)."""

    photo_id: str
    rate_id: str | None = None  # None: registered before rate ids existed; such a photo is not offered any more
    owner_visitor_id: str | None = None
    faces: list[int]
    registered_at: AwareDatetime


class RatePool:
    """Reads and writes the pool; ``entries`` caches the listing for seconds and each entry for a minute (an entry
    changes only when a rescoring withholds a face, and a pool entry that lists it is a face shown to raters)."""

    def __init__(self, blobs: BlobStore, max_photos: int = 500) -> None:
        self.blobs = blobs
        self.max_photos = max_photos
        self._entries: dict[str, tuple[RatePoolEntry, float]] = {}  # key → (entry, when it was read)
        self._listed_at = 0.0
        self._listing: list[str] = []

    async def register(self, entry: RatePoolEntry) -> None:
        await self.blobs.put(keys.rate_pool_entry(entry.photo_id), entry.model_dump_json().encode(), JSON_CONTENT_TYPE)

    async def entries(self) -> list[RatePoolEntry]:
        """Up to ``max_photos`` pool entries (a random sample when the pool is bigger, so every face gets seen)."""
        now = time.monotonic()
        if now - self._listed_at > POOL_LIST_TTL_S:
            self._listing = [k for k in await self.blobs.list(keys.RATE_POOL_PREFIX) if k.endswith(".json")]
            self._listed_at = now
            live = set(self._listing)  # deleted entries leave the cache, and so do entries read too long ago
            self._entries = {k: v for k, v in self._entries.items() if k in live and now - v[1] <= POOL_ENTRY_TTL_S}
        listing = self._listing
        if len(listing) > self.max_photos:
            listing = random.sample(listing, self.max_photos)
        missing = [k for k in listing if k not in self._entries]  # None below: deleted between list and get
        loaded = await asyncio.gather(*(read_document(self.blobs, k, RatePoolEntry) for k in missing))
        for key, entry in zip(missing, loaded, strict=True):
            if entry is not None:
                self._entries[key] = (entry, now)
        return [self._entries[k][0] for k in listing if k in self._entries]


async def store_personalization(
    blobs: BlobStore, photo_id: str, vectors: Sequence[tuple[int, np.ndarray | None]]
) -> None:
    """Store each adult face's vector, then (owner opted in) register those faces in the rate pool.

    Vectors go first, so a face in the pool always has one. Deterministic keys and content: redelivery rewrites the
    same blobs (the pool entry's registered_at aside). A rescoring can withhold a face scored before (a new model or
    threshold, a borderline P(age < 18)): its old vector and the old pool entry are removed first, so no stale vector
    lets the face be rated or personally scored.
    """
    adults = [(index, vector) for index, vector in vectors if vector is not None]
    withheld = [index for index, vector in vectors if vector is None]
    await asyncio.gather(*(blobs.delete(keys.face_features(photo_id, index)) for index in withheld))
    # the upload service's meta, read-only (its owner is upload); without a rate id, raters cannot be shown the photo
    meta = await read_document(blobs, keys.meta(photo_id), PhotoMeta)
    if meta is None or not meta.rateable or meta.rate_id is None:
        rate_id = None
    else:
        rate_id = meta.rate_id
        if withheld:  # an earlier scoring may have offered a face now withheld: re-registered below, adults only
            await blobs.delete(keys.rate_pool_entry(photo_id))
    if not adults:
        return
    store = FaceFeatureStore(blobs)
    await asyncio.gather(*(store.save(photo_id, index, vector) for index, vector in adults))
    if meta is None or rate_id is None:
        return
    entry = RatePoolEntry(photo_id=photo_id, rate_id=rate_id, owner_visitor_id=meta.visitor_id,
                          faces=[i for i, _ in adults], registered_at=utcnow())
    await RatePool(blobs).register(entry)
