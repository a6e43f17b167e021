"""Where rater and face states live: small async ports with blob-store adapters and an in-memory fake.

The personalisation code never touches storage; the scoring service injects the stores. States are JSON bytes
(``RaterState.to_bytes``, ``ItemState.to_bytes``) under ``personalize/``, so any key → bytes backend works (the blob
store here; a ClickHouse row keyed by rater or face would do as well).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Protocol

from libs.common import keys
from services.scoring.personalize.item import ItemState
from services.scoring.personalize.rater import RaterState

log = logging.getLogger(__name__)

KEY_PREFIX = "personalize/raters/"  # one blob per rater; the prefix lets an operator list or wipe them
CONTENT_TYPE = "application/json"


class RaterStateStore(Protocol):
    """Load and save rater states; ``load`` returns None for a rater never seen."""

    async def load(self, rater_id: str) -> RaterState | None: ...

    async def save(self, state: RaterState) -> None: ...


class InMemoryRaterStateStore:
    """The fake for unit tests (keeps bytes, not objects, so serialisation is exercised too)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    async def load(self, rater_id: str) -> RaterState | None:
        data = self.blobs.get(rater_id)
        return None if data is None else RaterState.from_bytes(data)

    async def save(self, state: RaterState) -> None:
        self.blobs[state.rater_id] = state.to_bytes()


class BlobRaterStateStore:
    """Rater states in a ``libs.common.blobs`` BlobStore (local directory or S3)."""

    def __init__(self, blobs: object, prefix: str = KEY_PREFIX) -> None:
        self.blobs = blobs
        self.prefix = prefix

    def key(self, rater_id: str) -> str:
        return f"{self.prefix}{rater_id}.json"

    async def load(self, rater_id: str) -> RaterState | None:
        from libs.common.blobs.base import BlobNotFound

        try:
            blob = await self.blobs.get(self.key(rater_id))  # type: ignore[attr-defined]
        except BlobNotFound:
            return None
        try:
            return RaterState.from_bytes(blob.data)
        except (ValueError, KeyError, TypeError):  # unreadable: start afresh, as a face state does, rather than
            log.warning("unreadable rater state ignored", extra={"rater": rater_id})  # dead-letter all their ratings
            return None

    async def save(self, state: RaterState) -> None:
        await self.blobs.put(self.key(state.rater_id), state.to_bytes(), CONTENT_TYPE)  # type: ignore[attr-defined]


class BlobItemStateStore:
    """Face item states (``item.ItemState``) under ``personalize/faces/{photo_id}/{n}.json``: deleted with the photo."""

    def __init__(self, blobs: object) -> None:
        self.blobs = blobs

    async def load(self, photo_id: str, index: int) -> ItemState | None:
        from libs.common.blobs.base import BlobNotFound

        key = keys.face_item(photo_id, index)
        try:
            blob = await self.blobs.get(key)  # type: ignore[attr-defined]
        except BlobNotFound:
            return None
        try:
            return ItemState.from_bytes(blob.data)
        except (ValueError, KeyError, TypeError):  # unreadable: the face counts as never rated, and its next rating
            log.warning("unreadable face state ignored", extra={"key": key})  # writes a fresh one
            return None

    async def save(self, photo_id: str, index: int, state: ItemState) -> None:
        await self.blobs.put(keys.face_item(photo_id, index), state.to_bytes(), CONTENT_TYPE)  # type: ignore[attr-defined]


class CachedItemStates:
    """Read-through cache of face states for the rate-others queue: a state up to ``ttl_s`` old ranks candidates
    well enough, and it spares the blob store a GET per candidate on every request."""

    def __init__(self, store: BlobItemStateStore, ttl_s: float = 60.0, max_size: int = 4096) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.max_size = max_size
        self._cache: OrderedDict[tuple[str, int], tuple[float, ItemState | None]] = OrderedDict()

    async def load(self, photo_id: str, index: int) -> ItemState | None:
        key = (photo_id, int(index))
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.ttl_s:
            self._cache.move_to_end(key)
            return hit[1]
        state = await self.store.load(photo_id, index)
        self._cache[key] = (now, state)
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_size:
            self._cache.popitem(last=False)
        return state
