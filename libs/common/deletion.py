"""Deleting a photo while stages may still be working on it, without leaving anything they write behind.

Stages check the tombstone before they work, but a photo can be deleted while a stage is detecting, scoring or folding
in a rating. Two rules close that window (storage is read-after-write consistent: a local directory, S3):

* the deleter (``erase_photo``) deletes the derived blobs, writes the tombstone, then deletes them once more;
* a stage that wrote blobs of a photo calls ``undo_if_deleted`` after its last write.

A stage's writes all happen before its check. If the check sees the tombstone, the stage removes them itself; if not,
the tombstone came later, so the deleter's second pass (after the tombstone) comes later still and removes them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

from libs.common import keys
from libs.common.blobs import BlobStore
from libs.common.events.envelope import utcnow

log = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"


async def _delete(blobs: BlobStore, single_keys: Sequence[str], prefixes: Sequence[str]) -> None:
    await asyncio.gather(*(blobs.delete(k) for k in single_keys), *(blobs.delete_prefix(p) for p in prefixes))


async def erase_photo(
    blobs: BlobStore, photo_id: str, *, share_id: str | None, reason: str, rate_id: str | None = None
) -> None:
    """Everything derived from the photo (its public share record and rate alias too) goes, around the tombstone; the
    meta stays.

    The first pass comes before the tombstone so that privacy wins even if the tombstone write fails (a retry
    finishes the job); the second one catches what a stage wrote meanwhile (module docstring).
    """
    single_keys, prefixes = keys.derived_keys_and_prefixes(photo_id)
    deleted_at = utcnow().isoformat()
    if share_id:  # the public page goes; if it was public, a marker without the photo id lets it answer "deleted"
        if await blobs.exists(keys.share(share_id)):
            marker = {"deleted_at": deleted_at}
            await blobs.put(keys.share_tombstone(share_id), json.dumps(marker).encode(), JSON_CONTENT_TYPE)
        single_keys.append(keys.share(share_id))
    if rate_id:
        single_keys.append(keys.rate_alias(rate_id))
    await _delete(blobs, single_keys, prefixes)
    tombstone = {"photo_id": photo_id, "deleted_at": deleted_at, "reason": reason}
    await blobs.put(keys.tombstone(photo_id), json.dumps(tombstone).encode(), JSON_CONTENT_TYPE)
    await _delete(blobs, single_keys, prefixes)


async def undo_if_deleted(
    blobs: BlobStore, photo_id: str, *, single_keys: Sequence[str] = (), prefixes: Sequence[str] = ()
) -> bool:
    """After a stage's last write: if the photo was deleted meanwhile, delete what the stage wrote; returns whether."""
    if not await blobs.exists(keys.tombstone(photo_id)):
        return False
    await _delete(blobs, single_keys, prefixes)
    log.info("photo deleted while a stage worked on it: its writes removed", extra={"photo_id": photo_id})
    return True
