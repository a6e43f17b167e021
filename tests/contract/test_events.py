"""Event contracts: every example validates and round-trips; bad payloads are rejected as InvalidEvent."""

from __future__ import annotations

import json

import pytest

from libs.common.events import (
    EVENT_TYPES,
    TOPICS,
    FaceRated,
    FacesDetected,
    InvalidEvent,
    PhotoUploaded,
    RatingSubmitted,
    decode_event,
    dlq_topic,
)
from libs.common.events.examples import examples


def test_there_is_one_example_per_event_type_and_each_round_trips() -> None:
    found = examples()
    assert {type(e) for e in found} == set(EVENT_TYPES)
    for event in found:
        assert decode_event(event.to_bytes(), event.TOPIC) == event
        assert event.occurred_at.tzinfo is not None


def test_envelope_fields_are_present() -> None:
    doc = json.loads(examples()[0].to_bytes())
    for field in ("event_id", "type", "schema_version", "occurred_at", "trace_id", "producer"):
        assert field in doc


@pytest.mark.parametrize(
    "raw",
    [b"", b"\xff\xfe", b"not json", b"[]", b'{"type": "unknown.event"}', b'{"type": "photo.uploaded"}'],
)
def test_garbage_is_an_invalid_event(raw: bytes) -> None:
    with pytest.raises(InvalidEvent):
        decode_event(raw)


def test_an_event_on_the_wrong_topic_is_invalid() -> None:
    event = examples()[0]
    with pytest.raises(InvalidEvent):
        decode_event(event.to_bytes(), "photo.deleted")


def test_naive_timestamps_and_bad_ids_are_rejected() -> None:
    doc = json.loads(examples()[0].to_bytes())
    with pytest.raises(InvalidEvent):
        decode_event(json.dumps({**doc, "occurred_at": "2026-01-01T00:00:00"}).encode())
    with pytest.raises(InvalidEvent):
        decode_event(json.dumps({**doc, "photo_id": "../../etc/passwd"}).encode())


def test_every_topic_has_a_dead_letter_twin_and_per_photo_events_are_keyed_by_photo() -> None:
    assert len(TOPICS) == len(set(TOPICS))
    assert dlq_topic("photo.uploaded") == "photo.uploaded.dlq"
    event = next(e for e in examples() if isinstance(e, PhotoUploaded))
    assert event.partition_key == event.photo_id


def _example(event_type: type) -> dict:
    return json.loads(next(e for e in examples() if isinstance(e, event_type)).to_bytes())


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_invalid_anywhere_in_an_event(value: str) -> None:
    """Python's json reads NaN/Infinity; one such rating or landmark would poison state or a shared batch."""
    rating = _example(RatingSubmitted)
    face_rated = _example(FaceRated)
    detected = _example(FacesDetected)
    landmarks = detected["faces"][0]["chip_landmarks"]
    payloads = [
        {**rating, "rating": value},
        {**face_rated, "rater_weights": [value, *face_rated["rater_weights"][1:]]},
        {**detected, "faces": [{**detected["faces"][0], "chip_landmarks": [[value, 1.0], *landmarks[1:]]}]},
    ]
    for doc in payloads:
        raw = json.dumps(doc).replace(f'"{value}"', value).encode()  # the bare token, as a foreign producer sends it
        with pytest.raises(InvalidEvent):
            decode_event(raw)


@pytest.mark.parametrize(("scale", "rating"), [("hot_or_not", 0.5), ("hot_or_not", 2), ("1to10", 0), ("1to10", 10.5)])
def test_a_rating_off_its_scale_is_invalid(scale: str, rating: float) -> None:
    with pytest.raises(InvalidEvent, match="rating"):
        decode_event(json.dumps({**_example(RatingSubmitted), "scale": scale, "rating": rating}).encode())


@pytest.mark.parametrize(("scale", "rating"), [("hot_or_not", 0), ("hot_or_not", 1), ("1to10", 1), ("1to10", 7.5)])
def test_ratings_on_their_scale_are_valid(scale: str, rating: float) -> None:
    event = decode_event(json.dumps({**_example(RatingSubmitted), "scale": scale, "rating": rating}).encode())
    assert isinstance(event, RatingSubmitted) and event.rating == rating
