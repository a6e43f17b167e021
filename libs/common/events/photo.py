"""Events of a photo's journey: uploaded → faces detected → scored → card rendered (or failed / deleted)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from libs.common.events.envelope import Event
from libs.common.ids import ID_PATTERN

PhotoId = str  # validated by ID_PATTERN in each model


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)  # as Event: no NaN inside events


class Attribution(_Frozen):
    """Where a visitor came from: the share that brought them and the utm_* parameters of their landing."""

    share_id: str | None = Field(default=None, pattern=ID_PATTERN)
    referrer: str | None = Field(default=None, max_length=2048)
    utm_source: str | None = Field(default=None, max_length=200)
    utm_medium: str | None = Field(default=None, max_length=200)
    utm_campaign: str | None = Field(default=None, max_length=200)
    utm_term: str | None = Field(default=None, max_length=200)
    utm_content: str | None = Field(default=None, max_length=200)


class PhotoUploaded(Event):
    """A photo was accepted and its normalized copy (no metadata) is durable in the blob store."""

    TOPIC = "photo.uploaded"
    type: Literal["photo.uploaded"] = "photo.uploaded"
    photo_id: str = Field(pattern=ID_PATTERN)
    blob_key: str
    content_type: str = "image/jpeg"
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    size_bytes: int = Field(gt=0)
    visitor_id: str | None = Field(default=None, pattern=ID_PATTERN)
    attribution: Attribution = Field(default_factory=Attribution)
    rateable: bool = False  # the owner opted in to being rated by others
    store_photo: bool = True  # False: "don't store my photo" — score, then discard the image


class PhotoDeleted(Event):
    """A photo and everything derived from it was deleted (by its owner or by the retention job)."""

    TOPIC = "photo.deleted"
    type: Literal["photo.deleted"] = "photo.deleted"
    photo_id: str = Field(pattern=ID_PATTERN)
    reason: Literal["owner", "retention", "ephemeral"] = "owner"


class FaceBox(_Frozen):
    """One detected face: box and landmarks in original-photo pixels, plus its aligned chip."""

    index: int = Field(ge=0)
    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    score: float = Field(ge=0, le=1)
    landmarks: list[tuple[float, float]] = Field(min_length=5, max_length=5)
    chip_key: str
    chip_landmarks: list[tuple[float, float]] = Field(min_length=5, max_length=5)
    size: float = Field(ge=0)  # the box's longer side in pixels
    blur: float | None = None  # variance of the Laplacian on the chip
    yaw: float | None = None  # degrees, estimated from landmarks


class FacesDetected(Event):
    """The face stage finished a photo: zero or more faces, chips stored under faces/{photo_id}/{n}.png."""

    TOPIC = "faces.detected"
    type: Literal["faces.detected"] = "faces.detected"
    photo_id: str = Field(pattern=ID_PATTERN)
    faces: list[FaceBox] = Field(default_factory=list)
    detector: str
    image_width: int = Field(gt=0)
    image_height: int = Field(gt=0)
    elapsed_ms: float = Field(ge=0)


class FaceResult(_Frozen):
    """The small per-face summary that travels in photo.scored (the full document is results/{photo_id}.json)."""

    index: int = Field(ge=0)
    age: float
    age_low: float
    age_high: float
    p_female: float = Field(ge=0, le=1)
    gender: Literal["female", "male"]
    attractiveness: float | None = None  # None when withheld (minors) or not available
    attractiveness_word: str | None = None
    withheld_reason: str | None = None


class PhotoScored(Event):
    """The scoring stage finished a photo; the result document is durable at ``result_key``."""

    TOPIC = "photo.scored"
    type: Literal["photo.scored"] = "photo.scored"
    photo_id: str = Field(pattern=ID_PATTERN)
    result_key: str
    faces: list[FaceResult] = Field(default_factory=list)
    model_versions: dict[str, str] = Field(default_factory=dict)
    elapsed_ms: float = Field(ge=0)


class PhotoFailed(Event):
    """A stage gave up on a photo; ``reason`` is shown to the user in plain words."""

    TOPIC = "photo.failed"
    type: Literal["photo.failed"] = "photo.failed"
    photo_id: str = Field(pattern=ID_PATTERN)
    stage: Literal["upload", "face", "scoring", "share"]
    code: str = Field(max_length=64)
    reason: str = Field(max_length=500)


class PhotoShared(Event):
    """The owner pressed share: the photo gets a public share page at /s/{share_id}."""

    TOPIC = "photo.shared"
    type: Literal["photo.shared"] = "photo.shared"
    photo_id: str = Field(pattern=ID_PATTERN)
    share_id: str = Field(pattern=ID_PATTERN)
    visitor_id: str | None = Field(default=None, pattern=ID_PATTERN)
    channel: str | None = Field(default=None, max_length=32)  # x, facebook, whatsapp, copy, download, native


class CardRendered(Event):
    """Result cards for a photo were rendered and stored (idempotent: key = result id + template version)."""

    TOPIC = "card.rendered"
    type: Literal["card.rendered"] = "card.rendered"
    photo_id: str = Field(pattern=ID_PATTERN)
    template_version: str
    card_keys: dict[str, str]  # format name (og, square, story) → blob key
    elapsed_ms: float = Field(ge=0)
