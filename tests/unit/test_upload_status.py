"""A photo's status: the pure composition over stage documents, and GET /api/v1/photos/{id} through the real app."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from libs.common import keys
from libs.common.blobs import LocalBlobStore
from libs.common.bus import RecordingPublisher
from libs.common.documents import FacesManifest, PhotoMeta, ResultDocument
from libs.common.events import FaceBox
from libs.common.ids import hash_secret, new_id
from libs.common.settings import Settings
from services.upload.app import create_app
from services.upload.status import StageDocuments, compose_status

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
LANDMARKS = [(100.0, 120.0), (150.0, 120.0), (125.0, 150.0), (105.0, 175.0), (145.0, 175.0)]
PHOTO_ID = "ph0t0ExampleId_abcdef"


def meta(photo_id: str = PHOTO_ID) -> PhotoMeta:
    return PhotoMeta(photo_id=photo_id, created_at=NOW, delete_token_sha256=hash_secret("t"), width=512, height=512)


def face(photo_id: str = PHOTO_ID) -> FaceBox:
    return FaceBox(index=0, box=(80, 90, 170, 200), score=0.99, landmarks=LANDMARKS, chip_key=keys.chip(photo_id, 0),
                   chip_landmarks=LANDMARKS, size=110.0)


def manifest(status: str, photo_id: str = PHOTO_ID, **extra: object) -> FacesManifest:
    return FacesManifest(photo_id=photo_id, status=status, **extra)


RESULT_FACE = {"index": 0, "age": 31.2, "gender": "female", "attractiveness": 7.1}


def result(status: str, photo_id: str = PHOTO_ID, **extra: object) -> ResultDocument:
    return ResultDocument(photo_id=photo_id, status=status, scored_at=NOW, **extra)


def docs(**kw: object) -> StageDocuments:
    base: dict[str, object] = {"tombstoned": False, "meta": meta(), "faces": None, "result": None}
    base.update(kw)
    return StageDocuments(**base)  # type: ignore[arg-type]


# -- the pure function --------------------------------------------------------------------------------------------


def test_tombstone_wins_over_everything() -> None:
    status = compose_status(PHOTO_ID, docs(tombstoned=True, result=result("done")))
    assert (status.http_status, status.body) == (410, {"photo_id": PHOTO_ID, "status": "deleted"})


def test_no_meta_is_not_found() -> None:
    status = compose_status(PHOTO_ID, docs(meta=None, faces=manifest("no_face")))
    assert status.http_status == 404
    assert status.body["error"]["code"] == "not_found"


def test_meta_only_is_processing() -> None:
    assert compose_status(PHOTO_ID, docs()).body == {"photo_id": PHOTO_ID, "status": "processing"}


def test_faces_found_waits_for_scoring() -> None:
    status = compose_status(PHOTO_ID, docs(faces=manifest("faces_found", faces=[face()])))
    assert status.http_status == 200
    assert status.body == {"photo_id": PHOTO_ID, "status": "faces_found", "face_count": 1}


def test_no_face() -> None:
    assert compose_status(PHOTO_ID, docs(faces=manifest("no_face"))).body["status"] == "no_face"


def test_face_stage_failure_carries_its_reason() -> None:
    status = compose_status(PHOTO_ID, docs(faces=manifest("failed", reason="The photo could not be read.", code="x")))
    assert status.body == {"photo_id": PHOTO_ID, "status": "failed", "reason": "The photo could not be read.",
                           "code": "x"}


def test_failure_without_reason_still_explains() -> None:
    body = compose_status(PHOTO_ID, docs(faces=manifest("failed"))).body
    assert body["status"] == "failed"
    assert body["reason"]


def test_done_serves_the_result_faces() -> None:
    doc = result("done", faces=[RESULT_FACE], model_versions={"ensemble": "1"})
    status = compose_status(PHOTO_ID, docs(faces=manifest("faces_found", faces=[face()]), result=doc))
    assert status.http_status == 200
    assert status.body["status"] == "done"
    assert status.body["faces"] == [RESULT_FACE]
    assert status.body["model_versions"] == {"ensemble": "1"}


def test_scoring_failure_beats_faces_found() -> None:
    doc = result("failed", reason="Scoring is down.", code="model_error")
    body = compose_status(PHOTO_ID, docs(faces=manifest("faces_found", faces=[face()]), result=doc)).body
    assert (body["status"], body["reason"], body["code"]) == ("failed", "Scoring is down.", "model_error")


# -- through HTTP -------------------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
async def client(aiohttp_client, store: LocalBlobStore):
    return await aiohttp_client(create_app(Settings(), blob_store=store, publisher=RecordingPublisher()))


async def put(store: LocalBlobStore, key: str, doc: object) -> None:
    await store.put(key, doc.model_dump_json().encode(), "application/json")  # type: ignore[attr-defined]


async def test_get_walks_through_every_state(client, store) -> None:
    photo_id = new_id()
    url = f"/api/v1/photos/{photo_id}"
    assert (await client.get(url)).status == 404

    await put(store, keys.meta(photo_id), meta(photo_id))
    response = await client.get(url, params={"viewer": new_id()})  # viewer is accepted and ignored
    assert response.status == 200
    assert (await response.json())["status"] == "processing"
    assert response.headers["Cache-Control"] == "no-store"

    await put(store, keys.faces_manifest(photo_id), manifest("faces_found", photo_id, faces=[face(photo_id)]))
    assert (await (await client.get(url)).json())["status"] == "faces_found"

    await put(store, keys.result(photo_id), result("done", photo_id, faces=[RESULT_FACE]))
    body = await (await client.get(url)).json()
    assert (body["status"], body["faces"]) == ("done", [RESULT_FACE])

    await store.put(keys.tombstone(photo_id), b"{}", "application/json")
    response = await client.get(url)
    assert response.status == 410
    assert await response.json() == {"photo_id": photo_id, "status": "deleted"}


@pytest.mark.parametrize(
    ("doc_status", "expected"), [("no_face", "no_face"), ("failed", "failed")]
)
async def test_get_face_stage_outcomes(client, store, doc_status: str, expected: str) -> None:
    photo_id = new_id()
    await put(store, keys.meta(photo_id), meta(photo_id))
    await put(store, keys.faces_manifest(photo_id), manifest(doc_status, photo_id, reason="Too blurry."))
    body = await (await client.get(f"/api/v1/photos/{photo_id}")).json()
    assert body["status"] == expected


async def test_get_scoring_failure(client, store) -> None:
    photo_id = new_id()
    await put(store, keys.meta(photo_id), meta(photo_id))
    await put(store, keys.result(photo_id), result("failed", photo_id, reason="Scoring failed.", code="model_error"))
    body = await (await client.get(f"/api/v1/photos/{photo_id}")).json()
    assert (body["status"], body["reason"]) == ("failed", "Scoring failed.")


@pytest.mark.parametrize(
    "bad_id",
    ["short", "a" * 65, "has.dot.in.it.abcdefgh", "..%2F..%2Fetc%2Fpasswd", "%00aaaaaaaaaaaaaaaaaa",
     "aaaaaaaaaaaaaaaaaaaa%0A", "%C3%A9aaaaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaaaaaa%20"],
)
async def test_malformed_ids_are_404(client, bad_id: str) -> None:
    for method in ("GET", "DELETE"):
        response = await client.request(method, f"/api/v1/photos/{bad_id}", headers={"X-Delete-Token": "x"})
        assert response.status == 404, (method, bad_id, await response.text())
        assert (await response.json())["error"]["code"] == "not_found"
