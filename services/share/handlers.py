"""The share stage's event handlers: render cards when a photo is scored, drop them when it is deleted.

Plain async code over the BlobStore and EventPublisher ports (no aiohttp, no aiokafka), so unit tests run it with a
LocalBlobStore and a RecordingPublisher.

Idempotent by construction (ARCHITECTURE.md principle 4): a card's key is photo id + format + template version and the
renderer is deterministic, so a redelivered photo.scored overwrites each card with identical bytes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pydantic import AwareDatetime, BaseModel

from libs.common import keys
from libs.common.blobs import BlobNotFound, BlobStore, StorageGiveUp
from libs.common.bus import EventPublisher
from libs.common.deletion import undo_if_deleted
from libs.common.documents import FacesManifest, PhotoMeta, first_stamp, read_document
from libs.common.events import (
    CardRendered,
    Event,
    FaceResult,
    InvalidEvent,
    PhotoDeleted,
    PhotoScored,
    derived_event_id,
)
from libs.common.logs import trace_id_var
from libs.common.observability import ServiceMetrics
from services.share.cards import TEMPLATE_VERSION, card_key
from services.share.featured import choose_featured_face, score_is_valid, share_url
from services.share.layout import CardFormat
from services.share.render import CARD_FORMATS, PNG_CONTENT_TYPE, CardRenderer, ChipUnreadable

log = logging.getLogger(__name__)

SERVICE = "share"
JSON_TYPE = "application/json"
RENDER_STAGE = "share_render"
EAGER_FORMATS: tuple[CardFormat, ...] = ("og",)
"""Rendered when a photo is scored: the Open Graph card that link previews fetch the moment a share is posted. The
square and story cards (downloads for image-first apps, a minority of photos) are rendered on first request and
stored then (``lookup.ShareLookup.card_png``): every scored photo paying for all three cost ~60 ms of CPU per photo
(benchmarks/results/card_render.md), a third of the pipeline's spare CPU at 5 photos/s on 2 cores."""


class CardsStamp(BaseModel):
    """cards/{photo_id}/rendered.json: when card.rendered was first published."""

    rendered_at: AwareDatetime


@dataclass(frozen=True)
class CardSource:
    """Everything a card needs: the featured face, its chip bytes (None when the owner did not keep the photo) and
    the photo's pre-allocated share id."""

    photo_id: str
    share_id: str
    face: FaceResult
    chip_png: bytes | None


@dataclass(frozen=True)
class StoredCards:
    """Cards that are durable in the blob store: their keys, the render time, and the bytes (for on-demand serving)."""

    keys: dict[CardFormat, str]
    elapsed_ms: float
    pngs: dict[CardFormat, bytes]


