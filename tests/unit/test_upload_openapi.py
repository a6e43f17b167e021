"""The hand-written OpenAPI document: served, structurally sound, and covering every /api/v1 route the app serves."""

from __future__ import annotations

from pathlib import Path

import pytest

from libs.common.blobs import LocalBlobStore
from libs.common.bus import RecordingPublisher
from libs.common.settings import Settings
from services.upload.app import create_app
from services.upload.openapi import OPENAPI

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


def api_routes(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_app(Settings(), blob_store=LocalBlobStore(tmp_path), publisher=RecordingPublisher())
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api/") and route.method != "HEAD"
    }


def refs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def test_structure() -> None:
    assert OPENAPI["openapi"].startswith("3.1")
    assert OPENAPI["info"]["title"] and OPENAPI["info"]["version"]
    assert "Error" in OPENAPI["components"]["schemas"]
    for path, item in OPENAPI["paths"].items():
        assert path.startswith("/api/v1/")
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            assert operation["operationId"] and operation["responses"], (method, path)
            for status, response in operation["responses"].items():
                assert status.isdigit() and response["description"], (method, path, status)
                if int(status) >= 400:
                    schema = next(iter(response["content"].values()))["schema"]
                    assert schema.get("$ref") in ("#/components/schemas/Error", "#/components/schemas/PhotoStatus")


def test_every_ref_resolves() -> None:
    for ref in refs(OPENAPI):
        node: object = OPENAPI
        for segment in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict) and segment in node, ref
            node = node[segment]


def test_every_route_is_documented_and_nothing_else(tmp_path: Path) -> None:
    documented = {
        (method, path) for path, item in OPENAPI["paths"].items() for method in item if method in HTTP_METHODS
    }
    assert documented == api_routes(tmp_path)


@pytest.mark.parametrize("op", [("post", "/api/v1/photos"), ("get", "/api/v1/photos/{photo_id}")])
def test_error_statuses_are_described(op: tuple[str, str]) -> None:
    responses = OPENAPI["paths"][op[1]][op[0]]["responses"]
    assert {"404", "500", "503"} & set(responses)


async def test_served_as_json(aiohttp_client, tmp_path: Path) -> None:
    app = create_app(Settings(), blob_store=LocalBlobStore(tmp_path), publisher=RecordingPublisher())
    client = await aiohttp_client(app)
    response = await client.get("/api/v1/openapi.json")
    assert response.status == 200
    assert await response.json() == OPENAPI


def test_every_error_code_the_service_raises_is_documented() -> None:
    """Codes are the clients' contract: any code in the source (ApiError, _bad, unavailable, image rejections) must
    appear in the document."""
    import json
    import re
    import typing

    from libs.common.images import RejectionCode

    package = Path(__file__).resolve().parents[2] / "services" / "upload"
    source = "\n".join(p.read_text() for p in package.glob("*.py") if p.name != "openapi.py")
    raised = set(re.findall(r'(?:ApiError\(\d{3}, |_bad\(|unavailable\()\s*"([a-z_]+)"', source))
    raised |= set(typing.get_args(RejectionCode))
    assert {"not_multipart", "missing_photo", "broker_unavailable", "invalid_delete_token"} <= raised
    document = json.dumps(OPENAPI)
    assert not {code for code in raised if code not in document}
