"""The rows side of forgetting deleted photos: a result page view carries its photo id in both encodings, and a batch's
photo ids are what the forget step looks up (no store needed)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from libs.common.bus import Delivery
from libs.common.events import Event, PageViewed, PhotoDeleted
from libs.common.events.examples import PHOTO, VISITOR, examples
from services.analytics.forget import PER_PHOTO_TABLES, delete_statement, photo_ids_of
from services.analytics.ingest import EVENT_COLUMNS, build_blocks, photo_id_of
from services.analytics.ingest_rowbinary import build_rowbinary_blocks

OTHER_PHOTO = "resultPage0000000001"
INGESTED_AT = datetime(2026, 1, 1, tzinfo=UTC)


def view(path: str) -> PageViewed:
    return PageViewed(visitor_id=VISITOR, path=path)


@pytest.mark.parametrize(
    ("event", "photo_id"),
    [
        (view(f"/p/{OTHER_PHOTO}"), OTHER_PHOTO),  # the owner's result page: links the visitor to the photo
        (view("/p/short"), ""),  # not a photo id: the site answers 404 and no such view is recorded anyway
        (view(f"/p/{OTHER_PHOTO}/x"), ""),
        (view("/rate"), ""),
        (PhotoDeleted(photo_id=PHOTO), PHOTO),
    ],
)
def test_the_photo_an_event_is_about(event: Event, photo_id: str) -> None:
    assert photo_id_of(event.__dict__) == photo_id


def test_both_encodings_store_a_result_page_views_photo_id() -> None:
    deliveries = [Delivery(e, e.TOPIC, 0, i, e.to_bytes()) for i, e in enumerate([view(f"/p/{OTHER_PHOTO}")])]
    (block,) = build_blocks(deliveries, INGESTED_AT)
    assert block.rows[0][EVENT_COLUMNS.index("photo_id")] == OTHER_PHOTO
    (encoded,) = build_rowbinary_blocks(deliveries, INGESTED_AT)
    assert bytes([len(OTHER_PHOTO)]) + OTHER_PHOTO.encode() in encoded.rows[0]


def test_a_batch_looks_up_each_photo_once() -> None:
    events = [*examples(), *examples(), view(f"/p/{OTHER_PHOTO}"), view("/")]
    deliveries = [Delivery(e, e.TOPIC, 0, i, e.to_bytes()) for i, e in enumerate(events)]
    assert photo_ids_of(deliveries) == sorted({PHOTO, OTHER_PHOTO})


def test_only_the_events_table_keeps_rows_of_a_forgotten_photo() -> None:
    statements = {t.name: delete_statement(t, "howhot") for t in PER_PHOTO_TABLES}
    assert all(sql.startswith(f"DELETE FROM howhot.{name} WHERE ") for name, sql in statements.items())
    assert [name for name, sql in statements.items() if "AND NOT" in sql] == ["events"]
