"""The retention job purges old photos exactly like an owner's delete (derived blobs, share record, tombstone,
photo.deleted with reason "retention", meta last), leaves recent photos alone, and is safe to re-run after a failure.

The tests are synchronous because run_retention is the CLI entry point and owns its event loop."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

from libs.cli.retention import run_retention
from libs.common import keys
from libs.common.blobs import LocalBlobStore
from libs.common.bus import RecordingPublisher
from libs.common.documents import PhotoMeta
from libs.common.events import Event, PhotoDeleted, utcnow
from libs.common.ids import new_id
from libs.common.settings import Settings

RETENTION_DAYS = 30


class DownPublisher(RecordingPublisher):
    async def publish(self, event: Event) -> None:
        raise ConnectionError("broker down")


async def seed(store: LocalBlobStore, age: timedelta) -> PhotoMeta:
    """A photo with every derived blob each stage would have written, and a public share record."""
    photo_id = new_id()
    meta = PhotoMeta(photo_id=photo_id, created_at=utcnow() - age, delete_token_sha256="0" * 64, width=10, height=10,
                     share_id=new_id())
    await store.put(keys.meta(photo_id), meta.model_dump_json().encode())
    for key in (keys.photo(photo_id), keys.faces_manifest(photo_id), keys.chip(photo_id, 0), keys.result(photo_id),
                keys.card(photo_id, "og", "v1"), keys.share(meta.share_id or "")):
        await store.put(key, b"x")
    return meta


def every_key(store: LocalBlobStore) -> set[str]:
    return {p.relative_to(store.root).as_posix() for p in store.root.rglob("*") if p.is_file()}


def test_old_photos_are_purged_and_recent_ones_kept(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    old = asyncio.run(seed(store, timedelta(days=RETENTION_DAYS + 1)))
    recent = asyncio.run(seed(store, timedelta(days=RETENTION_DAYS - 1)))
    recent_keys = {k for k in every_key(store) if recent.photo_id in k or (recent.share_id or "?") in k}
    publisher = RecordingPublisher()

    assert run_retention(Settings(), RETENTION_DAYS, blob_store=store, publisher=publisher) == 1

    left = every_key(store)
    # what stays: the tombstones, the photo's and its public share's (no photo id in it: the page answers 410)
    assert left == recent_keys | {keys.tombstone(old.photo_id), keys.share_tombstone(old.share_id or "")}
    tombstone = json.loads(asyncio.run(store.get(keys.tombstone(old.photo_id))).data)
    assert tombstone["reason"] == "retention"
    (event,) = publisher.events
    assert isinstance(event, PhotoDeleted) and event.photo_id == old.photo_id and event.reason == "retention"

    assert run_retention(Settings(), RETENTION_DAYS, blob_store=store, publisher=publisher) == 0  # nothing left


def test_a_failed_run_is_finished_by_the_next(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    old = asyncio.run(seed(store, timedelta(days=RETENTION_DAYS * 2)))
    assert run_retention(Settings(), RETENTION_DAYS, blob_store=store, publisher=DownPublisher()) == 0
    assert not asyncio.run(store.exists(keys.photo(old.photo_id)))  # privacy first: the bytes went before the event
    assert asyncio.run(store.exists(keys.meta(old.photo_id)))  # still listed, so the next run retries

    publisher = RecordingPublisher()
    assert run_retention(Settings(), RETENTION_DAYS, blob_store=store, publisher=publisher) == 1
    assert [e.reason for e in publisher.events] == ["retention"]  # type: ignore[attr-defined]
    assert every_key(store) == {keys.tombstone(old.photo_id), keys.share_tombstone(old.share_id or "")}
