"""Small hand-built datasets whose every figure is known by heart: the fixtures of the query and dashboard tests.

``tiny_launch`` is four photos, six visitors, two shares and four ratings, with a duplicate of two events (exact
figures must not move). ``steady_with_spike`` is four hours of a flat five evaluations a minute with one press spike
planted at minute 120. The expected numbers are written out in the tests, derived by hand from the story below, so a
query that changes meaning fails loudly.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from libs.common.bus import Delivery
from libs.common.events import (
    Attribution,
    CardRendered,
    Event,
    FaceBox,
    FaceResult,
    FacesDetected,
    PageViewed,
    PhotoScored,
    PhotoShared,
    PhotoUploaded,
    RatingSubmitted,
    ShareViewed,
)

ID_WIDTH = 20  # ids must match ID_PATTERN (16–64 url-safe characters)
_LMK = [(10.0, 12.0), (15.0, 12.0), (12.5, 15.0), (10.5, 17.5), (14.5, 17.5)]

NEWS_REFERRER = "https://www.news.example.com/tech/howhot-goes-viral"
SPIKE_START_MINUTE = 120  # of steady_with_spike
SPIKE_VALUES = (50, 40, 30, 20, 12)  # evaluations in minutes 120…124; 12 is below the spike threshold on purpose
BASELINE_PER_MINUTE = 5
STEADY_MINUTES = 240


def seed_id(kind: str, n: int) -> str:
    """A readable deterministic id ('photo000…0007') that passes ID_PATTERN."""
    return f"{kind}{n:0{ID_WIDTH - len(kind)}d}"


def _face_box(photo: str, index: int) -> FaceBox:
    return FaceBox(
        index=index, box=(0, 0, 20, 20), score=0.99, landmarks=_LMK, chip_key=f"faces/{photo}/{index}.png",
        chip_landmarks=_LMK, size=20.0,
    )


def photo_journey(
    t: datetime,
    photo: str,
    visitor: str,
    faces: list[FaceResult],
    *,
    attribution: Attribution | None = None,
    detect_s: float = 1.0,
    score_s: float = 1.0,
    card_s: float | None = 1.0,
) -> list[Event]:
    """Upload → faces detected → (scored → card) with the given gaps in seconds; no faces stops after detection."""
    detected_at = t + timedelta(seconds=detect_s)
    events: list[Event] = [
        PhotoUploaded(
            occurred_at=t, photo_id=photo, blob_key=f"photos/{photo}.jpg", width=640, height=480, size_bytes=50_000,
            visitor_id=visitor, attribution=attribution or Attribution(),
        ),
        FacesDetected(
            occurred_at=detected_at, photo_id=photo, faces=[_face_box(photo, f.index) for f in faces],
            detector="seed", image_width=640, image_height=480, elapsed_ms=detect_s * 1000,
        ),
    ]
    if not faces:
        return events
    scored_at = detected_at + timedelta(seconds=score_s)
    events.append(
        PhotoScored(occurred_at=scored_at, photo_id=photo, result_key=f"results/{photo}.json", faces=faces,
                    elapsed_ms=score_s * 1000)
    )
    if card_s is not None:
        events.append(
            CardRendered(occurred_at=scored_at + timedelta(seconds=card_s), photo_id=photo, template_version="1",
                         card_keys={"og": f"cards/{photo}/og.png"}, elapsed_ms=card_s * 1000)
        )
    return events


def face(index: int, age: float, gender: str, attractiveness: float | None) -> FaceResult:
    return FaceResult(
        index=index, age=age, age_low=age - 3, age_high=age + 3, p_female=1.0 if gender == "female" else 0.0,
        gender=gender, attractiveness=attractiveness,  # type: ignore[arg-type]
        withheld_reason=None if attractiveness is not None else "minor",
    )


def tiny_launch(t0: datetime) -> tuple[list[Event], list[Event]]:
    """The tiny launch (all within the first 4 minutes after ``t0``), and a list of duplicates to insert again.

    Story: V1 comes from a news article, uploads P1 (1 face: female 24, 7.5) and shares it as S1 at 0:40. V2 opens S1
    at 0:50 and uploads P2 via S1 at 1:00 (male 40 → 5.0 and a girl of 16, withheld), shares it as S2 at 2:00. V3
    comes from Google and uploads P3 at 2:30 (no face). V5 opens S2 at 2:30 and rates without uploading. V4 opens S1
    at 2:50 and uploads P4 via S1 at 3:00 (male 30 → 6.0, no card). V6 only looks at the home page.
    """
    v = [seed_id("visitor", i) for i in range(7)]
    p = [seed_id("photo", i) for i in range(5)]
    s = [seed_id("share", i) for i in range(3)]

    def at(minutes: int, seconds: int = 0) -> datetime:
        return t0 + timedelta(minutes=minutes, seconds=seconds)

    def view(minutes: int, seconds: int, visitor: str, referrer: str | None = None) -> PageViewed:
        return PageViewed(occurred_at=at(minutes, seconds), visitor_id=visitor, path="/", new_visitor=True,
                          attribution=Attribution(referrer=referrer))

    events: list[Event] = [
        view(0, 5, v[1], NEWS_REFERRER), view(0, 55, v[2]), view(2, 20, v[3], "https://www.google.com/"),
        view(2, 55, v[4]), view(2, 25, v[5]), view(3, 30, v[6]),
        *photo_journey(at(0, 10), p[1], v[1], [face(0, 24, "female", 7.5)], detect_s=2, score_s=3, card_s=1,
                       attribution=Attribution(referrer=NEWS_REFERRER, utm_source="press")),
        PhotoShared(occurred_at=at(0, 40), photo_id=p[1], share_id=s[1], visitor_id=v[1], channel="whatsapp"),
        ShareViewed(occurred_at=at(0, 50), share_id=s[1], photo_id=p[1], visitor_id=v[2]),
        *photo_journey(at(1, 0), p[2], v[2], [face(0, 40, "male", 5.0), face(1, 16, "female", None)],
                       detect_s=1, score_s=2, card_s=1,
                       attribution=Attribution(share_id=s[1], referrer="https://web.whatsapp.com/")),
        PhotoShared(occurred_at=at(2, 0), photo_id=p[2], share_id=s[2], visitor_id=v[2], channel="x"),
        *photo_journey(at(2, 30), p[3], v[3], [], detect_s=2,
                       attribution=Attribution(referrer="https://www.google.com/")),
        ShareViewed(occurred_at=at(2, 30), share_id=s[2], photo_id=p[2], visitor_id=v[5]),
        ShareViewed(occurred_at=at(2, 50), share_id=s[1], photo_id=p[1], visitor_id=v[4]),
        *photo_journey(at(3, 0), p[4], v[4], [face(0, 30, "male", 6.0)], detect_s=4, score_s=2, card_s=None,
                       attribution=Attribution(share_id=s[1])),
        # each rating carries the rated face's gender and face 0 of the rater's own photo's (V5 uploaded nothing)
        RatingSubmitted(occurred_at=at(3, 10), visitor_id=v[2], photo_id=p[1], face_index=0, scale="hot_or_not",
                        rating=1, rated_gender="female", rater_gender="male"),
        RatingSubmitted(occurred_at=at(3, 20), visitor_id=v[4], photo_id=p[1], face_index=0, scale="1to10", rating=6,
                        rated_gender="female", rater_gender="male"),
        RatingSubmitted(occurred_at=at(3, 30), visitor_id=v[5], photo_id=p[2], face_index=0, scale="hot_or_not",
                        rating=0, rated_gender="male"),
        RatingSubmitted(occurred_at=at(3, 40), visitor_id=v[1], photo_id=p[2], face_index=0, scale="1to10", rating=8,
                        rated_gender="male", rater_gender="female"),
    ]
    duplicates = [e for e in events if isinstance(e, PhotoScored | RatingSubmitted)][:2]
    return events, duplicates


def steady_with_spike(t0: datetime) -> list[Event]:
    """Four hours of BASELINE_PER_MINUTE direct uploads a minute (one face each), plus a press spike at minute 120.

    The spike's extra photos come from NEWS_REFERRER with utm_source=press: minutes 120–123 are spikes (50, 40, 30, 20
    evaluations), minute 124 (12) is not. Every photo is scored 2 s after its upload, inside the same minute.
    """
    events: list[Event] = []
    n = 0
    for minute in range(STEADY_MINUTES):
        offset = minute - SPIKE_START_MINUTE
        total = SPIKE_VALUES[offset] if 0 <= offset < len(SPIKE_VALUES) else BASELINE_PER_MINUTE
        for k in range(total):
            n += 1
            press = k >= BASELINE_PER_MINUTE
            attribution = Attribution(referrer=NEWS_REFERRER, utm_source="press") if press else Attribution()
            t = t0 + timedelta(minutes=minute, seconds=k * 50 / total)
            events += photo_journey(t, seed_id("photo", n), seed_id("visitor", n), [face(0, 30, "female", 6.0)],
                                    attribution=attribution, detect_s=1, score_s=1, card_s=None)
    return events


def as_deliveries(events: list[Event], partition: int = 0, first_offset: int = 0) -> list[Delivery]:
    """Wrap events as consumer deliveries so tests insert them through the real ingest path (build_blocks)."""
    return [
        Delivery(event=e, topic=e.TOPIC, partition=partition, offset=first_offset + i, raw=e.to_bytes())
        for i, e in enumerate(events)
    ]
