"""The upload service's use cases as plain async functions over the BlobStore and event-publisher ports.

No aiohttp, aiokafka or boto3 here: the HTTP layer (routes_api.py) parses requests and maps the outcomes below to
responses; app.py chooses the adapters. Each function states what it leaves behind when a backend fails.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel

from libs.common import keys
from libs.common.blobs import Blob, BlobNotFound, BlobStore
from libs.common.deletion import erase_photo, undo_if_deleted
from libs.common.documents import FacesManifest, PhotoMeta, RateAlias, ResultDocument, ShareRecord, read_document
from libs.common.events import Attribution, PhotoDeleted, PhotoShared, PhotoUploaded, new_trace_id, utcnow
from libs.common.ids import hash_secret, new_id, new_secret, secret_matches
from libs.common.images import STORED_CONTENT_TYPE, NormalizedImage
from libs.common.logs import trace_id_var
from services.upload.publishing import BusUnavailable, GuardedPublisher
from services.upload.status import StageDocuments

log = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"
PRODUCER = "upload"
CARD_FORMATS = ("og", "square", "story")  # the share service renders these (services.share.layout.FORMATS)
CARD_TEMPLATE_VERSION = "v1"  # services.share.cards.TEMPLATE_VERSION; a unit test keeps the two in step
D = TypeVar("D", bound=BaseModel)


@dataclass(frozen=True)
class UploadChoices:
    """What the owner decided at upload time."""

    rateable: bool = False
    store_photo: bool = True


@dataclass(frozen=True)
class AcceptedPhoto:
    """An upload that is durable and announced: the delete token exists only here, never in storage."""

    photo_id: str
    delete_token: str
    trace_id: str


class PhotoNotFound(Exception):
    """No meta and no tombstone: unknown id."""


class PhotoGone(Exception):
    """The photo was deleted (a tombstone exists)."""


class WrongDeleteToken(Exception):
    """The presented delete token does not match the stored hash (or none was presented)."""


class PhotoNotReady(Exception):
    """Sharing needs a finished result (and a pre-allocated share id): nothing to show on a share page yet."""


class PhotoNotKept(Exception):
    """The owner asked us not to keep the photo, and it has been discarded after scoring."""


@dataclass(frozen=True)
class Visitor:
    """Who uploaded and how they arrived (from the website's cookies); empty for API clients without cookies."""

    visitor_id: str | None = None
    attribution: Attribution = field(default_factory=Attribution)


@dataclass(frozen=True)
class SharedPhoto:
    """The outcome of pressing share: the public share id, whether this call made it public, and card readiness."""

    photo_id: str
    share_id: str
    created: bool
    cards_ready: bool


async def accept_photo(
    image: NormalizedImage,
    choices: UploadChoices,
    *,
    blobs: BlobStore,
    events: GuardedPublisher,
    visitor: Visitor | None = None,
) -> AcceptedPhoto:
    """Store the normalized photo and its meta, then publish photo.uploaded (acks=all).

    The share id is allocated now (kept private in the meta) so the share stage can print the final short URL on the
    cards right after scoring; the share page becomes public only when the owner presses share (share_photo).

    If the broker does not take the event, the blobs just written are removed and BusUnavailable propagates: a photo
    is accepted only when both the bytes and the event are durable, so nothing is ever stored without being processed.
    """
    photo_id, token, trace_id = new_id(), new_secret(), new_trace_id()
    trace_id_var.set(trace_id)
    visitor = visitor or Visitor()
    attribution = await credited_attribution(visitor, blobs=blobs)
    meta = PhotoMeta(
        photo_id=photo_id,
        created_at=utcnow(),
        delete_token_sha256=hash_secret(token),
        visitor_id=visitor.visitor_id,
        share_id=new_id(),
        rate_id=new_id() if choices.rateable else None,
        rateable=choices.rateable,
        store_photo=choices.store_photo,
        width=image.width,
        height=image.height,
    )
    photo_key, meta_key = keys.photo(photo_id), keys.meta(photo_id)
    writes = {photo_key: (image.jpeg, STORED_CONTENT_TYPE), meta_key: (_json(meta), JSON_CONTENT_TYPE)}
    if meta.rate_id:  # raters will see the alias, never the photo id (which opens this result)
        alias = RateAlias(rate_id=meta.rate_id, photo_id=photo_id)
        writes[keys.rate_alias(meta.rate_id)] = (_json(alias), JSON_CONTENT_TYPE)
    try:
        written = await asyncio.gather(  # all finish before any clean-up, so no late write outlives _forget
            *(blobs.put(key, data, content_type) for key, (data, content_type) in writes.items()),
            return_exceptions=True,
        )
        for outcome in written:
            if isinstance(outcome, BaseException):
                raise outcome
        await events.publish(
            PhotoUploaded(
                photo_id=photo_id,
                blob_key=photo_key,
                content_type=STORED_CONTENT_TYPE,
                width=image.width,
                height=image.height,
                size_bytes=len(image.jpeg),
                rateable=choices.rateable,
                store_photo=choices.store_photo,
                visitor_id=visitor.visitor_id,
                attribution=attribution,
                trace_id=trace_id,
                producer=PRODUCER,
            )
        )
    except BaseException:
        await _forget(blobs, list(writes))
        raise
    log.info("photo accepted", extra={"photo_id": photo_id, "bytes": len(image.jpeg), "store": choices.store_photo})
    return AcceptedPhoto(photo_id=photo_id, delete_token=token, trace_id=trace_id)


async def credited_attribution(visitor: Visitor, *, blobs: BlobStore) -> Attribution:
    """The visitor's attribution, less a share of their own photo: owners who open their own share page (or its
    "try it" link) must not count as their own referral, or every sharer who uploads again inflates the K-factor."""
    attribution = visitor.attribution
    if attribution.share_id is None or visitor.visitor_id is None:
        return attribution
    try:
        share = await read_document(blobs, keys.share(attribution.share_id), ShareRecord)
    except ValueError:  # not one of our ids: nothing to compare (the cookie reader already refuses those)
        return attribution
    meta = None if share is None else await read_document(blobs, keys.meta(share.photo_id), PhotoMeta)
    if meta is not None and meta.visitor_id == visitor.visitor_id:
        log.info("own share not credited", extra={"share_id": attribution.share_id})
        return attribution.model_copy(update={"share_id": None})
    return attribution


async def load_stage_documents(photo_id: str, *, blobs: BlobStore) -> StageDocuments:
    """Read the four documents that make up a photo's status, concurrently (one round trip on S3)."""
    tombstoned, meta, faces, result = await asyncio.gather(
        blobs.exists(keys.tombstone(photo_id)),
        _read_doc(blobs, keys.meta(photo_id), PhotoMeta),
        _read_doc(blobs, keys.faces_manifest(photo_id), FacesManifest),
        _read_doc(blobs, keys.result(photo_id), ResultDocument),
    )
    return StageDocuments(tombstoned=tombstoned, meta=meta, faces=faces, result=result)


async def delete_photo(photo_id: str, token: str | None, *, blobs: BlobStore, events: GuardedPublisher) -> None:
    """Delete the photo and everything derived from it, leave a tombstone, publish photo.deleted.

    Order makes a retry after any failure finish the job: derived blobs go first (privacy wins), then the tombstone
    (status answers 410 from here on) and the derived blobs once more (libs/common/deletion.py), then the event, and
    the meta (holding the token hash) goes last, so the owner's token keeps working until everything else is done.
    Raises PhotoGone once the meta is gone (a repeated DELETE), PhotoNotFound for unknown ids, WrongDeleteToken, or
    BusUnavailable (retry: the photo bytes are already gone).
    """
    meta = await _owned_meta(photo_id, token, blobs=blobs)
    trace_id = new_trace_id()
    trace_id_var.set(trace_id)
    await erase_photo(blobs, photo_id, share_id=meta.share_id, rate_id=meta.rate_id, reason="owner")
    await events.publish(PhotoDeleted(photo_id=photo_id, reason="owner", trace_id=trace_id, producer=PRODUCER))
    await blobs.delete(keys.meta(photo_id))
    log.info("photo deleted", extra={"photo_id": photo_id})


async def share_photo(
    photo_id: str,
    token: str | None,
    *,
    channel: str | None,
    visitor_id: str | None,
    blobs: BlobStore,
    events: GuardedPublisher,
) -> SharedPhoto:
    """Make the photo's pre-allocated share page public (write shares/{share_id}.json) and publish photo.shared.

    Idempotent: the record is written once; every call publishes photo.shared, because each press of a share
    channel (X, WhatsApp, copy…) is a share action analytics counts. The record is written before the event, so a
    retry after BusUnavailable finds the page public and only re-publishes. A deletion that finished after the meta
    was read wins: the record is removed again and PhotoGone raised (libs/common/deletion.py's rule for late writers).
    Raises PhotoNotFound, PhotoGone, WrongDeleteToken, PhotoNotReady (no finished result yet) or BusUnavailable.
    """
    meta = await _owned_meta(photo_id, token, blobs=blobs)
    result = await _read_doc(blobs, keys.result(photo_id), ResultDocument)
    if result is None or result.status != "done" or not meta.share_id:
        raise PhotoNotReady(photo_id)
    share_id = meta.share_id
    trace_id = new_trace_id()
    trace_id_var.set(trace_id)
    record_key = keys.share(share_id)
    created = not await blobs.exists(record_key)
    if created:
        record = ShareRecord(share_id=share_id, photo_id=photo_id, created_at=utcnow())
        await blobs.put(record_key, _json(record), JSON_CONTENT_TYPE)
    # a DELETE may have finished since the meta was read: the record written now would outlive it (deletion.py)
    if await undo_if_deleted(blobs, photo_id, single_keys=[record_key]):
        raise PhotoGone(photo_id)
    await events.publish(
        PhotoShared(
            photo_id=photo_id, share_id=share_id, visitor_id=visitor_id, channel=channel,
            trace_id=trace_id, producer=PRODUCER,
        )
    )
    cards_ready = await blobs.exists(keys.card(photo_id, CARD_FORMATS[0], CARD_TEMPLATE_VERSION))
    log.info("photo shared", extra={"photo_id": photo_id, "newly_shared": created, "channel": channel})
    return SharedPhoto(photo_id=photo_id, share_id=share_id, created=created, cards_ready=cards_ready)


async def load_photo_image(photo_id: str, *, blobs: BlobStore) -> Blob:
    """The stored normalized JPEG. When it is absent, say why: deleted (PhotoGone), discarded at the owner's request
    after scoring (PhotoNotKept), or unknown (PhotoNotFound)."""
    try:
        return await blobs.get(keys.photo(photo_id))
    except BlobNotFound:
        pass
    tombstoned, meta = await asyncio.gather(
        blobs.exists(keys.tombstone(photo_id)), _read_doc(blobs, keys.meta(photo_id), PhotoMeta)
    )
    if tombstoned:
        raise PhotoGone(photo_id)
    if meta is not None and not meta.store_photo:
        raise PhotoNotKept(photo_id)
    raise PhotoNotFound(photo_id)


async def _owned_meta(photo_id: str, token: str | None, *, blobs: BlobStore) -> PhotoMeta:
    """The meta, once the token proves ownership (PhotoGone / PhotoNotFound / WrongDeleteToken otherwise)."""
    meta = await _read_doc(blobs, keys.meta(photo_id), PhotoMeta)
    if meta is None:
        if await blobs.exists(keys.tombstone(photo_id)):
            raise PhotoGone(photo_id)
        raise PhotoNotFound(photo_id)
    if not secret_matches(token, meta.delete_token_sha256):
        raise WrongDeleteToken(photo_id)
    return meta


async def _read_doc(blobs: BlobStore, key: str, model: type[D]) -> D | None:
    try:
        blob = await blobs.get(key)
    except BlobNotFound:
        return None
    return model.model_validate_json(blob.data)


async def _forget(blobs: BlobStore, blob_keys: list[str]) -> None:
    """Best-effort removal of blobs of a refused upload; shielded so a cancelled request still cleans up."""
    results = await asyncio.shield(asyncio.gather(*(blobs.delete(k) for k in blob_keys), return_exceptions=True))
    for key, outcome in zip(blob_keys, results, strict=True):
        if isinstance(outcome, BaseException):
            log.error("could not remove blob of a refused upload", extra={"key": key, "error": repr(outcome)})


def _json(doc: BaseModel) -> bytes:
    return doc.model_dump_json().encode()


__all__ = [
    "CARD_FORMATS",
    "CARD_TEMPLATE_VERSION",
    "AcceptedPhoto",
    "BusUnavailable",
    "PhotoGone",
    "PhotoNotFound",
    "PhotoNotKept",
    "PhotoNotReady",
    "SharedPhoto",
    "UploadChoices",
    "Visitor",
    "WrongDeleteToken",
    "accept_photo",
    "delete_photo",
    "load_photo_image",
    "load_stage_documents",
    "share_photo",
]
