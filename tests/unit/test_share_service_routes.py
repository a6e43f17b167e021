"""The share service over HTTP, through the real app factory (LocalBlobStore + RecordingPublisher, no consumer):
404 until the owner shares, then a page with exact preview tags and absolute URLs, cookies, share.viewed published in
the background, the card served as PNG (rendered on demand if the consumer has not got to it), escaping, headers."""

from __future__ import annotations

import asyncio
import io
import math
from datetime import UTC, datetime
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from skimage import data

from libs.common import keys
from libs.common.blobs import LocalBlobStore
from libs.common.bus import RecordingPublisher
from libs.common.deletion import erase_photo
from libs.common.documents import PhotoMeta, ResultDocument, ShareRecord
from libs.common.events import FaceResult, PhotoScored, ShareViewed
from libs.common.ids import new_id
from libs.common.settings import CoreSettings, Settings
from services.share.app import create_app
from services.share.cards import card_key, silhouette
from services.share.handlers import ShareHandlers
from services.share.layout import CardFormat, format_spec
from services.share.lookup import ShareLookup
from services.share.render import CardRenderer
from services.share.routes import CONTENT_SECURITY_POLICY

BASE_URL = "https://howhot.example"
ASTRONAUT_FACE_BOX = (130, 30, 320, 220)  # the face in skimage's astronaut (public domain NASA photo)
CHIP_SIZE = 256
THIRTY_DAYS_S = 30 * 24 * 3600
EVENT_WAIT_S = 5.0
ADULT = FaceResult(
    index=0, age=33.6, age_low=29.2, age_high=38.9, p_female=0.9, gender="female",
    attractiveness=7.4, attractiveness_word="Hot",
)


