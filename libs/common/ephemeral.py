""""Don't store my photo": once a photo's terminal state is durable, its images are discarded (how-old.net kept none).

The owner's choice lives in the upload service's PhotoMeta (read-only here). The original and the face chips go; the
result document stays, so the owner still sees their scores; their share card shows a silhouette instead of the face.
"""

from __future__ import annotations

import asyncio

from pydantic import ValidationError

from libs.common import keys
from libs.common.blobs import BlobNotFound, BlobStore
from libs.common.documents import PhotoMeta


async def keeps_photo(blobs: BlobStore, photo_id: str) -> bool:
    """False only when the owner asked not to keep the photo (unknown or unreadable meta → keep)."""
    try:
        meta = PhotoMeta.model_validate_json((await blobs.get(keys.meta(photo_id))).data)
    except (BlobNotFound, ValidationError):
        return True
    return meta.store_photo


async def discard_images_if_ephemeral(blobs: BlobStore, photo_id: str) -> bool:
    """Delete the original and the chips when the owner chose not to keep the photo; returns whether it did."""
    if await keeps_photo(blobs, photo_id):
        return False
    await asyncio.gather(blobs.delete(keys.photo(photo_id)), blobs.delete_prefix(keys.chips_prefix(photo_id)))
    return True
