"""Attribution flows from the website's cookies into the upload's PhotoUploaded: a visitor who landed through a share
(?ref= or the share service's hh_ref cookie) and a utm-tagged link carries both into their own upload."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import FormData

from libs.common import keys
from libs.common.blobs import LocalBlobStore
from libs.common.bus import RecordingPublisher
from libs.common.documents import PhotoMeta, ShareRecord
from libs.common.events import Attribution, PhotoUploaded
from libs.common.settings import CoreSettings, Settings
from services.upload.app import create_app
from services.upload.web.visitor import LANDING_COOKIE, REFERRAL_COOKIE, VISITOR_COOKIE

SHARE_ID = "FriendsShareFriendsSh1"



@pytest.fixture(autouse=True)
def _log_everything(caplog: pytest.LogCaptureFixture) -> None:
    """Emit INFO records, so a bad ``extra`` key (e.g. one LogRecord reserves) fails here, not in production."""
    caplog.set_level(logging.INFO)

@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
async def client(aiohttp_client, store: LocalBlobStore, publisher: RecordingPublisher):
    settings = Settings(core=CoreSettings(public_base_url="http://howhot.test"))
    return await aiohttp_client(create_app(settings, blob_store=store, publisher=publisher))


async def upload(client, photo: bytes) -> str:
    form = FormData()
    form.add_field("photo", photo, filename="me.jpg", content_type="image/jpeg")
    response = await client.post("/api/v1/photos", data=form)
    assert response.status == 202, await response.text()
    return (await response.json())["photo_id"]


def uploaded(publisher: RecordingPublisher) -> PhotoUploaded:
    [event] = publisher.of_type(PhotoUploaded)
    return event


async def test_landing_referral_and_utm_reach_the_upload(client, store, publisher, astronaut_jpeg: bytes) -> None:
    landing = await client.get(
        f"/?ref={SHARE_ID}&utm_source=whatsapp&utm_medium=share&utm_content=card",
        headers={"Referer": "https://l.facebook.com/"},
    )
    visitor_id = landing.cookies[VISITOR_COOKIE].value
    photo_id = await upload(client, astronaut_jpeg)
    event = uploaded(publisher)
    assert event.visitor_id == visitor_id
    assert event.attribution == Attribution(
        share_id=SHARE_ID, referrer="https://l.facebook.com/", utm_source="whatsapp", utm_medium="share",
        utm_content="card",
    )
    meta = PhotoMeta.model_validate_json((await store.get(keys.meta(photo_id))).data)
    assert meta.visitor_id == visitor_id


async def test_share_service_cookie_is_honoured(client, publisher, astronaut_jpeg: bytes) -> None:
    """The share page (/s/{id}, served by the share service through our proxy) sets hh_ref and hh_vid itself."""
    client.session.cookie_jar.update_cookies({REFERRAL_COOKIE: SHARE_ID, VISITOR_COOKIE: "SharePageVisitor123456"})
    await client.get("/")  # an internal navigation: no utm, no external referrer
    await upload(client, astronaut_jpeg)
    event = uploaded(publisher)
    assert event.visitor_id == "SharePageVisitor123456"
    assert event.attribution == Attribution(share_id=SHARE_ID)


async def test_a_visitor_is_not_credited_as_their_own_referral(client, store, publisher, astronaut_jpeg: bytes) -> None:
    """An owner who opens their own share page gets hh_ref of it; their next upload must not count as a share's."""
    client.session.cookie_jar.update_cookies({VISITOR_COOKIE: "SharerVisitor123456789"})
    first = await upload(client, astronaut_jpeg)
    own_share = PhotoMeta.model_validate_json((await store.get(keys.meta(first))).data).share_id
    assert own_share is not None
    record = ShareRecord(share_id=own_share, photo_id=first, created_at=datetime.now(UTC))
    await store.put(keys.share(own_share), record.model_dump_json().encode(), "application/json")
    client.session.cookie_jar.update_cookies({REFERRAL_COOKIE: own_share})
    await client.get(f"/?ref={own_share}&utm_source=whatsapp")  # the share page's "try it" link, too
    await upload(client, astronaut_jpeg)
    again = publisher.of_type(PhotoUploaded)[-1]
    assert again.attribution == Attribution(utm_source="whatsapp")  # the campaign stays; the share is not credited

    client.session.cookie_jar.update_cookies({VISITOR_COOKIE: "FriendVisitor1234567890"})  # a friend: credited
    await upload(client, astronaut_jpeg)
    assert publisher.of_type(PhotoUploaded)[-1].attribution == Attribution(share_id=own_share, utm_source="whatsapp")


async def test_api_clients_without_cookies_still_work(client, publisher, astronaut_jpeg: bytes) -> None:
    await upload(client, astronaut_jpeg)
    event = uploaded(publisher)
    assert event.visitor_id is None and event.attribution == Attribution()


@pytest.mark.parametrize("landing", [
    "!!notbase64!!",
    base64.urlsafe_b64encode(b"[" * 1400).decode().rstrip("="),  # JSON nested past the parser's recursion limit
])
async def test_malformed_cookies_are_ignored(client, publisher, astronaut_jpeg: bytes, landing: str) -> None:
    client.session.cookie_jar.update_cookies(
        {VISITOR_COOKIE: "x", REFERRAL_COOKIE: "../../etc", LANDING_COOKIE: landing}
    )
    await upload(client, astronaut_jpeg)
    event = uploaded(publisher)
    assert event.visitor_id is None and event.attribution == Attribution()


async def test_own_site_referrer_does_not_overwrite_the_landing(client, publisher, astronaut_jpeg: bytes) -> None:
    await client.get("/?utm_source=tiktok")
    await client.get("/privacy", headers={"Referer": f"http://{client.server.host}:{client.server.port}/"})
    await upload(client, astronaut_jpeg)
    assert uploaded(publisher).attribution.utm_source == "tiktok"
