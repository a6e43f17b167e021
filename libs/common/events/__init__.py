"""Event contracts (pydantic v2) and the topic registry: the only thing services share about each other."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError

from libs.common.events.envelope import Event, derived_event_id, new_trace_id, utcnow
from libs.common.events.photo import (
    Attribution,
    CardRendered,
    FaceBox,
    FaceResult,
    FacesDetected,
    PhotoDeleted,
    PhotoFailed,
    PhotoScored,
    PhotoShared,
    PhotoUploaded,
)
from libs.common.events.web import RATING_SCALES, FaceRated, PageViewed, RatingSubmitted, ShareViewed

EVENT_TYPES: tuple[type[Event], ...] = (
    PhotoUploaded,
    PhotoDeleted,
    FacesDetected,
    PhotoScored,
    PhotoFailed,
    PhotoShared,
    CardRendered,
    PageViewed,
    ShareViewed,
    RatingSubmitted,
    FaceRated,
)

TOPICS: tuple[str, ...] = tuple(dict.fromkeys(cls.TOPIC for cls in EVENT_TYPES))
"""Every topic, in a stable order. Each has a dead-letter twin ``<topic>.dlq``."""

DLQ_SUFFIX = ".dlq"

_ANY_EVENT = TypeAdapter(
    Annotated[
        PhotoUploaded
        | PhotoDeleted
        | FacesDetected
        | PhotoScored
        | PhotoFailed
        | PhotoShared
        | CardRendered
        | PageViewed
        | ShareViewed
        | RatingSubmitted
        | FaceRated,
        Field(discriminator="type"),
    ]
)


class InvalidEvent(ValueError):
    """Bytes that are not a valid event of the expected topic: goes to the dead-letter topic, never retried."""


def dlq_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


def decode_event(raw: bytes | None, topic: str | None = None) -> Event:
    """Parse and validate an event; raise InvalidEvent if the bytes are not one (or not one of ``topic``)."""
    if not raw:
        raise InvalidEvent("empty message")
    try:
        event: Event = _ANY_EVENT.validate_json(raw)
    except ValidationError as exc:
        raise InvalidEvent(f"schema validation failed: {exc.error_count()} error(s): {exc.errors()[:3]}") from exc
    except ValueError as exc:
        raise InvalidEvent(f"undecodable: {exc}") from exc
    if topic is not None and topic != event.TOPIC:
        raise InvalidEvent(f"event type {event.type!r} does not belong on topic {topic!r}")
    return event


__all__ = [
    "DLQ_SUFFIX",
    "EVENT_TYPES",
    "RATING_SCALES",
    "TOPICS",
    "Attribution",
    "CardRendered",
    "Event",
    "FaceBox",
    "FaceRated",
    "FaceResult",
    "FacesDetected",
    "InvalidEvent",
    "PageViewed",
    "PhotoDeleted",
    "PhotoFailed",
    "PhotoScored",
    "PhotoShared",
    "PhotoUploaded",
    "RatingSubmitted",
    "ShareViewed",
    "decode_event",
    "derived_event_id",
    "dlq_topic",
    "new_trace_id",
    "utcnow",
]
