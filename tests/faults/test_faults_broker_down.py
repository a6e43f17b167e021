"""The broker goes away under a running upload service: uploads are refused with 503 + Retry-After (never 500), and
nothing is left stored for a photo that was never announced."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from libs.cli.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ATTEMPTS = 3  # the first may still find a connected producer; each must be a clean refusal


def test_broker_down_means_503_not_500(
    stack_factory: Callable[..., LocalStack], tmp_path: Path, astronaut_jpeg: bytes
) -> None:
    stack = stack_factory(tmp_path / "data")
    stack.start(only=["upload"])
    try:
        base = stack.urls()["upload"]
        ok = requests.post(f"{base}/api/v1/photos", files={"photo": ("a.jpg", astronaut_jpeg, "image/jpeg")},
                           timeout=30)
        assert ok.status_code == 202, ok.text
        assert stack.broker is not None
        stack.broker.stop()
        stack.broker = None
        for _ in range(ATTEMPTS):
            response = requests.post(f"{base}/api/v1/photos",
                                     files={"photo": ("a.jpg", astronaut_jpeg, "image/jpeg")}, timeout=60)
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] in {"broker_unavailable", "busy", "overloaded"}
            assert int(response.headers["Retry-After"]) > 0
        photos = list((tmp_path / "data" / "blobs" / "photos").rglob("*"))
        assert len([p for p in photos if p.is_file()]) == 1, photos  # only the photo accepted before the outage
    finally:
        stack.stop()