class MetaTags(HTMLParser):
    """Collects <meta property|name=… content=…>, <title>, <img> and <a> attributes of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.meta: dict[str, str] = {}
        self.images: list[dict[str, str | None]] = []
        self.links: list[dict[str, str | None]] = []
        self.scripts = 0
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "meta" and (a.get("property") or a.get("name")):
            self.meta[a.get("property") or a.get("name") or ""] = a.get("content") or ""
        elif tag == "img":
            self.images.append(a)
        elif tag == "a":
            self.links.append(a)
        elif tag == "script":
            self.scripts += 1
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, text: str) -> None:
        if self._in_title:
            self.title += text


def parse(page: str) -> MetaTags:
    parser = MetaTags()
    parser.feed(page)
    return parser


def chip_png() -> bytes:
    chip = Image.fromarray(data.astronaut()).crop(ASTRONAUT_FACE_BOX).resize((CHIP_SIZE, CHIP_SIZE))
    buf = io.BytesIO()
    chip.save(buf, "PNG")
    return buf.getvalue()


async def seed_scored_photo(
    store: LocalBlobStore, face: FaceResult = ADULT, *, store_photo: bool = True, visitor_id: str | None = None
) -> tuple[str, str]:
    """A scored photo as upload, face and scoring leave it (no card yet, not shared yet)."""
    photo_id, share_id = new_id(), new_id()
    meta = PhotoMeta(
        photo_id=photo_id, created_at=datetime.now(UTC), delete_token_sha256="0" * 64, width=512, height=512,
        share_id=share_id, store_photo=store_photo, visitor_id=visitor_id,
    )
    await store.put(keys.meta(photo_id), meta.model_dump_json().encode(), "application/json")
    await store.put(keys.chip(photo_id, 0), chip_png(), "image/png")
    result = ResultDocument(
        photo_id=photo_id, status="done", scored_at=datetime.now(UTC),
        faces=[{**face.model_dump(mode="json"), "box": [0, 0, 100, 100]}],  # extra fields are ignored
    )
    await store.put(keys.result(photo_id), result.model_dump_json().encode(), "application/json")
    return photo_id, share_id


async def press_share(store: LocalBlobStore, photo_id: str, share_id: str) -> None:
    """What the upload service writes when the owner presses share."""
    record = ShareRecord(share_id=share_id, photo_id=photo_id, created_at=datetime.now(UTC))
    await store.put(keys.share(share_id), record.model_dump_json().encode(), "application/json")


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path)


@pytest.fixture
def events() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
async def client(aiohttp_client: Any, store: LocalBlobStore, events: RecordingPublisher) -> Any:
    settings = Settings(core=CoreSettings(public_base_url=BASE_URL))
    return await aiohttp_client(create_app(settings, blob_store=store, publisher=events, consume=False))


async def wait_for_views(events: RecordingPublisher, count: int = 1) -> list[ShareViewed]:
    """share.viewed is sent in the background: wait briefly for it to arrive."""
    deadline = asyncio.get_running_loop().time() + EVENT_WAIT_S
    while len(events.of_type(ShareViewed)) < count and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    return events.of_type(ShareViewed)  # type: ignore[return-value]


def cookies_of(response: Any) -> SimpleCookie:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):
        jar.load(header)
    return jar


async def test_no_page_and_no_card_before_the_owner_shares(
    client: Any, store: LocalBlobStore, events: RecordingPublisher
) -> None:
    _, share_id = await seed_scored_photo(store)
    page = await client.get(f"/s/{share_id}")
    assert page.status == 404
    assert page.content_type == "text/html"
    assert "never shared" in (await page.text())
    assert "Set-Cookie" not in page.headers
    card = await client.get(f"/cards/{share_id}/og.png")
    assert card.status == 404
    for bad in ("short", "..%2F..%2Fetc", "x" * 65):
        assert (await client.get(f"/s/{bad}")).status == 404
    await asyncio.sleep(0.05)
    assert events.events == []


async def test_shared_page_has_exact_preview_tags_with_absolute_urls(client: Any, store: LocalBlobStore) -> None:
    photo_id, share_id = await seed_scored_photo(store)
    await press_share(store, photo_id, share_id)
    response = await client.get(f"/s/{share_id}")
    assert response.status == 200
    assert response.content_type == "text/html"
    tags = parse(await response.text())
    title = "I look 34 — and I'm 'Hot' on Howhot"
    og_image = f"{BASE_URL}/cards/{share_id}/og.png"
    assert tags.title == title
    assert tags.meta["og:title"] == tags.meta["twitter:title"] == title
    assert tags.meta["og:description"] == tags.meta["twitter:description"]
    assert "34 (29–39)" in tags.meta["og:description"] and "7.4/10" in tags.meta["og:description"]
    assert tags.meta["og:image"] == tags.meta["twitter:image"] == og_image
    assert tags.meta["og:image:width"] == "1200"
    assert tags.meta["og:image:height"] == "630"
    assert tags.meta["og:image:type"] == "image/png"
    assert tags.meta["og:image:alt"].startswith("Howhot result card: age guess 34")
    assert tags.meta["og:url"] == f"{BASE_URL}/s/{share_id}"
    assert tags.meta["og:type"] == "website"
    assert tags.meta["twitter:card"] == "summary_large_image"
    assert [img["src"] for img in tags.images] == [f"/cards/{share_id}/og.png"]
    cta = [a for a in tags.links if a.get("class") == "cta"]
    assert [a["href"] for a in cta] == [f"/?ref={share_id}"]
    assert "How old do you look? Try it yourself" in await response.text()
    assert tags.scripts == 0


async def test_minor_page_says_age_only(client: Any, store: LocalBlobStore) -> None:
    minor = FaceResult(index=0, age=14.2, age_low=11, age_high=17, p_female=0.3, gender="male")
    photo_id, share_id = await seed_scored_photo(store, minor)
    await press_share(store, photo_id, share_id)
    page = await (await client.get(f"/s/{share_id}")).text()
    tags = parse(page)
    assert tags.meta["og:title"] == "I look 14 on Howhot"
    assert "/10" not in page and "hotness" not in page.lower()


async def test_page_sets_cookies_and_publishes_share_viewed_with_attribution(
    client: Any, store: LocalBlobStore, events: RecordingPublisher
) -> None:
    photo_id, share_id = await seed_scored_photo(store)
    await press_share(store, photo_id, share_id)
    response = await client.get(
        f"/s/{share_id}?utm_source=x&utm_medium=social&utm_campaign=launch",
        headers={"Referer": "https://t.co/abc", "User-Agent": "Mozilla/5.0 (iPhone)"},
    )
    assert response.status == 200
    jar = cookies_of(response)
    ref = jar["hh_ref"]
    assert ref.value == share_id
    assert ref["samesite"] == "Lax"
    assert int(ref["max-age"]) == THIRTY_DAYS_S
    assert ref["path"] == "/"
    assert ref["secure"]  # the public site is https
    visitor = jar["hh_vid"].value

    cta = [a["href"] for a in parse(await response.text()).links if a.get("class") == "cta"]
    assert cta == [f"/?ref={share_id}&utm_source=x&utm_medium=social&utm_campaign=launch"]  # campaign carried on

    (viewed,) = await wait_for_views(events)
    assert viewed.share_id == share_id
    assert viewed.photo_id == photo_id
    assert viewed.visitor_id == visitor
    assert viewed.referrer == "https://t.co/abc"
    assert viewed.attribution.share_id == share_id
    assert (viewed.attribution.utm_source, viewed.attribution.utm_medium) == ("x", "social")
    assert viewed.attribution.utm_campaign == "launch"


async def test_a_returning_visitor_keeps_their_id(
    client: Any, store: LocalBlobStore, events: RecordingPublisher
) -> None:
    photo_id, share_id = await seed_scored_photo(store)
    await press_share(store, photo_id, share_id)
    visitor = new_id()
    response = await client.get(f"/s/{share_id}", headers={"Cookie": f"hh_vid={visitor}"})
    assert "hh_vid" not in cookies_of(response)
    (viewed,) = await wait_for_views(events)
    assert viewed.visitor_id == visitor


async def test_the_owner_viewing_their_own_share_is_neither_a_referral_nor_a_view(
    client: Any, store: LocalBlobStore, events: RecordingPublisher
) -> None:
    """Else every sharer who checks their page and uploads again counts as their own referral (K-factor)."""
    owner, friend = new_id(), new_id()
    photo_id, share_id = await seed_scored_photo(store, visitor_id=owner)
    await press_share(store, photo_id, share_id)
    mine = await client.get(f"/s/{share_id}", headers={"Cookie": f"hh_vid={owner}"})
    assert mine.status == 200
    assert "hh_ref" not in cookies_of(mine)
    theirs = await client.get(f"/s/{share_id}", headers={"Cookie": f"hh_vid={friend}"})
    assert cookies_of(theirs)["hh_ref"].value == share_id
    (viewed,) = await wait_for_views(events)  # only the friend's view
    assert viewed.visitor_id == friend
    await asyncio.sleep(0.2)
    assert [e.visitor_id for e in events.of_type(ShareViewed)] == [friend]


async def test_link_preview_crawlers_are_not_counted_as_views(
    client: Any, store: LocalBlobStore, events: RecordingPublisher
) -> None:
    photo_id, share_id = await seed_scored_photo(store)
    await press_share(store, photo_id, share_id)
    ua = "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"
    assert (await client.get(f"/s/{share_id}", headers={"User-Agent": ua})).status == 200
    await asyncio.sleep(0.05)
    assert events.of_type(ShareViewed) == []


async def test_card_is_served_as_png_with_cache_headers_and_etag(
    client: Any, store: LocalBlobStore, events: RecordingPublisher
) -> None:
    photo_id, share_id = await seed_scored_photo(store)
    handlers = ShareHandlers(store, RecordingPublisher(), CardRenderer(), BASE_URL)
    await handlers.on_photo_scored(PhotoScored(photo_id=photo_id, result_key="r", faces=[ADULT], elapsed_ms=1))
    await press_share(store, photo_id, share_id)
    for fmt, size in {"og": (1200, 630), "square": (1080, 1080), "story": (1080, 1920)}.items():
        response = await client.get(f"/cards/{share_id}/{fmt}.png")
        assert response.status == 200
        assert response.content_type == "image/png"
        body = await response.read()
        assert body == (await store.get(card_key(photo_id, fmt))).data
        assert Image.open(io.BytesIO(body)).size == size
        assert response.headers["Cache-Control"].startswith("public, max-age=")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        etag = response.headers["ETag"]
        again = await client.get(f"/cards/{share_id}/{fmt}.png", headers={"If-None-Match": etag})
        assert again.status == 304
    assert (await client.get(f"/cards/{share_id}/huge.png")).status == 404


async def test_a_card_not_rendered_yet_is_rendered_on_demand(client: Any, store: LocalBlobStore) -> None:
    photo_id, share_id = await seed_scored_photo(store)
    await press_share(store, photo_id, share_id)
    response = await client.get(f"/cards/{share_id}/square.png")
    assert response.status == 200
    assert await response.read() == (await store.get(card_key(photo_id, "square"))).data
    # …and it is the very card the consumer would have rendered (same key, same bytes):
    handlers = ShareHandlers(store, RecordingPublisher(), CardRenderer(), BASE_URL)
    before = (await store.get(card_key(photo_id, "square"))).data
    await handlers.on_photo_scored(PhotoScored(photo_id=photo_id, result_key="r", faces=[ADULT], elapsed_ms=1))
    assert (await store.get(card_key(photo_id, "square"))).data == before


def face_circle(png: bytes, fmt: CardFormat) -> np.ndarray:
    """The pixels inside the card's face circle (its inscribed square)."""
    spec = format_spec(fmt)
    x0, y0, x1, y1 = _inscribed(spec.face_diameter)
    ox, oy = spec.face_center[0] - spec.face_diameter // 2, spec.face_center[1] - spec.face_diameter // 2
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB").crop((ox + x0, oy + y0, ox + x1, oy + y1)))


