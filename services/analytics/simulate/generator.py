"""The launch as a stream of events in simulated time, one batch per simulated minute, deterministic for a seed.

Memory stays bounded at any scale: arrivals are drawn minute by minute (Poisson around the daily curve plus the press
spikes) and everything that happens later (a visitor's upload and its pipeline, a friend opening a share an hour
later) waits in a heap keyed by its simulated time until its minute comes. Ids, timestamps and every choice come from
one seeded generator, so the same seed gives the same events, ids included.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np

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
from services.analytics.simulate.scenario import (
    BASELINE_REFERRERS,
    DAILY_AMPLITUDE,
    DAILY_PEAK_HOUR_UTC,
    LaunchConfig,
)

RATING_POOL = 2_000  # recent scored photos a rater may be shown (the rate-others page shows fresh faces)
LMK = [(10.0, 12.0), (15.0, 12.0), (12.5, 15.0), (10.5, 17.5), (14.5, 17.5)]
UPLOAD_DELAY_S = (8.0, 90.0)  # landing → upload: read the page, pick a selfie
DETECT_MEDIAN_S, SCORE_MEDIAN_S, CARD_S = 0.6, 0.4, 0.2  # pipeline stage latencies (log-normal, σ = LATENCY_SIGMA)
LATENCY_SIGMA = 0.5
SHARE_DELAY_MEAN_S = 45.0  # result → pressing share
FACES_PER_PHOTO = ((1, 0.80), (2, 0.15), (3, 0.05))
P_FEMALE = 0.55
MINOR_AGE = 18
CHANNELS = ("whatsapp", "x", "facebook", "copy", "native")


@dataclass(frozen=True)
class Source:
    """Where an arrival came from."""

    referrer: str | None
    utm_source: str | None = None
    share_id: str | None = None
    share_photo: str | None = None


@dataclass(order=True)
class _Pending:
    at_s: float
    seq: int
    item: Any = field(compare=False)  # an Event, or a Source (an arrival to process at at_s)


@dataclass
class SimulationStats:
    """What was generated, for the summary and for tests that check the planted spikes."""

    events: Counter[str] = field(default_factory=Counter)
    arrivals: Counter[str] = field(default_factory=Counter)  # by source label
    attributed_uploads: int = 0
    sharers: int = 0
    faces_scored: int = 0  # evaluations: what the dashboard's headline counts


class LaunchSimulator:
    """Iterate ``minutes()`` for (minute index, events of that minute in time order)."""

    def __init__(self, config: LaunchConfig) -> None:
        self.config = config
        self.stats = SimulationStats()
        self._rng = random.Random(config.seed)
        self._np = np.random.default_rng(config.seed)
        self._heap: list[_Pending] = []
        self._seq = itertools.count()
        self._pool: deque[tuple[str, list[FaceResult], float]] = deque(maxlen=RATING_POOL)
        self._gender_of: dict[str, str] = {}  # visitor → gender of their own face 0 (for rater-gender stats)

    # ---- ids and time -------------------------------------------------------------------------------------------
    def _id(self) -> str:
        return uuid.UUID(int=self._rng.getrandbits(128)).hex[:22]

    def _envelope(self, at_s: float) -> dict[str, Any]:
        return {
            "event_id": uuid.UUID(int=self._rng.getrandbits(128), version=4),
            "occurred_at": self.config.start + timedelta(seconds=at_s),
            "trace_id": f"{self._rng.getrandbits(128):032x}",
            "producer": "simulator",
        }

    def _push(self, at_s: float, item: Event | Source) -> None:
        heapq.heappush(self._heap, _Pending(at_s, next(self._seq), item))

    def _emit(self, at_s: float, cls: type[Event], **fields: Any) -> None:
        self._push(at_s, cls(**self._envelope(at_s), **fields))

    # ---- arrivals -------------------------------------------------------------------------------------------------
    def _arrival_counts(self, minute: int) -> list[tuple[Source, int]]:
        cfg = self.config
        spikes = cfg.planned_spikes()
        organic = max(cfg.visitors - sum(s.visitors for s in spikes), 0)
        hour = (cfg.start.hour + cfg.start.minute / 60 + minute / 60) % 24
        curve = 1 + DAILY_AMPLITUDE * math.cos(2 * math.pi * (hour - DAILY_PEAK_HOUR_UTC) / 24)
        per_minute = organic / cfg.minutes * curve  # the curve averages ~1 over a day; close enough for shorter runs
        out: list[tuple[Source, int]] = []
        for (referrer, utm, weight) in BASELINE_REFERRERS:
            out.append((Source(referrer, utm), int(self._np.poisson(per_minute * weight))))
        for spike in spikes:
            since = minute - spike.at_h * 60
            if since < 0:
                continue
            share = math.exp(-since / spike.decay_min) - math.exp(-(since + 1) / spike.decay_min)
            out.append((Source(spike.referrer, spike.utm_source), int(self._np.poisson(spike.visitors * share))))
        return out

    def _arrive(self, at_s: float, source: Source) -> None:
        """One visitor lands: a page view, maybe a share view, maybe an upload and everything after it."""
        cfg = self.config
        visitor = self._id()
        label = "share" if source.share_id else (source.utm_source or _domain(source.referrer) or "direct")
        self.stats.arrivals[label] += 1
        attribution = Attribution(share_id=source.share_id, referrer=source.referrer, utm_source=source.utm_source)
        path = f"/s/{source.share_id}" if source.share_id else "/"
        self._emit(at_s, PageViewed, visitor_id=visitor, path=path, attribution=attribution, new_visitor=True)
        if source.share_id:
            self._emit(at_s, ShareViewed, share_id=source.share_id, photo_id=source.share_photo, visitor_id=visitor,
                       referrer=source.referrer, attribution=attribution)
            converts = self._rng.random() < min(cfg.k_factor / cfg.views_per_share, 1.0)
        else:
            converts = self._rng.random() < cfg.p_upload
        if converts:
            self._upload(at_s + self._rng.uniform(*UPLOAD_DELAY_S), visitor, attribution)

    def _faces(self) -> list[FaceResult]:
        n = self._rng.choices([n for n, _ in FACES_PER_PHOTO], [w for _, w in FACES_PER_PHOTO])[0]
        faces = []
        for index in range(n):
            age = min(max(self._rng.lognormvariate(math.log(26), 0.3), 13.0), 75.0)
            female = self._rng.random() < P_FEMALE
            attractiveness = None if age < MINOR_AGE else round(min(max(self._rng.gauss(5.6, 1.5), 1.0), 10.0), 2)
            faces.append(FaceResult(
                index=index, age=round(age, 1), age_low=round(age - 4, 1), age_high=round(age + 4, 1),
                p_female=0.9 if female else 0.1, gender="female" if female else "male", attractiveness=attractiveness,
                withheld_reason=None if attractiveness is not None else "minor",
            ))
        return faces

    def _upload(self, at_s: float, visitor: str, attribution: Attribution) -> None:
        cfg, rng = self.config, self._rng
        photo = self._id()
        if attribution.share_id:
            self.stats.attributed_uploads += 1
        self._emit(at_s, PhotoUploaded, photo_id=photo, blob_key=f"photos/{photo}.jpg", width=1080, height=1350,
                   size_bytes=rng.randint(150_000, 3_000_000), visitor_id=visitor, attribution=attribution,
                   rateable=rng.random() < 0.5)
        t = at_s + rng.lognormvariate(math.log(DETECT_MEDIAN_S), LATENCY_SIGMA)
        faces = self._faces() if rng.random() < cfg.p_face else []
        boxes = [FaceBox(index=f.index, box=(0, 0, 200, 200), score=0.99, landmarks=LMK,
                         chip_key=f"faces/{photo}/{f.index}.png", chip_landmarks=LMK, size=200.0) for f in faces]
        self._emit(t, FacesDetected, photo_id=photo, faces=boxes, detector="simulated", image_width=1080,
                   image_height=1350, elapsed_ms=round(1000 * (t - at_s), 1))
        if not faces:
            return
        scored = t + rng.lognormvariate(math.log(SCORE_MEDIAN_S), LATENCY_SIGMA)
        self._emit(scored, PhotoScored, photo_id=photo, result_key=f"results/{photo}.json", faces=faces,
                   model_versions={"ensemble": "simulated"}, elapsed_ms=round(1000 * (scored - t), 1))
        self._emit(scored + CARD_S, CardRendered, photo_id=photo, template_version="1",
                   card_keys={"og": f"cards/{photo}/og.png"}, elapsed_ms=CARD_S * 1000)
        self._gender_of[visitor] = faces[0].gender
        self._pool.append((photo, faces, scored))
        if rng.random() < cfg.p_share:
            self._share(scored + rng.expovariate(1 / SHARE_DELAY_MEAN_S), photo, visitor)
        if rng.random() < cfg.p_rate:
            self._rate(scored, visitor)

    def _share(self, at_s: float, photo: str, visitor: str) -> None:
        cfg, rng = self.config, self._rng
        share = self._id()
        self.stats.sharers += 1
        channel = rng.choice(CHANNELS)
        self._emit(at_s, PhotoShared, photo_id=photo, share_id=share, visitor_id=visitor, channel=channel)
        referrer = {"whatsapp": "https://web.whatsapp.com/", "x": "https://t.co/",
                    "facebook": "https://www.facebook.com/"}.get(channel)
        for _ in range(int(self._np.poisson(cfg.views_per_share))):
            delay = rng.expovariate(1 / (cfg.share_delay_min * 60))
            self._push(at_s + delay, Source(referrer, None, share, photo))

    def _rate(self, after_s: float, visitor: str) -> None:
        rng = self._rng
        candidates = [p for p in self._pool if p[2] <= after_s]
        for k in range(min(int(self._np.poisson(self.config.ratings_mean)) + 1, len(candidates))):
            photo, faces, _ = rng.choice(candidates)
            target = rng.choice(faces)
            if target.attractiveness is None:
                continue  # minors are never offered for rating
            at = after_s + 30 + 15 * k
            hot_probability = 1 / (1 + math.exp(-(target.attractiveness - 5.5)))
            # the genders the upload API puts on a rating: the rated face's, and face 0 of the rater's own photo
            genders = {"rated_gender": target.gender, "rater_gender": self._gender_of.get(visitor)}
            if rng.random() < 0.7:
                self._emit(at, RatingSubmitted, visitor_id=visitor, photo_id=photo, face_index=target.index,
                           scale="hot_or_not", rating=float(rng.random() < hot_probability), **genders)
            else:
                rating = round(min(max(rng.gauss(target.attractiveness, 1.5), 1), 10))
                self._emit(at, RatingSubmitted, visitor_id=visitor, photo_id=photo, face_index=target.index,
                           scale="1to10", rating=float(rating), **genders)

    # ---- the clock ------------------------------------------------------------------------------------------------
    def minutes(self) -> Iterator[tuple[int, list[Event]]]:
        """(minute index, events whose occurred_at falls in it), for every minute of the launch, in order."""
        for minute in range(self.config.minutes):
            for source, count in self._arrival_counts(minute):
                for _ in range(count):
                    self._push(minute * 60 + self._rng.random() * 60, source)
            end_s = (minute + 1) * 60
            batch: list[Event] = []
            while self._heap and self._heap[0].at_s < end_s:
                pending = heapq.heappop(self._heap)
                if isinstance(pending.item, Source):
                    self._arrive(pending.at_s, pending.item)
                else:
                    batch.append(pending.item)
                    self.stats.events[pending.item.type] += 1
                    if isinstance(pending.item, PhotoScored):
                        self.stats.faces_scored += len(pending.item.faces)
            yield minute, batch


def _domain(referrer: str | None) -> str | None:
    if not referrer:
        return None
    return referrer.split("//", 1)[-1].split("/", 1)[0].removeprefix("www.")
