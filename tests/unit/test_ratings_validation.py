"""Rating requests, refused or accepted by the pure rules in services/upload/ratings.py (no server needed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from libs.common.documents import PhotoMeta, ResultDocument
from libs.common.ids import new_id
from services.upload.ratings import (
    RatingRefused,
    RatingRequest,
    check_rateable,
    parse_rating,
    rated_gender_of,
    rater_gender_of,
)

PHOTO = new_id()


def body(**fields: object) -> bytes:
    return json.dumps({"photo_id": PHOTO, "face_index": 0, "scale": "hot_or_not", "rating": 1, **fields}).encode()


def test_a_good_rating_parses() -> None:
    assert parse_rating(body()) == RatingRequest(PHOTO, 0, "hot_or_not", 1.0)
    assert parse_rating(body(photo_id=None, rate_id=PHOTO)) == RatingRequest(None, 0, "hot_or_not", 1.0, rate_id=PHOTO)
    assert parse_rating(body(scale="1to10", rating=7.5)).rating == 7.5
    assert parse_rating(json.dumps({"photo_id": PHOTO, "face_index": 2, "rating": 0}).encode()).scale == "hot_or_not"


@pytest.mark.parametrize(("raw", "code"), [
    (b"not json", "invalid_json"),
    (b"[1, 2]", "invalid_json"),
    (b"{" + b" " * 2000 + b"}", "invalid_json"),
    (b"[" * 1000, "invalid_json"),  # nesting within the byte limit: json.loads raises RecursionError
    (body(photo_id="../x"), "invalid_photo_id"),
    (body(photo_id=None), "invalid_face"),  # names no photo
    (body(rate_id=PHOTO), "invalid_face"),  # names it twice
    (body(photo_id=None, rate_id="../x"), "invalid_rate_id"),
    (body(photo_id=None, rate_id=7), "invalid_rate_id"),
    (body(face_index=-1), "invalid_face_index"),
    (body(face_index=64), "invalid_face_index"),
    (body(face_index="0"), "invalid_face_index"),
    (body(face_index=True), "invalid_face_index"),
    (body(face_index=1.0), "invalid_face_index"),
    (body(scale="stars"), "invalid_scale"),
    (body(rating=2), "invalid_rating"),
    (body(rating=0.5), "invalid_rating"),
    (body(rating=True), "invalid_rating"),
    (body(rating="1"), "invalid_rating"),
    (body(rating=None), "invalid_rating"),
    (body(scale="1to10", rating=0), "invalid_rating"),
    (body(scale="1to10", rating=11), "invalid_rating"),
    (b'{"photo_id": "' + PHOTO.encode() + b'", "face_index": 0, "rating": NaN}', "invalid_rating"),
    (body(rater_photo_id="../x"), "invalid_rater_photo_id"),
    (body(rater_photo_id=""), "invalid_rater_photo_id"),
    (body(rater_photo_id=7), "invalid_rater_photo_id"),
    (body(rater_photo_id=[PHOTO]), "invalid_rater_photo_id"),
])
def test_malformed_ratings_are_400(raw: bytes, code: str) -> None:
    with pytest.raises(RatingRefused) as err:
        parse_rating(raw)
    assert (err.value.status, err.value.code) == (400, code)


def meta(*, rateable: bool = True, owner: str | None = None) -> PhotoMeta:
    return PhotoMeta(photo_id=PHOTO, created_at=datetime.now(UTC), delete_token_sha256="x" * 64, visitor_id=owner,
                     rateable=rateable, width=10, height=10)


def result(*faces: dict) -> ResultDocument:
    return ResultDocument(photo_id=PHOTO, status="done", faces=list(faces))


ADULT = {"index": 0, "attractiveness": 6.0}
MINOR = {"index": 0, "withheld_reason": "minor", "p_minor": 0.8}


@pytest.mark.parametrize(("kwargs", "status", "code"), [
    ({"tombstoned": True, "meta": meta(), "result": result(ADULT)}, 404, "not_found"),
    ({"tombstoned": False, "meta": None, "result": None}, 404, "not_found"),
    ({"tombstoned": False, "meta": meta(rateable=False), "result": result(ADULT)}, 403, "not_rateable"),
    ({"tombstoned": False, "meta": meta(owner="rater-id-0123456789"), "result": result(ADULT)}, 403, "own_photo"),
    ({"tombstoned": False, "meta": meta(), "result": None}, 409, "not_ready"),
    ({"tombstoned": False, "meta": meta(), "result": result({**ADULT, "index": 1})}, 404, "face_not_found"),
    ({"tombstoned": False, "meta": meta(), "result": result(MINOR)}, 403, "face_withheld"),
])
def test_faces_that_may_not_be_rated(kwargs: dict, status: int, code: str) -> None:
    with pytest.raises(RatingRefused) as err:
        check_rateable(parse_rating(body()), rater_id="rater-id-0123456789", **kwargs)
    assert (err.value.status, err.value.code) == (status, code)


def test_an_adult_face_of_an_opted_in_photo_may_be_rated() -> None:
    check_rateable(parse_rating(body()), rater_id=new_id(), tombstoned=False, meta=meta(owner=new_id()),
                   result=result(ADULT))


def test_rater_photo_id_is_optional() -> None:
    mine = new_id()
    assert parse_rating(body()).rater_photo_id is None
    assert parse_rating(body(rater_photo_id=None)).rater_photo_id is None  # null: the browser owns no photo
    assert parse_rating(body(rater_photo_id=mine)) == RatingRequest(PHOTO, 0, "hot_or_not", 1.0, rater_photo_id=mine)


FEMALE_ADULT = {**ADULT, "gender": "female"}


@pytest.mark.parametrize(("doc", "index", "gender"), [
    (result(FEMALE_ADULT), 0, "female"),
    (result({**ADULT, "gender": "male"}, {**ADULT, "index": 1, "gender": "female"}), 1, "female"),
    (result(ADULT), 0, None),  # a result document without gender (older scorer): unknown
    (result({**ADULT, "gender": "other"}), 0, None),  # only the event's two values are carried
    (None, 0, None),
    (ResultDocument(photo_id=PHOTO, status="failed"), 0, None),
])
def test_rated_gender_is_the_rated_faces(doc: ResultDocument | None, index: int, gender: str | None) -> None:
    assert rated_gender_of(parse_rating(body(face_index=index)), doc) == gender


RATER = "rater-id-0123456789"


@pytest.mark.parametrize(("kwargs", "gender"), [
    ({"tombstoned": False, "meta": meta(owner=RATER), "result": result(FEMALE_ADULT)}, "female"),
    ({"tombstoned": False, "meta": meta(owner=RATER), "result": result(MINOR | {"gender": "male"})}, "male"),
    ({"tombstoned": False, "meta": meta(owner=RATER),  # face 0, whatever the order of the list
      "result": result({**ADULT, "index": 1, "gender": "male"}, FEMALE_ADULT)}, "female"),
    ({"tombstoned": False, "meta": None, "result": None}, None),  # unknown id
    ({"tombstoned": True, "meta": meta(owner=RATER), "result": result(FEMALE_ADULT)}, None),  # deleted
    ({"tombstoned": True, "meta": meta(owner=new_id()), "result": None}, None),  # deleted: no 403 either
    ({"tombstoned": False, "meta": meta(owner=RATER), "result": None}, None),  # not scored yet
    ({"tombstoned": False, "meta": meta(owner=RATER),
      "result": ResultDocument(photo_id=PHOTO, status="failed")}, None),
    ({"tombstoned": False, "meta": meta(owner=RATER), "result": result()}, None),  # no face
    ({"tombstoned": False, "meta": meta(owner=RATER), "result": result({**FEMALE_ADULT, "index": 1})}, None),
])
def test_rater_gender_is_face_0_of_their_own_photo(kwargs: dict, gender: str | None) -> None:
    assert rater_gender_of(rater_id=RATER, **kwargs) == gender


@pytest.mark.parametrize("owner", [new_id(), None])
def test_someone_elses_photo_is_refused(owner: str | None) -> None:
    with pytest.raises(RatingRefused) as err:
        rater_gender_of(rater_id=RATER, tombstoned=False, meta=meta(owner=owner), result=result(FEMALE_ADULT))
    assert (err.value.status, err.value.code) == (403, "not_your_photo")