async def test_a_photo_its_owner_did_not_keep_is_shared_with_a_silhouette_never_its_face(
    client: Any, store: LocalBlobStore
) -> None:
    """"Don't keep my photo": the share consumer may get photo.scored before scoring discards the chip. The public
    card must not carry the face either way, and once the chip is gone the card still renders (on demand)."""
    photo_id, share_id = await seed_scored_photo(store, store_photo=False)
    handlers = ShareHandlers(store, RecordingPublisher(), CardRenderer(), BASE_URL)
    await handlers.on_photo_scored(PhotoScored(photo_id=photo_id, result_key="r", faces=[ADULT], elapsed_ms=1))
    og = (await store.get(card_key(photo_id, "og"))).data
    expected = silhouette(format_spec("og").face_diameter)
    circle = face_circle(og, "og").astype(int)
    inner = np.asarray(expected.crop(_inscribed(expected.width)), dtype=int)
    assert np.abs(circle - inner).max() <= 1  # the silhouette, pixel for pixel…
    kept_id, _ = await seed_scored_photo(store)  # …where a kept photo's card shows the face
    await handlers.on_photo_scored(PhotoScored(photo_id=kept_id, result_key="r", faces=[ADULT], elapsed_ms=1))
    assert np.abs(face_circle((await store.get(card_key(kept_id, "og"))).data, "og").astype(int) - inner).mean() > 20

    await store.delete_prefix(keys.cards_prefix(photo_id))
    await store.delete_prefix(keys.chips_prefix(photo_id))  # what scoring's discard leaves
    await press_share(store, photo_id, share_id)
    response = await client.get(f"/cards/{share_id}/square.png")
    assert response.status == 200  # before: 404 "card not ready", for good
    square = await response.read()
    assert np.abs(face_circle(square, "square").astype(int) - inner).max() <= 1


