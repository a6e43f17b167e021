"""Where a simulated launch goes: straight into Kafka (``--events-only``) or through the real upload API (``--photos``).

events-only: every event, stamped in simulated time, published with publish_many one simulated minute at a time
(optionally paced by ``speedup``: 720 plays 12 hours in one minute). The analytics service ingests them like any
other events, so the dashboard shows the launch at the simulated times.

photos: real images are POSTed to /api/v1/photos, so upload → face → scoring → share run for real and stamp their own
(real) times. Each upload carries the website's cookies (hh_vid: visitor id, hh_ref: the share that brought them,
hh_utm: referrer and utm_source), so the upload service's own PhotoUploaded has the simulated visitor and attribution.
The simulator publishes the rest of each visitor's story itself — page views, shares, share views and ratings —
re-stamped now and pointing at the real photo ids; events of photos that were not accepted are dropped. 503 (backlog)
and 429 (rate limit: one simulator is one IP) are waited out as their Retry-After asks, once per photo.

Ratings carry genders (rated_gender, rater_gender) as the upload API would put them when it is sent the rating: the
simulated genders describe simulated faces, not the real images the ratings now point at, so they are replaced by
what the real photos' status says (GET /api/v1/photos/{id}) at the time the rating is published: the rated face's
gender, and face 0 of the rater's latest accepted upload; None while a photo is not scored yet (or has no such face),
as on the website. Ratings themselves still bypass POST /api/v1/ratings (its checks would drop most of them: faces
not opted in or not scored yet), so their face_index is the simulated one.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import aiohttp

from libs.common.events import (
    CardRendered,
    Event,
    FacesDetected,
    PhotoFailed,
    PhotoScored,
    PhotoUploaded,
    RatingSubmitted,
)

log = logging.getLogger(__name__)

PUBLISH_CHUNK = 5_000  # events per publish_many: big enough for throughput, small enough to bound memory in flight
PIPELINE_TYPES = (FacesDetected, PhotoScored, CardRendered, PhotoFailed)  # made by the real services in photos mode
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
UPLOAD_TIMEOUT_S = 60.0
MAX_RETRY_AFTER_S = 30.0  # honour the upload service's 503/429 Retry-After, but never stall the run for long
RETRY_STATUSES = {503, 429}  # backlog shedding and rate limiting: come back later, as told
VISITOR_COOKIE, REFERRAL_COOKIE, LANDING_COOKIE = "hh_vid", "hh_ref", "hh_utm"  # services/upload/web/visitor.py
GENDERS = ("female", "male")  # RatingSubmitted's rated_gender / rater_gender


def visitor_cookies(event: PhotoUploaded) -> dict[str, str]:
    """The cookies a browser of this visitor would send: visitor id, referring share, landing referrer and utm."""
    cookies: dict[str, str] = {}
    if event.visitor_id:
        cookies[VISITOR_COOKIE] = event.visitor_id
    attribution = event.attribution
    if attribution.share_id:
        cookies[REFERRAL_COOKIE] = attribution.share_id
    landing = {k: v for k, v in (("referrer", attribution.referrer), ("utm_source", attribution.utm_source)) if v}
    if landing:
        encoded = base64.urlsafe_b64encode(json.dumps(landing, separators=(",", ":")).encode()).decode()
        cookies[LANDING_COOKIE] = encoded.rstrip("=")
    return cookies

Minutes = Iterator[tuple[int, list[Event]]]


class Publisher(Protocol):
    async def publish_many(self, events: list[Event]) -> None: ...


class Pacer:
    """Sleeps so that simulated minute ``m`` starts ``m * 60 / speedup`` real seconds after the first (0: no pacing)."""

    def __init__(self, speedup: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.speedup = speedup
        self._clock = clock
        self._t0 = clock()

    async def wait_for_minute(self, minute: int) -> None:
        if self.speedup <= 0:
            return
        delay = self._t0 + minute * 60 / self.speedup - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)


async def feed_events(minutes: Minutes, publisher: Publisher, pacer: Pacer, progress: Callable[[int], None]) -> int:
    """Publish every minute's events (simulated timestamps); returns how many were published."""
    published = 0
    for minute, batch in minutes:
        await pacer.wait_for_minute(minute)
        for offset in range(0, len(batch), PUBLISH_CHUNK):
            await publisher.publish_many(batch[offset : offset + PUBLISH_CHUNK])
        published += len(batch)
        progress(1)
    return published


def image_files(directory: Path) -> list[Path]:
    """The photos to upload, in a stable order (cycled when the launch needs more uploads than there are files)."""
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"no .jpg/.jpeg/.png/.webp files in {directory}")
    return files


