"""The read side of sharing: what /s/{share_id} shows and which card bytes /cards/{share_id}/{fmt}.png serves.

A share is public only once the upload service wrote shares/{share_id}.json (the owner pressed share). A card the
consumer has not rendered yet (the owner shared before photo.scored reached us) is rendered here from the stored
result, with the consumer's own code, so it lands under the same key with the same bytes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from libs.common import keys
from libs.common.blobs import BlobNotFound
from libs.common.documents import FacesManifest, PhotoMeta, ResultDocument, ShareRecord, read_document
from libs.common.events import FaceResult, InvalidEvent
from services.share.cards import card_key
from services.share.featured import choose_featured_face, faces_from_result
from services.share.handlers import ShareHandlers, StoredCards
from services.share.layout import CardFormat

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShareView:
    """What the share page shows: the share, whether its photo was deleted, and the featured face if scored."""

    share: ShareRecord
    deleted: bool
    face: FaceResult | None
    owner_visitor: str | None = None  # the visitor id that uploaded the photo (their own views are not referrals)


class ShareLookup:
    """Answers the HTTP routes; renders a missing card once however many requests ask for it at the same time."""

    def __init__(self, handlers: ShareHandlers) -> None:
        self._handlers = handlers
        self._blobs = handlers.blobs
        self._on_demand: dict[tuple[str, CardFormat], asyncio.Future[StoredCards | None]] = {}

    async def load_share(self, share_id: str) -> ShareRecord | None:
        """The public share record, or None when the owner has not shared (so the page must not exist)."""
        try:
            key = keys.share(share_id)
        except ValueError:  # not a valid id: it cannot have been shared
            return None
        return await read_document(self._blobs, key, ShareRecord)

    async def share_deleted(self, share_id: str) -> bool:
        """Whether a share under this id existed and its photo was deleted since (keys.share_tombstone)."""
        try:
            return await self._blobs.exists(keys.share_tombstone(share_id))
        except ValueError:
            return False

    async def share_view(self, share_id: str) -> ShareView | None:
        """What /s/{share_id} shows; None when there is no public share under that id."""
        share = await self.load_share(share_id)
        if share is None:
            return None
        if await self._blobs.exists(keys.tombstone(share.photo_id)):
            return ShareView(share, deleted=True, face=None)
        face, meta = await asyncio.gather(
            self._featured_from_result(share.photo_id), read_document(self._blobs, keys.meta(share.photo_id), PhotoMeta)
        )
        return ShareView(share, deleted=False, face=face, owner_visitor=None if meta is None else meta.visitor_id)

    async def card_png(self, share: ShareRecord, fmt: CardFormat) -> bytes | None:
        """The stored card, or one rendered now; None when the photo is not scored yet or is gone (the route
        answers 404 with Retry-After)."""
        photo_id = share.photo_id
        if await self._blobs.exists(keys.tombstone(photo_id)):
            return None
        try:
            return (await self._blobs.get(card_key(photo_id, fmt))).data
        except BlobNotFound:
            pass
        flight = (photo_id, fmt)
        task = self._on_demand.get(flight)
        if task is None:  # single flight: a crawler burst on a fresh share renders the card once, not N times
            task = asyncio.ensure_future(self._render_from_result(photo_id, fmt))
            self._on_demand[flight] = task
            task.add_done_callback(lambda _: self._on_demand.pop(flight, None))
        stored = await asyncio.shield(task)  # one client hanging up must not cancel the others' render
        return None if stored is None else stored.pngs[fmt]

    async def _render_from_result(self, photo_id: str, fmt: CardFormat) -> StoredCards | None:
        result = await read_document(self._blobs, keys.result(photo_id), ResultDocument)
        if result is None:
            return None
        try:
            source = await self._handlers.card_source(photo_id, faces_from_result(result))
        except InvalidEvent:
            return None
        if source is None:
            return None
        log.info("rendering a card on demand", extra={"photo_id": photo_id, "format": fmt})
        return await self._handlers.render_and_store(source, (fmt,))

    async def _featured_from_result(self, photo_id: str) -> FaceResult | None:
        result = await read_document(self._blobs, keys.result(photo_id), ResultDocument)
        if result is None:
            return None
        manifest = await read_document(self._blobs, keys.faces_manifest(photo_id), FacesManifest)
        return choose_featured_face(faces_from_result(result), manifest)
