"""Forgetting deleted photos: analytics drops a deleted photo's per-photo detail and keeps the anonymous aggregates.

What goes, per photo: its raw events except the photo.deleted row itself (uploads with the uploader's visitor id,
referrer and utm; detections; per-face scores; cards; shares and share views; ratings of its faces; result page views,
see ``ingest.photo_id_of``), and its rows in every per-photo table the views of 002-004 fill (``PER_PHOTO_TABLES``).
What stays: the per-minute and per-hour rollups (counts, uniq states of hashed ids, upload sources by referrer
domain): figures about many photos that name none, so every figure read from them stays put when someone deletes a
photo (figures read from per-photo tables, such as photo_stages, lose the photo). The photo.deleted row stays too: it
holds the photo id, the reason and the time, no visitor id, and it proves that the deletion arrived. A share id that
brought other visitors stays on their events as an opaque id: with photo.shared and ``shares`` gone, nothing links it
to the photo any more.

Which deletions forget: reasons ``owner`` and ``retention`` (and any future reason). ``ephemeral`` does not: it is
"don't store my photo", where the image is discarded after scoring but the owner still sees their scores; they asked
us not to keep the picture, not to forget that it was scored, so its analytics stay like any other photo's. The rule
lives in the view that fills ``deleted_photos`` (005_deleted_photos.sql).

How, per ingest batch, after its insert succeeded and before the offsets are committed: look up the batch's photo
ids in ``deleted_photos`` (one primary-key lookup; the view marked this batch's own deletions during the insert), ask
which per-photo tables still hold rows of the ids found (one query), and register one lightweight
``DELETE ... WHERE key IN (...)`` per such table. That one rule covers the deletion itself, its redelivery (once the
first deletes are applied nothing is left, so no statement at all; before that, a second registration is harmless)
and late events of a deleted photo (a card rendered or a rating submitted after the deletion: inserted, found deleted,
deleted again in the same flush; the rollups count them, as they do every event that happened). Two analytics
consumers racing on one photo cannot leave detail behind: whichever of the two inserts lands second, its own lookup
runs after both inserts.

The DELETEs are registered, not awaited (``lightweight_deletes_sync = 0``): ClickHouse writes the mutation to disk
before the statement returns, so committing the offsets after it keeps at-least-once (a crash cannot lose a
registered delete, and a crash before it redelivers the batch), and it applies the mutation in the background within
seconds. Waiting costs ~0.3-0.7 s per table whatever the number of photos (chDB, measured), which would stall ingestion
at every flush that carries a deletion; registering costs ~15 ms per table.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from libs.common.bus import Delivery
from services.analytics.ingest import EVENTS_TABLE, photo_id_of
from services.analytics.store import EventStore

log = logging.getLogger(__name__)

DELETED_PHOTOS_TABLE = "deleted_photos"
LOOKUP_CHUNK = 5_000  # photo ids per bound array: ~130 KB of parameter, well under ClickHouse's 1 MiB URI limit
PHOTO_IDS_PARAM = "photo_ids"
_BOUND_PHOTO_IDS = f"(SELECT arrayJoin({{{PHOTO_IDS_PARAM}:Array(String)}}) AS photo_id)"
REGISTER_ONLY = " SETTINGS lightweight_deletes_sync = 0"  # durable once registered; applied in the background


@dataclass(frozen=True)
class PerPhotoTable:
    """A table holding rows about single photos: ``key_column`` equals ``key_of_photo_id`` applied to the photo id.

    ``keep`` names the rows of a forgotten photo that stay (SQL condition), empty when none do.
    """

    name: str
    key_column: str = "photo_id"
    key_of_photo_id: str = "photo_id"
    keep: str = ""


PER_PHOTO_TABLES: tuple[PerPhotoTable, ...] = (
    PerPhotoTable(EVENTS_TABLE, keep="type = 'photo.deleted'"),
    PerPhotoTable("photo_timeline"),  # 002: stage times, uploader, referrer, utm of each photo
    PerPhotoTable("scored_faces"),  # 002: age, gender, attractiveness per face
    PerPhotoTable("shares"),  # 003: share id → photo and sharer
    PerPhotoTable("photo_stages", "photo_key", "cityHash64(photo_id)"),  # 004: stage times, faces, share
)
"""Every table the forgetting clears; a test fails when a migration adds a photo-keyed table that is not here."""


def rows_condition(table: PerPhotoTable) -> str:
    """WHERE condition of ``table``'s rows about the photos bound as ``photo_ids`` (Array(String)) that must go.

    The photo ids go through a subquery so that derived keys (``cityHash64``) are computed by ClickHouse, never in
    Python, and the key's primary or skip index prunes the parts to read or rewrite.
    """
    condition = f"{table.key_column} IN (SELECT {table.key_of_photo_id} FROM {_BOUND_PHOTO_IDS})"  # noqa: S608
    return f"{condition} AND NOT ({table.keep})" if table.keep else condition


def delete_statement(table: PerPhotoTable, database: str) -> str:
    """The lightweight DELETE of ``table``'s rows about the bound photos, registered without waiting for it."""
    return f"DELETE FROM {database}.{table.name} WHERE {rows_condition(table)}{REGISTER_ONLY}"  # noqa: S608