class PhotoFeeder:
    """Uploads the launch's photos through the upload API and publishes the visitors' own events around them."""

    def __init__(self, upload_url: str, images: Sequence[Path], publisher: Publisher, max_photos: int) -> None:
        self.upload_url = upload_url.rstrip("/")
        self._images = itertools.cycle(images)
        self._publisher = publisher
        self.max_photos = max_photos
        self.real_ids: dict[str, str] = {}  # simulated photo id → the id the upload service gave it
        self.latest_upload: dict[str, str] = {}  # visitor → real id of their latest accepted photo
        self.outcomes: Counter[str] = Counter()
        self._genders: dict[str, dict[int, str]] = {}  # real photo id → face index → gender, once scored

    async def upload(self, session: aiohttp.ClientSession, event: PhotoUploaded) -> None:
        path = next(self._images)
        for _attempt in range(2):
            form = aiohttp.FormData()
            form.add_field("photo", path.read_bytes(), filename=path.name, content_type="application/octet-stream")
            form.add_field("rateable", "true" if event.rateable else "false")
            async with session.post(
                f"{self.upload_url}/api/v1/photos", data=form, cookies=visitor_cookies(event)
            ) as response:
                if response.status == 202:  # Accepted
                    self.real_ids[event.photo_id] = (await response.json())["photo_id"]
                    if event.visitor_id:
                        self.latest_upload[event.visitor_id] = self.real_ids[event.photo_id]
                    self.outcomes["accepted"] += 1
                    return
                if response.status in RETRY_STATUSES:  # busy or rate-limited: wait as asked, once
                    await asyncio.sleep(min(float(response.headers.get("Retry-After", "1")), MAX_RETRY_AFTER_S))
                    continue
                self.outcomes[f"http {response.status}"] += 1
                return
        self.outcomes["gave up after 503/429"] += 1

    def restamp(self, event: Event) -> Event | None:
        """The visitor event re-stamped now and pointing at the real photo; None if its photo was never accepted."""
        update: dict[str, object] = {"occurred_at": datetime.now(UTC)}
        photo = getattr(event, "photo_id", None)
        if photo is not None:
            if photo not in self.real_ids:
                return None
            update["photo_id"] = self.real_ids[photo]
        return event.model_copy(update=update)

    async def face_genders(self, session: aiohttp.ClientSession, photo_id: str) -> dict[int, str]:
        """Face index → gender of a real photo once it is done (cached); empty while it is not, or on any failure."""
        if photo_id in self._genders:
            return self._genders[photo_id]
        try:
            async with session.get(f"{self.upload_url}/api/v1/photos/{photo_id}") as response:
                body = await response.json() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return {}
        if not isinstance(body, dict) or body.get("status") != "done":
            return {}
        genders = {f["index"]: f["gender"] for f in body.get("faces", [])
                   if isinstance(f, dict) and isinstance(f.get("index"), int) and f.get("gender") in GENDERS}
        self._genders[photo_id] = genders
        return genders

    async def with_real_genders(self, session: aiohttp.ClientSession, rating: RatingSubmitted) -> RatingSubmitted:
        """The (restamped) rating with the genders the upload API would give it now (see the module docstring)."""
        own = self.latest_upload.get(rating.visitor_id)
        rated = (await self.face_genders(session, rating.photo_id)).get(rating.face_index)
        rater = (await self.face_genders(session, own)).get(0) if own else None
        return rating.model_copy(update={"rated_gender": rated, "rater_gender": rater})

    async def run(self, minutes: Minutes, pacer: Pacer, progress: Callable[[int], None]) -> int:
        """Feed until the launch ends or max_photos were attempted; returns the number of events published."""
        published = 0
        timeout = aiohttp.ClientTimeout(total=UPLOAD_TIMEOUT_S)
        # DummyCookieJar: each request carries only its own visitor's cookies, never ones the service set for an
        # earlier simulated visitor
        async with aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as session:
            for minute, batch in minutes:
                await pacer.wait_for_minute(minute)
                visitor_events: list[Event] = []
                for event in batch:
                    if isinstance(event, PhotoUploaded):
                        if sum(self.outcomes.values()) >= self.max_photos:
                            continue
                        await self.upload(session, event)
                    elif not isinstance(event, PIPELINE_TYPES):
                        restamped = self.restamp(event)
                        if isinstance(restamped, RatingSubmitted):
                            restamped = await self.with_real_genders(session, restamped)
                        if restamped is not None:
                            visitor_events.append(restamped)
                if visitor_events:
                    await self._publisher.publish_many(visitor_events)
                    published += len(visitor_events)
                progress(1)
                if sum(self.outcomes.values()) >= self.max_photos:
                    break
        return published
