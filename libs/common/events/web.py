"""Events about visitors rather than photos: page views, share views, ratings. Analytics consumes them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from libs.common.events.envelope import Event
from libs.common.events.photo import Attribution
from libs.common.ids import ID_PATTERN


class PageViewed(Event):
    """A visitor viewed a page of the website (analytics only)."""

    TOPIC = "page.viewed"
    type: Literal["page.viewed"] = "page.viewed"
    visitor_id: str = Field(pattern=ID_PATTERN)
    path: str = Field(max_length=2048)
    attribution: Attribution = Field(default_factory=Attribution)
    new_visitor: bool = False


class ShareViewed(Event):
    """Someone opened a share page /s/{share_id}: the top of the referral loop."""

    TOPIC = "share.viewed"
    type: Literal["share.viewed"] = "share.viewed"
    share_id: str = Field(pattern=ID_PATTERN)
    photo_id: str = Field(pattern=ID_PATTERN)
    visitor_id: str = Field(pattern=ID_PATTERN)
    referrer: str | None = Field(default=None, max_length=2048)
    attribution: Attribution = Field(default_factory=Attribution)


RATING_SCALES: dict[str, tuple[float, float]] = {"hot_or_not": (0.0, 1.0), "1to10": (1.0, 10.0)}
"""Each rating scale's range; hot-or-not takes only its two ends (0 not, 1 hot)."""


class RatingSubmitted(Event):
    """A visitor rated another visitor's face (hot-or-not or 1–10) on the rate-others page.

    ``rated_gender`` is the rated face's estimated gender as the rater was shown it; ``rater_gender`` that of face 0 of
    the rater's own latest scored photo (the website names it), None when they had none, or it was not scored yet.
    Both are the genders as known when the rating was made, carried on the event so that the dashboard counts hot
    ratings by both genders from a per-minute rollup instead of joining every rating with photos and faces at read
    time. Optional: events published before these fields existed, and raters without a photo, have None.
    """

    TOPIC = "rating.submitted"
    type: Literal["rating.submitted"] = "rating.submitted"
    visitor_id: str = Field(pattern=ID_PATTERN)
    photo_id: str = Field(pattern=ID_PATTERN)
    face_index: int = Field(ge=0, le=63)
    scale: Literal["hot_or_not", "1to10"]
    rating: float
    rated_gender: Literal["female", "male"] | None = None
    rater_gender: Literal["female", "male"] | None = None

    @model_validator(mode="after")
    def _rating_on_its_scale(self) -> RatingSubmitted:
        """A rating off its scale would be clipped or misread by the personal model: refuse it (dead-letter)."""
        low, high = RATING_SCALES[self.scale]
        if self.scale == "hot_or_not" and self.rating not in (low, high):
            raise ValueError(f"a hot_or_not rating is {low:g} or {high:g}, got {self.rating:g}")
        if not low <= self.rating <= high:
            raise ValueError(f"a {self.scale} rating lies in [{low:g}, {high:g}], got {self.rating:g}")
        return self

    @property
    def partition_key(self) -> str | None:
        """Ratings are keyed by rater so one rater's history stays ordered for online personalization."""
        return self.visitor_id


class FaceRated(Event):
    """Scoring's own follow-up of a RatingSubmitted: one rating, ready to be folded into the rated face's item vector.

    The ratings consumer (keyed by rater) publishes it with the rater's personal-model weights [p_u, b_u] as they were
    before this rating and the rating on the model's scale; keyed by photo, so one consumer at a time owns a face's
    state (personalize/item.py) without locks across replicas. Redelivery yields the same event id; the face's state
    counts each rater once.
    """

    TOPIC = "face.rated"
    type: Literal["face.rated"] = "face.rated"
    visitor_id: str = Field(pattern=ID_PATTERN)
    photo_id: str = Field(pattern=ID_PATTERN)
    face_index: int = Field(ge=0, le=63)
    rating: float  # on the personal model's rating scale
    rater_weights: list[float] = Field(min_length=2, max_length=65)  # [p_u (K), b_u]
    model_version: str = Field(min_length=1, max_length=128)

    @property
    def partition_key(self) -> str | None:
        """Keyed by photo: all ratings of a face reach one consumer, in order."""
        return self.photo_id
