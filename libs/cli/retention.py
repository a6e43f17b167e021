"""``howhot retention``: delete photos older than N days, with everything derived from them.

Why: photos are personal data; keeping them past their use is a liability (ARCHITECTURE.md principle 8). A photo is
purged exactly as an owner's delete would purge it, so status, share pages and analytics see one kind of deletion:
derived blobs (keys.derived_keys_and_prefixes) and the public share record, around a tombstone (erase_photo), then
photo.deleted(reason="retention"), and the meta last. Because the meta goes last, a run interrupted anywhere (broker
down, crash) leaves the photo still listed and the next run finishes it: the job is safe to re-run at any time.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

from pydantic import ValidationError

from libs.common import keys
from libs.common.blobs import BlobNotFound, BlobStore, create_blob_store
from libs.common.bus import EventPublisher, KafkaEventPublisher
from libs.common.deletion import erase_photo
from libs.common.documents import PhotoMeta
from libs.common.events import PhotoDeleted, new_trace_id, utcnow
from libs.common.settings import Settings

log = logging.getLogger(__name__)

PRODUCER = "retention"
META_PREFIX = "meta/"
META_SUFFIX = ".json"
JSON_CONTENT_TYPE = "application/json"
PUBLISHER_START_DEADLINE_S = 60.0  # a cron job should fail loudly, not wait forever for a broker


async def purge_expired(
    blobs: BlobStore, events: EventPublisher, *, older_than: timedelta, now: datetime | None = None
) -> int:
    """Purge every photo whose meta is older than ``older_than``; returns how many were fully purged.

    One photo's failure is logged and skipped (its meta stays, so the next run retries it); the others go on.
    """
    cutoff = (now or utcnow()) - older_than
    purged = 0
    for key in await blobs.list(META_PREFIX):
        if not key.endswith(META_SUFFIX):
            continue
        try:
            meta = PhotoMeta.model_validate_json((await blobs.get(key)).data)
        except BlobNotFound:
            continue  # deleted by its owner meanwhile
        except ValidationError:
            log.error("unreadable meta left alone", extra={"key": key})
            continue
        if meta.created_at >= cutoff:
            continue
        try:
            await _purge(meta, blobs, events)
        except Exception as exc:  # noqa: BLE001 - one photo must not stop the job; the next run retries it
            log.error("retention purge failed", extra={"photo_id": meta.photo_id, "error": repr(exc)})
            continue
        purged += 1
    log.info("retention run finished", extra={"purged": purged, "cutoff": cutoff.isoformat()})
    return purged


async def _purge(meta: PhotoMeta, blobs: BlobStore, events: EventPublisher) -> None:
    photo_id = meta.photo_id
    await erase_photo(blobs, photo_id, share_id=meta.share_id, rate_id=meta.rate_id, reason="retention")
    await events.publish(PhotoDeleted(photo_id=photo_id, reason="retention", trace_id=new_trace_id(),
                                      producer=PRODUCER))
    await blobs.delete(keys.meta(photo_id))


async def _run(settings: Settings, older_than_days: float, blobs: BlobStore | None,
               publisher: EventPublisher | None) -> int:
    own_blobs = blobs is None
    store = blobs if blobs is not None else create_blob_store(settings)
    kafka: KafkaEventPublisher | None = None
    if publisher is None:
        kafka = KafkaEventPublisher(settings.kafka, PRODUCER)
        await kafka.start(deadline_s=PUBLISHER_START_DEADLINE_S)
    try:
        return await purge_expired(store, publisher or kafka,  # type: ignore[arg-type]
                                   older_than=timedelta(days=older_than_days))
    finally:
        if kafka is not None:
            await kafka.stop()
        if own_blobs:
            await store.close()


def run_retention(
    settings: Settings,
    older_than_days: float,
    *,
    blob_store: BlobStore | None = None,
    publisher: EventPublisher | None = None,
) -> int:
    """Purge photos older than ``older_than_days`` days; returns the number purged. Adapters default to the ones the
    settings name (blob store, Kafka producer); tests inject a LocalBlobStore and a RecordingPublisher."""
    if older_than_days < 0:
        raise ValueError("older_than_days must be >= 0")
    return asyncio.run(_run(settings, older_than_days, blob_store, publisher))
