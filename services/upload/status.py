"""A photo's status, composed from the documents each stage left in the blob store (ARCHITECTURE.md principle 1).

No stage writes a status field for another: the upload service reads the tombstone, its own meta, the face stage's
manifest and the scoring stage's result, and decides here, in one pure function, what the owner sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from libs.common.documents import FacesManifest, PhotoMeta, ResultDocument

StatusName = Literal["processing", "faces_found", "no_face", "done", "failed", "deleted"]

NOT_FOUND_MESSAGE = "No photo with this id (it may never have existed, or the link is mistyped)."


@dataclass(frozen=True)
class StageDocuments:
    """What the blob store holds for one photo; None where a stage has not written (yet)."""

    tombstoned: bool
    meta: PhotoMeta | None
    faces: FacesManifest | None
    result: ResultDocument | None


@dataclass(frozen=True)
class PhotoStatus:
    """The HTTP answer for GET /api/v1/photos/{id}: a status code and its JSON body."""

    http_status: int
    body: dict[str, Any]


def compose_status(photo_id: str, docs: StageDocuments) -> PhotoStatus:
    """Tombstone beats everything (410); without meta the photo is unknown (404); a result beats the face manifest."""
    if docs.tombstoned:
        return PhotoStatus(410, {"photo_id": photo_id, "status": "deleted"})
    if docs.meta is None:
        return PhotoStatus(404, {"error": {"code": "not_found", "message": NOT_FOUND_MESSAGE}})
    if docs.result is not None:
        return PhotoStatus(200, _from_result(photo_id, docs.result))
    if docs.faces is not None:
        return PhotoStatus(200, _from_faces(photo_id, docs.faces))
    return PhotoStatus(200, {"photo_id": photo_id, "status": "processing"})


def _from_result(photo_id: str, result: ResultDocument) -> dict[str, Any]:
    if result.status == "failed":
        return _failed(photo_id, result.reason, result.code)
    return {
        "photo_id": photo_id,
        "status": "done",
        "faces": result.faces,
        "model_versions": result.model_versions,
        "scored_at": result.scored_at.isoformat() if result.scored_at else None,
    }


def _from_faces(photo_id: str, faces: FacesManifest) -> dict[str, Any]:
    if faces.status == "failed":
        return _failed(photo_id, faces.reason, faces.code)
    if faces.status == "no_face":
        return {"photo_id": photo_id, "status": "no_face"}
    return {"photo_id": photo_id, "status": "faces_found", "face_count": len(faces.faces)}


def _failed(photo_id: str, reason: str | None, code: str | None) -> dict[str, Any]:
    return {
        "photo_id": photo_id,
        "status": "failed",
        "reason": reason or "We could not process this photo.",
        "code": code or "failed",
    }
