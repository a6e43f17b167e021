"""What the upload service's HTTP views need, bundled once by the app factory and stored under one typed AppKey.

Both the public API (routes_api.py) and the future website read the same bundle, so adapters are chosen in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiohttp import web

from libs.common.blobs import BlobStore
from libs.common.images import NormalizedImage, normalize_upload
from libs.common.settings import Settings
from services.upload.errors import unavailable
from services.upload.publishing import GuardedPublisher


class Admission:
    """Load shedding: past ``limit`` uploads in flight, answer 503 + Retry-After rather than queue without bound.

    Each in-flight upload may hold a whole body in memory, so this also caps the process's memory under a spike.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        if self.active >= self.limit:
            raise unavailable("overloaded", "We are receiving a lot of photos right now; please retry in a moment.")
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


@dataclass
class UploadDeps:
    """The service's ports and limits; ``decode_slots`` caps concurrent decodes (each may hold a 40 MP bitmap)."""

    settings: Settings
    blobs: BlobStore
    events: GuardedPublisher
    admission: Admission
    decode_slots: asyncio.Semaphore = field(default_factory=asyncio.Semaphore)

    async def normalize(self, data: bytes) -> NormalizedImage:
        """Validate and normalize an upload off the event loop (raises ImageRejected)."""
        limits = self.settings.upload
        async with self.decode_slots:
            return await asyncio.to_thread(
                normalize_upload, data, max_bytes=limits.max_bytes, max_pixels=limits.max_pixels,
                max_side=limits.max_side_stored,
            )


DEPS = web.AppKey("upload_deps", UploadDeps)