def _inscribed(diameter: int) -> tuple[int, int, int, int]:
    half = round(diameter / 2 / math.sqrt(2)) - 2
    c = diameter // 2
    return (c - half, c - half, c + half, c + half)


async def test_a_photo_not_scored_yet_answers_404_with_retry_after(client: Any, store: LocalBlobStore) -> None:
    photo_id, share_id = await seed_scored_photo(store)
    await store.delete(keys.result(photo_id))
    await press_share(store, photo_id, share_id)
    response = await client.get(f"/cards/{share_id}/og.png")
    assert response.status == 404
    assert int(response.headers["Retry-After"]) > 0
    page = await client.get(f"/s/{share_id}")  # the page itself works, with a generic title
    assert page.status == 200
    assert parse(await page.text()).meta["og:title"] == "See my result on Howhot"


async def test_a_deleted_photo_has_no_page_and_no_card(client: Any, store: LocalBlobStore) -> None:
    photo_id, share_id = await seed_scored_photo(store)
    await press_share(store, photo_id, share_id)
    await store.put(keys.tombstone(photo_id), b"{}", "application/json")  # mid-deletion: the record is still there
    page = await client.get(f"/s/{share_id}")
    assert page.status == 410
    assert "deleted" in await page.text()
    assert (await client.get(f"/cards/{share_id}/og.png")).status == 404
    await erase_photo(store, photo_id, share_id=share_id, reason="owner")  # deleted: the record is gone
    page = await client.get(f"/s/{share_id}")
    assert page.status == 410 and "deleted" in await page.text()
    assert (await client.get(f"/cards/{share_id}/og.png")).status == 404