class ShareHandlers:
    """The share service's handlers, bound to their ports (built once by the app factory)."""

    def __init__(
        self,
        blobs: BlobStore,
        events: EventPublisher,
        renderer: CardRenderer,
        public_base_url: str,
        metrics: ServiceMetrics | None = None,
        storage_give_up: StorageGiveUp | None = None,
    ) -> None:
        self.blobs = blobs
        self.events = events
        self.renderer = renderer
        self.public_base_url = public_base_url
        self.metrics = metrics
        self.storage_give_up = storage_give_up or StorageGiveUp()

    async def handle(self, event: Event) -> None:
        """The consumer's entry point: route by event type (the runner has already validated the event).

        Storage errors are retried by the consumer with backoff; past ``storage_give_up``'s deadline a photo.scored
        is dead-lettered (replayable) instead of blocking its partition. The photo itself stays done: its scores are
        durable, only the cards are missing (the share page falls back to rendering on demand)."""
        if isinstance(event, PhotoScored):
            await self.storage_give_up.run(event.event_id, lambda: self.on_photo_scored(event), _cards_not_stored)
        elif isinstance(event, PhotoDeleted):
            await self.on_photo_deleted(event)

    async def on_photo_scored(self, event: PhotoScored) -> CardRendered | None:
        """Render and store the eager card(s) of the photo's featured face, then publish card.rendered.

        Skipped quietly (None) when nothing can or should be shown: no scored face, or the photo (meta, chip) is
        gone or tombstoned — a deleted photo must not get new derived blobs."""
        trace_id_var.set(event.trace_id)
        source = await self.card_source(event.photo_id, event.faces)
        if source is None:
            return None
        stored = await self.render_and_store(source, EAGER_FORMATS)
        if stored is None:
            return None
        stamp_key = keys.cards_stamp(event.photo_id)  # redelivery: the same time as well as the same id (analytics)
        rendered_at = await first_stamp(self.blobs, stamp_key, CardsStamp, lambda previous: previous.rendered_at)
        await self.blobs.put(stamp_key, CardsStamp(rendered_at=rendered_at).model_dump_json().encode(), JSON_TYPE)
        if await undo_if_deleted(self.blobs, event.photo_id, prefixes=[keys.cards_prefix(event.photo_id)]):
            return None
        rendered = CardRendered(
            event_id=derived_event_id(event, f"card.rendered:{TEMPLATE_VERSION}"),  # redelivery: same id, deduped
            occurred_at=rendered_at,
            photo_id=event.photo_id,
            template_version=TEMPLATE_VERSION,
            card_keys=dict(stored.keys),
            elapsed_ms=stored.elapsed_ms,
            trace_id=event.trace_id,
            producer=SERVICE,
        )
        await self.events.publish(rendered)
        return rendered

    async def on_photo_deleted(self, event: PhotoDeleted) -> int:
        """Delete every card of the photo (idempotent: a second delete finds nothing)."""
        trace_id_var.set(event.trace_id)
        removed = await self.blobs.delete_prefix(keys.cards_prefix(event.photo_id))
        log.info("cards deleted", extra={"photo_id": event.photo_id, "removed": removed})
        return removed

    async def card_source(self, photo_id: str, faces: list[FaceResult]) -> CardSource | None:
        """Gather the featured face, its chip and the share id; None (logged) when there is nothing to render."""
        if not faces:
            log.info("no scored face: no card", extra={"photo_id": photo_id})
            return None
        if await undo_if_deleted(self.blobs, photo_id, prefixes=[keys.cards_prefix(photo_id)]):
            log.info("photo deleted: no card", extra={"photo_id": photo_id})  # (and none left by an earlier try)
            return None
        meta = await read_document(self.blobs, keys.meta(photo_id), PhotoMeta)
        if meta is None:
            log.info("photo meta gone: no card", extra={"photo_id": photo_id})
            return None
        if meta.share_id is None:
            log.warning("photo has no pre-allocated share id: no card", extra={"photo_id": photo_id})
            return None
        manifest = await read_document(self.blobs, keys.faces_manifest(photo_id), FacesManifest)
        face = choose_featured_face(faces, manifest)
        assert face is not None  # faces is non-empty
        if not score_is_valid(face.attractiveness):
            raise InvalidEvent(f"attractiveness {face.attractiveness} is outside the printable range")
        if not meta.store_photo:  # "don't keep my photo": a public card must not keep the face either (the chip
            return CardSource(photo_id, meta.share_id, face, None)  # may still be there: scoring discards it later)
        try:
            chip = await self.blobs.get(keys.chip(photo_id, face.index))
        except BlobNotFound:
            log.info("face chip gone: no card", extra={"photo_id": photo_id, "face_index": face.index})
            return None
        return CardSource(photo_id, meta.share_id, face, chip.data)

    async def render_and_store(
        self, source: CardSource, formats: tuple[CardFormat, ...] = CARD_FORMATS,
    ) -> StoredCards | None:
        """Render ``formats``, store them, and undo that if the photo was deleted meanwhile."""
        url = share_url(self.public_base_url, source.share_id)
        try:
            rendered = await self.renderer.render(source.chip_png, source.face, url, formats)
        except ChipUnreadable as exc:
            raise InvalidEvent(f"photo {source.photo_id}: {exc}") from exc
        if self.metrics is not None:
            self.metrics.stage_seconds.labels(RENDER_STAGE).observe(rendered.elapsed_ms / 1000)
        stored: dict[CardFormat, str] = {}
        for fmt, png in rendered.pngs.items():
            stored[fmt] = card_key(source.photo_id, fmt)
            await self.blobs.put(stored[fmt], png, PNG_CONTENT_TYPE)
        if await self.blobs.exists(keys.tombstone(source.photo_id)):  # deleted while we rendered: leave nothing
            await self.blobs.delete_prefix(keys.cards_prefix(source.photo_id))
            log.info("photo deleted during render: cards removed", extra={"photo_id": source.photo_id})
            return None
        log.info(
            "cards rendered",
            extra={"photo_id": source.photo_id, "face_index": source.face.index, "elapsed_ms": rendered.elapsed_ms},
        )
        return StoredCards(stored, rendered.elapsed_ms, rendered.pngs)


async def _cards_not_stored() -> None:
    raise InvalidEvent("storage_unavailable: the blob store kept failing; cards were not stored")


