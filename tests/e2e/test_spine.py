"""End to end through the public API: a photo POSTed to the upload service lands as a row in ClickHouse
(through the real Tansu broker, the real blob store and chDB), read back through the analytics query API."""

from __future__ import annotations

import pytest
import requests

from libs.cli.stack import LocalStack
from libs.common.polling import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.integration]




def test_uploaded_photo_lands_in_clickhouse(stack: LocalStack, astronaut_jpeg: bytes) -> None:
    urls = stack.urls()
    response = requests.post(
        f"{urls['upload']}/api/v1/photos", files={"photo": ("astronaut.jpg", astronaut_jpeg, "image/jpeg")}, timeout=30
    )
    assert response.status_code == 202, response.text
    body = response.json()
    photo_id = body["photo_id"]
    assert body["delete_token"] and body["status_url"].endswith(photo_id)

    def uploaded_rows():
        r = requests.get(f"{urls['analytics']}/api/v1/query/photo_events", params={"photo_id": photo_id}, timeout=10)
        assert r.status_code == 200, r.text
        doc = r.json()
        types = [dict(zip(doc["columns"], row, strict=True))["type"] for row in doc["rows"]]
        return types if "photo.uploaded" in types else None

    types = wait_for(uploaded_rows)
    assert types.count("photo.uploaded") == 1

    status = requests.get(body["status_url"], timeout=10)
    assert status.status_code == 200 and status.json()["photo_id"] == photo_id


def test_a_face_photo_is_detected_scored_and_recorded(stack: LocalStack, astronaut_jpeg: bytes) -> None:
    urls = stack.urls()
    if "face" not in urls or "scoring" not in urls:
        pytest.fail("the face and scoring services must be part of the local stack")
    posted = requests.post(f"{urls['upload']}/api/v1/photos",
                           files={"photo": ("a.jpg", astronaut_jpeg, "image/jpeg")}, timeout=30).json()

    def done():
        doc = requests.get(posted["status_url"], timeout=10).json()
        assert doc["status"] not in ("failed", "no_face"), doc
        return doc if doc["status"] == "done" else None

    doc = wait_for(done, timeout_s=120)
    (face,) = doc["faces"]
    assert 25 <= face["age"] <= 55 and face["gender"] == "female" and len(face["box"]) == 4

    def stages():
        r = requests.get(f"{urls['analytics']}/api/v1/query/photo_events",
                         params={"photo_id": posted["photo_id"]}, timeout=10).json()
        types = {dict(zip(r["columns"], row, strict=True))["type"] for row in r["rows"]}
        return types if {"photo.uploaded", "faces.detected", "photo.scored"} <= types else None

    wait_for(stages)


def test_the_dashboard_is_served_by_the_stack(stack: LocalStack) -> None:
    page = requests.get(stack.urls()["dashboard"] + "/", timeout=10)
    assert page.status_code == 200 and "streamlit" in page.text.lower()
