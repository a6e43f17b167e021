"""What the upload service's HTTP views need, bundled once by the app factory and stored under one typed AppKey.

Both the public API (routes_api.py) and the future website read the same bundle, so adapters are chosen in one place.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from libs.common.blobs import BlobStore
from libs.common.images import NormalizedImage, normalize_upload
from libs.common.settings import Settings
from services.upload.admission import Admission, BacklogGate
from services.upload.publishing import GuardedPublisher
from services.upload.ratelimit import RateLimiter


@dataclass
class UploadDeps:
    """The service's ports and limits; ``decode_slots`` caps concurrent decodes (each may hold a 40 MP bitmap)."""

    settings: Settings
    blobs: BlobStore
    events: GuardedPublisher
    admission: Admission
    decode_slots: asyncio.Semaphore = field(default_factory=asyncio.Semaphore)
    backlog: BacklogGate | None = None  # None: no pipeline to measure (unit tests with a recording publisher)
    rate_limiter: RateLimiter | None = None

    async def normalize(self, data: bytes) -> NormalizedImage:
        """Validate and normalize an upload off the event loop (raises ImageRejected)."""
        limits = self.settings.upload
        async with self.decode_slots:
            return await asyncio.to_thread(
                normalize_upload, data, max_bytes=limits.max_bytes, max_pixels=limits.max_pixels,
                max_side=limits.max_side_stored,
            )


DEPS = web.AppKey("upload_deps", UploadDeps)