async def test_a_deleted_photo_that_was_never_shared_stays_never_shared(client: Any, store: LocalBlobStore) -> None:
    photo_id, share_id = await seed_scored_photo(store)  # the share id is allocated at upload, public only on share
    await erase_photo(store, photo_id, share_id=share_id, reason="owner")
    page = await client.get(f"/s/{share_id}")
    assert page.status == 404 and "never shared" in await page.text()


async def test_untrusted_text_is_escaped(client: Any, store: LocalBlobStore) -> None:
    evil = ADULT.model_copy(update={"attractiveness_word": '"><script>alert(1)</script>'})
    photo_id, share_id = await seed_scored_photo(store, evil)
    await press_share(store, photo_id, share_id)
    page = await (await client.get(f"/s/{share_id}")).text()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    assert "&quot;&gt;&lt;script&gt;" in page  # cannot close the attribute it lands in
    tags = parse(page)
    assert tags.scripts == 0
    assert tags.meta["og:title"] == "I look 34 — and I'm '\"><script>alert(1)</script>' on Howhot"


async def test_security_headers_on_every_response(client: Any, store: LocalBlobStore) -> None:
    photo_id, share_id = await seed_scored_photo(store)
    await press_share(store, photo_id, share_id)
    for path in (f"/s/{share_id}", f"/s/{new_id()}", f"/cards/{new_id()}/og.png", "/s/static/share.css"):
        response = await client.get(path)
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, path
        assert response.headers["X-Content-Type-Options"] == "nosniff", path
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    for directive in ("default-src 'self'", "img-src 'self' data:", "style-src 'self'", "frame-ancestors 'none'"):
        assert directive in CONTENT_SECURITY_POLICY
    css = await client.get("/s/static/share.css")
    assert css.status == 200 and css.content_type == "text/css"


async def test_healthz_reports_a_warm_renderer(client: Any) -> None:
    deadline = asyncio.get_running_loop().time() + 30
    while (response := await client.get("/healthz")).status != 200:
        assert asyncio.get_running_loop().time() < deadline, await response.text()
        await asyncio.sleep(0.05)
    assert (await response.json())["checks"]["card_renderer_warm"] is True


class CountingRenderer(CardRenderer):
    """The real renderer, counting how often it is asked to draw."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def render(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return await super().render(*args, **kwargs)


async def test_a_burst_of_requests_for_a_fresh_share_renders_once(store: LocalBlobStore) -> None:
    photo_id, share_id = await seed_scored_photo(store)
    await press_share(store, photo_id, share_id)
    renderer = CountingRenderer()
    lookup = ShareLookup(ShareHandlers(store, RecordingPublisher(), renderer, BASE_URL))
    share = await lookup.load_share(share_id)
    assert share is not None
    formats = ["og", "square", "story"] * 3
    pngs = await asyncio.gather(*(lookup.card_png(share, fmt) for fmt in formats))  # type: ignore[arg-type]
    assert renderer.calls == 3  # once per format, however many asked
    assert await lookup.card_png(share, "og") == pngs[0]  # stored: no fourth render
    assert renderer.calls == 3
    for fmt, png in zip(formats, pngs, strict=True):
        assert png == (await store.get(card_key(photo_id, fmt))).data  # type: ignore[arg-type]
