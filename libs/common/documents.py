"""Shapes of the JSON documents stages leave in the blob store; the upload service composes a photo's status from
them (no stage read-modify-writes another's document)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from libs.common.blobs import BlobNotFound, BlobStore
from libs.common.events import FaceBox, utcnow

log = logging.getLogger(__name__)


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
    rate_id: str | None = None  # rateable photos: the alias raters see (keys.rate_alias), never the photo id


class FacesManifest(_Doc):
    """The face stage's outcome for one photo."""

    photo_id: str
    status: Literal["faces_found", "no_face", "failed"]
    faces: list[FaceBox] = Field(default_factory=list)
    detector: str | None = None
    reason: str | None = None  # for failed: plain words for the user
    code: str | None = None
    emitted_at: AwareDatetime | None = None  # when this outcome's event was first published (first_stamp)


class ResultDocument(_Doc):
    """The scoring stage's result document results/{photo_id}.json, served by GET /api/v1/photos/{id}."""

    photo_id: str
    status: Literal["done", "failed"]
    faces: list[dict[str, Any]] = Field(default_factory=list)
    model_versions: dict[str, str] = Field(default_factory=dict)
    reason: str | None = None
    code: str | None = None
    scored_at: AwareDatetime | None = None


class RateAlias(_Doc):
    """rate-ids/{rate_id}.json: which photo a rater's rate id stands for (read by the upload service only)."""

    rate_id: str
    photo_id: str


class ShareRecord(_Doc):
    """A public share: exists only once the owner pressed share."""

    share_id: str
    photo_id: str
    created_at: AwareDatetime


D = TypeVar("D", bound=BaseModel)


async def read_document(blobs: BlobStore, key: str, model: type[D]) -> D | None:
    """A JSON document from the blob store; None when it is missing or unreadable (logged: a writer's bug)."""
    try:
        blob = await blobs.get(key)
    except BlobNotFound:
        return None
    try:
        return model.model_validate_json(blob.data)
    except ValidationError as exc:
        log.error("unreadable document", extra={"key": key, "error": str(exc)[:500]})
        return None


async def first_stamp(blobs: BlobStore, key: str, model: type[D], stamp: Callable[[D], datetime | None]) -> datetime:
    """The time a stage first emitted its output, as its document kept it, else now.

    A redelivered input re-runs the stage; its output event keeps its id (derived_event_id) and, through this, its
    occurred_at too. Analytics' per-minute counts and ClickHouse's sorting key (which holds the date) then see one
    event, where a fresh timestamp would put the copy in another minute, or another day.
    """
    previous = await read_document(blobs, key, model)
    return (stamp(previous) if previous is not None else None) or utcnow()
