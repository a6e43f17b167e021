"""Shapes of the JSON documents stages leave in the blob store; the upload service composes a photo's status from
them (no stage read-modify-writes another's document)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from libs.common.events import FaceBox


class _Doc(BaseModel):
    model_config = ConfigDict(extra="ignore")  # readers tolerate fields added by newer writers


class PhotoMeta(_Doc):
    """Owner data written by the upload service at upload time (and updated only by it)."""

    photo_id: str
    created_at: AwareDatetime
    delete_token_sha256: str
    visitor_id: str | None = None
    rateable: bool = False
    store_photo: bool = True
    width: int
    height: int
    share_id: str | None = None


class FacesManifest(_Doc):
    """The face stage's outcome for one photo."""

    photo_id: str
    status: Literal["faces_found", "no_face", "failed"]
    faces: list[FaceBox] = Field(default_factory=list)
    detector: str | None = None
    reason: str | None = None  # for failed: plain words for the user
    code: str | None = None


class ResultDocument(_Doc):
    """The scoring stage's result document results/{photo_id}.json, served by GET /api/v1/photos/{id}."""

    photo_id: str
    status: Literal["done", "failed"]
    faces: list[dict[str, Any]] = Field(default_factory=list)
    model_versions: dict[str, str] = Field(default_factory=dict)
    reason: str | None = None
    code: str | None = None
    scored_at: AwareDatetime | None = None


class ShareRecord(_Doc):
    """A public share: exists only once the owner pressed share."""

    share_id: str
    photo_id: str
    created_at: AwareDatetime
