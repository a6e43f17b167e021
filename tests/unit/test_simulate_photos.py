"""Photos mode against a stand-in upload API (aiohttp): real multipart uploads, ids mapped, pipeline events left out."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from libs.common.events import Attribution, Event, PhotoUploaded, RatingSubmitted
from services.analytics.simulate.feed import PIPELINE_TYPES, Pacer, PhotoFeeder, visitor_cookies
from services.analytics.simulate.generator import LaunchSimulator
from services.analytics.simulate.scenario import LaunchConfig


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish_many(self, events: list[Event]) -> None:
        self.events += events


async def feed_one_hour(server: Any, tmp_path: Path, max_photos: int, visitors: int) -> tuple[PhotoFeeder, Recorder]:
    """One simulated hour (seed 2) fed through ``server`` as the upload API, with one tiny JPEG as every photo."""
    (tmp_path / "face.jpg").write_bytes(b"\xff\xd8 a jpeg")
    publisher = Recorder()
    feeder = PhotoFeeder(str(server.make_url("/")), [tmp_path / "face.jpg"], publisher, max_photos=max_photos)
    config = LaunchConfig(visitors=visitors, duration_h=1.0, start=datetime(2026, 3, 2, 8, tzinfo=UTC), seed=2)
    await feeder.run(LaunchSimulator(config).minutes(), Pacer(0), lambda _: None)
    return feeder, publisher


async def test_photos_are_uploaded_and_visitor_events_follow_real_ids(aiohttp_server, tmp_path: Path) -> None:
    received: list[tuple[str, bytes]] = []
    cookies: list[dict[str, str]] = []

    async def accept(request: web.Request) -> web.Response:
        form = await request.post()
        photo = form["photo"]
        received.append((str(form.get("rateable")), photo.file.read()))  # type: ignore[union-attr]
        cookies.append(dict(request.cookies))
        return web.json_response({"photo_id": f"realPhoto{len(received):012d}"}, status=202)

    app = web.Application()
    app.router.add_post("/api/v1/photos", accept)
    feeder, publisher = await feed_one_hour(await aiohttp_server(app), tmp_path, max_photos=5, visitors=600)

    assert len(received) == 5 and all(body == b"\xff\xd8 a jpeg" for _, body in received)
    assert feeder.outcomes["accepted"] == 5
    assert not any(isinstance(e, PIPELINE_TYPES) for e in publisher.events)  # the real services make those
    photo_ids = {getattr(e, "photo_id", None) for e in publisher.events} - {None}
    assert photo_ids <= set(feeder.real_ids.values())
    assert any(e.type == "page.viewed" for e in publisher.events)
    assert all(len(c["hh_vid"]) >= 16 for c in cookies)  # the upload service reads the visitor from its cookie


def test_visitor_cookies_decode_like_the_upload_service_does() -> None:
    from services.upload.web.visitor import _decode_landing  # the reader of the cookie we imitate

    event = PhotoUploaded(
        photo_id="simPhoto_0123456789ab", blob_key="b", width=1, height=1, size_bytes=1,
        visitor_id="simVisitor_0123456789", attribution=Attribution(
            share_id="simShare_0123456789ab", referrer="https://www.news.example.com/", utm_source="press"),
    )
    cookies = visitor_cookies(event)
    assert cookies["hh_vid"] == "simVisitor_0123456789" and cookies["hh_ref"] == "simShare_0123456789ab"
    assert _decode_landing(cookies["hh_utm"]) == {"referrer": "https://www.news.example.com/", "utm_source": "press"}


async def test_ratings_carry_the_real_photos_genders(aiohttp_server, tmp_path: Path) -> None:
    """Photos mode re-points ratings at real photos: their genders come from those photos' status, as the API's would
    (the rated face's; face 0 of the rater's latest upload), and are None while a photo is not done."""
    accepted: list[str] = []

    async def accept(request: web.Request) -> web.Response:
        await request.post()
        accepted.append(f"realPhoto{len(accepted):012d}")
        return web.json_response({"photo_id": accepted[-1]}, status=202)

    def faces_of(photo_id: str) -> list[dict]:  # odd photos are not scored yet; face 0 female on every 4th
        n = int(photo_id[-12:])
        return [{"index": 0, "gender": "female" if n % 4 == 0 else "male"}, {"index": 1, "gender": "female"}]

    async def status(request: web.Request) -> web.Response:
        photo_id = request.match_info["photo_id"]
        if int(photo_id[-12:]) % 2:
            return web.json_response({"photo_id": photo_id, "status": "scoring"})
        return web.json_response({"photo_id": photo_id, "status": "done", "faces": faces_of(photo_id)})

    app = web.Application()
    app.router.add_post("/api/v1/photos", accept)
    app.router.add_get("/api/v1/photos/{photo_id}", status)
    feeder, publisher = await feed_one_hour(await aiohttp_server(app), tmp_path, max_photos=120, visitors=3000)

    def expected(photo_id: str | None, index: int) -> str | None:
        if photo_id is None or int(photo_id[-12:]) % 2:
            return None
        return {f["index"]: f["gender"] for f in faces_of(photo_id)}.get(index)

    ratings = [e for e in publisher.events if isinstance(e, RatingSubmitted)]
    assert ratings
    for rating in ratings:
        assert rating.rated_gender == expected(rating.photo_id, rating.face_index)
        assert rating.rater_gender == expected(feeder.latest_upload.get(rating.visitor_id), 0)
    assert any(r.rated_gender for r in ratings) and any(r.rater_gender for r in ratings)
    assert any(r.rater_gender is None for r in ratings)