def holders_query(tables: Sequence[PerPhotoTable], database: str) -> str:
    """One query naming the tables that still hold rows about the bound photos (a redelivery finds none)."""
    return " UNION ALL ".join(
        f"SELECT '{t.name}' FROM {database}.{t.name} WHERE {rows_condition(t)} LIMIT 1"  # noqa: S608 - constants
        for t in tables
    )


def photo_ids_of(deliveries: Iterable[Delivery]) -> list[str]:
    """The distinct photo ids a batch's rows carry (what ``events.photo_id`` got), sorted."""
    return sorted({photo for d in deliveries if (photo := photo_id_of(d.event.__dict__))})


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    return (items[i : i + size] for i in range(0, len(items), size))


class PhotoForgetter:
    """Clears the per-photo detail of deleted photos from a store; every step is idempotent."""

    def __init__(self, store: EventStore, tables: Sequence[PerPhotoTable] = PER_PHOTO_TABLES) -> None:
        self.store = store
        self.tables = tuple(tables)
        self._lookup_sql = (
            f"SELECT DISTINCT photo_id FROM {store.database}.{DELETED_PHOTOS_TABLE} "  # noqa: S608 - constant names
            f"WHERE photo_id IN {{{PHOTO_IDS_PARAM}:Array(String)}}"
        )
        self._holders_sql = holders_query(self.tables, store.database)
        self._deletes = {t.name: delete_statement(t, store.database) for t in self.tables}

    async def deleted_among(self, photo_ids: Sequence[str]) -> list[str]:
        """The ids among ``photo_ids`` whose photo was deleted (and is to be forgotten), sorted."""
        found: set[str] = set()
        for chunk in _chunks(photo_ids, LOOKUP_CHUNK):
            result = await self.store.query(self._lookup_sql, {PHOTO_IDS_PARAM: list(chunk)})
            found.update(str(row[0]) for row in result.rows)
        return sorted(found)

    async def forget(self, photo_ids: Sequence[str]) -> list[str]:
        """Register the deletion of the photos' rows in every table that holds some: one statement per table and chunk
        of ids. Returns the tables deleted from."""
        touched: list[str] = []
        for chunk in _chunks(photo_ids, LOOKUP_CHUNK):
            bound = {PHOTO_IDS_PARAM: list(chunk)}
            holders = [str(row[0]) for row in (await self.store.query(self._holders_sql, bound)).rows]
            for table in holders:
                await self.store.command(self._deletes[table], bound)
            touched += holders
        return touched

    async def after_insert(self, deliveries: Sequence[Delivery]) -> list[str]:
        """The batch step: forget every deleted photo the (already inserted) batch mentions; returns their ids."""
        return await self.forget_mentioned(photo_ids_of(deliveries))

    async def forget_mentioned(self, photo_ids: Sequence[str]) -> list[str]:
        """``after_insert`` for a batch encoded elsewhere (services/analytics/offload.py): its rows' photo ids."""
        if not photo_ids:
            return []
        started = time.perf_counter()
        deleted = await self.deleted_among(photo_ids)
        if deleted:
            tables = await self.forget(deleted)
            log.info(
                "deleted photos forgotten",
                extra={
                    "photos": len(deleted),
                    "tables": sorted(set(tables)),
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
        return deleted
