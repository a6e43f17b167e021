"""End to end through the public API: a photo POSTed to the upload service lands as a row in ClickHouse
(through the real Tansu broker, the real blob store and chDB), read back through the analytics query API."""

from __future__ import annotations

import time

import pytest
import requests

from libs.cli.stack import LocalStack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def wait_for(fetch, timeout_s: float = 60.0, interval_s: float = 0.3):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = fetch()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"condition not met in {timeout_s} s; last value: {last!r}")


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
