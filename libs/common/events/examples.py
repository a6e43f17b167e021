"""One example of every event, for contract tests: each must validate, round-trip and be accepted by its consumers."""

from __future__ import annotations

from libs.common.events import (
    Attribution,
    CardRendered,
    Event,
    FaceBox,
    FaceRated,
    FaceResult,
    FacesDetected,
    PageViewed,
    PhotoDeleted,
    PhotoFailed,
    PhotoScored,
    PhotoShared,
    PhotoUploaded,
    RatingSubmitted,
    ShareViewed,
)

PHOTO = "ph0t0ExampleId_abcdef"
VISITOR = "v1sitorExampleId_abcd"
SHARE = "sh4reExampleId_abcdef"
_LMK = [(100.0, 120.0), (150.0, 120.0), (125.0, 150.0), (105.0, 175.0), (145.0, 175.0)]


def examples() -> list[Event]:
    """A fresh list (new event ids each call) with one valid instance of every event type."""
    return [
        PhotoUploaded(
            photo_id=PHOTO, blob_key=f"photos/{PHOTO}.jpg", width=512, height=512, size_bytes=48_213,
            visitor_id=VISITOR, attribution=Attribution(share_id=SHARE, utm_source="news"), rateable=True,
        ),
        PhotoDeleted(photo_id=PHOTO),
        FacesDetected(
            photo_id=PHOTO, detector="retinaface_mobilenetv2", image_width=512, image_height=512, elapsed_ms=31.5,
            faces=[
                FaceBox(index=0, box=(80, 90, 170, 200), score=0.998, landmarks=_LMK, chip_key=f"faces/{PHOTO}/0.png",
                        chip_landmarks=_LMK, size=110.0, blur=512.0, yaw=3.0)
            ],
        ),
        PhotoScored(
            photo_id=PHOTO, result_key=f"results/{PHOTO}.json", elapsed_ms=80.0, model_versions={"ensemble": "1"},
            faces=[FaceResult(index=0, age=31.2, age_low=26, age_high=37, p_female=0.93, gender="female",
                              attractiveness=7.1, attractiveness_word="Hot")],
        ),
        PhotoFailed(photo_id=PHOTO, stage="face", code="blob_missing", reason="The photo could not be read."),
        PhotoShared(photo_id=PHOTO, share_id=SHARE, visitor_id=VISITOR, channel="x"),
        CardRendered(photo_id=PHOTO, template_version="1", card_keys={"og": f"cards/{PHOTO}/og-1.png"}, elapsed_ms=9),
        PageViewed(visitor_id=VISITOR, path="/", attribution=Attribution(referrer="https://news.example/")),
        ShareViewed(share_id=SHARE, photo_id=PHOTO, visitor_id=VISITOR, referrer="https://t.co/"),
        RatingSubmitted(visitor_id=VISITOR, photo_id=PHOTO, face_index=0, scale="hot_or_not", rating=1,
                        rated_gender="female", rater_gender="male"),
        FaceRated(visitor_id=VISITOR, photo_id=PHOTO, face_index=0, rating=4.2, rater_weights=[0.1] * 8 + [-0.3],
                  model_version="personal_frl_london-r8-0123456789ab"),
    ]
