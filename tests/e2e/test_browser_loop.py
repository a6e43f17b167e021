"""The viral loop in a real browser (headless Chromium via Playwright) against the local stack: open the site, upload
the astronaut, watch the result appear, share it, open the share page like a friend would, on a desktop and a phone.

Screenshots land in test-artifacts/browser/ (look at them: layout bugs do not fail assertions).

Two tests:
- ``test_viral_loop`` drives the real pipeline. Until the face, scoring and share services have a ``__main__`` (the
  stack starts only those that do), it stops with a skip at the first step that needs them and says which.
- ``test_result_page_shows_stage_output`` uploads a faceless photo (no_face explained), then writes a result
  document itself, so a scored face, the personal score, share and delete are tested whatever the models say.
"""

from __future__ import annotations

import asyncio
import io
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from PIL import Image

from libs.cli.stack import SERVICES, LocalStack
from libs.common import keys
from libs.common.blobs import LocalBlobStore
from libs.common.documents import PhotoMeta, ResultDocument
from libs.common.events import utcnow

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

REPO_ROOT = Path(__file__).resolve().parents[2]
SHOTS = REPO_ROOT / "test-artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
RESULT_TIMEOUT_MS = 90_000  # face detection + scoring on a cold 2-core machine
UI_TIMEOUT_MS = 15_000
VIEWPORTS = {
    "desktop": {"viewport": {"width": 1280, "height": 900}},
    "phone": {
        "viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2
    },
}
FACELESS_SIZE = (640, 480)
# A result the scoring stage could write for the faceless photo: one adult face, scored, with a personal score and
# the visitors' verdict (as the upload service merges them in from the scoring service).
SYNTHETIC_FACE = {
    "index": 0, "box": [220.0, 120.0, 420.0, 360.0], "age": 38.4, "age_low": 33.2, "age_high": 44.5,
    "p_female": 0.93, "gender": "female", "attractiveness": 7.4, "attractiveness_word": "Hot", "withheld_reason": None,
    "personal_score": 8.1, "crowd_ratings": 12, "crowd_score": 6.9,
}


def implemented(name: str) -> bool:
    return next(s for s in SERVICES if s.name == name).implemented()


def browser_executable() -> str | None:
    return shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = browser_executable()
    if executable is None:
        pytest.skip("Chromium not found: install it with `apt-get install -y chromium` (as root) to run browser tests")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def astronaut_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "astronaut.jpg"
    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, "JPEG", quality=92)
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture(scope="module")
def faceless_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smooth gradient: a valid photo in which no detector finds a face."""
    import numpy as np

    width, height = FACELESS_SIZE
    ramp = np.linspace(40, 220, width, dtype=np.uint8)
    pixels = np.stack([np.tile(ramp, (height, 1)), np.full((height, width), 90, np.uint8),
                       np.tile(ramp[::-1], (height, 1))], axis=-1)
    path = tmp_path_factory.mktemp("photos") / "gradient.jpg"
    Image.fromarray(pixels).save(path, "JPEG", quality=90)
    return path


@pytest.fixture(params=sorted(VIEWPORTS))
def page(request: pytest.FixtureRequest, browser) -> Iterator[object]:
    context = browser.new_context(**VIEWPORTS[request.param])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    page.device_name = request.param  # type: ignore[attr-defined]
    yield page
    context.close()
    assert not errors, f"JavaScript errors or CSP violations: {errors}"


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}-{page.device_name}.png"), full_page=True)


def upload_through_ui(page, base: str, photo: Path) -> str:
    """Open the landing page, pick the photo, land on the result page; returns the photo id."""
    page.goto(f"{base}/?utm_source=e2e&utm_medium=browser")
    assert page.get_by_role("heading", level=1).is_visible()
    camera_visible = page.locator("label[for=camera-input]").is_visible()
    assert camera_visible == (page.device_name == "phone")  # the selfie button only on touch screens
    page.screenshot(path=str(SHOTS / f"01-landing-viewport-{page.device_name}.png"))
    shot(page, "01-landing")
    page.set_input_files("#photo-input", str(photo))
    page.wait_for_url(re.compile(r"/p/[A-Za-z0-9_-]{16,64}$"), timeout=UI_TIMEOUT_MS)
    photo_id = page.url.rsplit("/", 1)[1]
    assert page.evaluate(f"localStorage.getItem('howhot:delete-token:{photo_id}')")
    assert page.evaluate("window.Howhot.latestOwnPhoto()") == photo_id  # rate.js sends it with each rating
    page.locator("#photo").wait_for(state="visible", timeout=UI_TIMEOUT_MS)
    assert page.locator("#owner-actions").is_visible()
    shot(page, "02-processing")
    return photo_id


def wait_for_result(page) -> None:
    page.locator(".face-box").first.wait_for(state="visible", timeout=RESULT_TIMEOUT_MS)
    assert page.locator(".face-age").first.is_visible()
    assert re.search(r"\d", page.locator(".age-value").first.inner_text())
    assert page.locator("[data-step=scored].done").is_visible()


def press_share(page, base: str) -> str:
    page.get_by_role("button", name="Share my result").click()
    url_box = page.locator("#share-url")
    page.locator("#share-url:visible, #status-message.error, #status-message.warn").first.wait_for(
        timeout=UI_TIMEOUT_MS
    )
    assert url_box.is_visible(), page.locator("#status-message").inner_text()
    share_url = url_box.input_value()
    assert re.fullmatch(rf"{re.escape(base)}/s/[A-Za-z0-9_-]{{16,64}}", share_url), share_url
    assert "twitter.com/intent/tweet" in page.locator("#share-x").get_attribute("href")
    assert page.locator("#share-whatsapp").get_attribute("href").startswith("https://wa.me/")
    return share_url


def test_viral_loop(stack: LocalStack, page, astronaut_file: Path) -> None:
    base = stack.urls()["upload"]
    upload_through_ui(page, base, astronaut_file)
    assert all(implemented(name) for name in ("face", "scoring", "share")), "the stack lacks a pipeline service"
    wait_for_result(page)
    shot(page, "03-result")
    share_url = press_share(page, base)
    shot(page, "04-shared")
    friend = page.context.browser.new_context(**VIEWPORTS[page.device_name])
    try:
        share_page = friend.new_page()
        response = share_page.goto(share_url)
        assert response.status == 200
        meta = {
            name: share_page.locator(f"meta[property='{name}'], meta[name='{name}']").first.get_attribute("content")
            for name in ("og:title", "og:image", "og:image:width", "og:image:height", "twitter:card")
        }
        assert meta["og:title"]
        assert meta["og:image"].startswith(base + "/cards/"), meta
        assert int(meta["og:image:width"]) > 0 and int(meta["og:image:height"]) > 0
        assert meta["twitter:card"] == "summary_large_image"
        image = requests.get(meta["og:image"], timeout=30)
        assert image.status_code == 200 and image.headers["Content-Type"].startswith("image/png")
        card = Image.open(io.BytesIO(image.content))
        card.load()  # the whole PNG arrived through the proxy, not just its first chunk
        assert card.size == (int(meta["og:image:width"]), int(meta["og:image:height"]))
        share_page.wait_for_load_state("networkidle")
        share_page.screenshot(path=str(SHOTS / f"05-share-page-{page.device_name}.png"), full_page=True)
    finally:
        friend.close()
    delete_through_ui(page, base)


def delete_through_ui(page, base: str) -> None:
    """The owner deletes: confirm, 'Deleted.' shown, the API answers 410 from then on."""
    photo_id = page.url.rsplit("/", 1)[1]
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete my photo").click()
    page.get_by_text("Deleted.").wait_for(timeout=UI_TIMEOUT_MS)
    assert not page.locator("#photo").is_visible()
    assert requests.get(f"{base}/api/v1/photos/{photo_id}", timeout=5).status_code == 410
    shot(page, "06-deleted")


def write_result(stack: LocalStack, photo_id: str) -> str:
    """Stand in for the scoring stage: write results/{photo_id}.json; returns the photo's pre-allocated share id."""

    async def go() -> str:
        blobs = LocalBlobStore(stack.settings.blob_dir)
        doc = ResultDocument(photo_id=photo_id, status="done", faces=[SYNTHETIC_FACE],
                             model_versions={"e2e": "synthetic"}, scored_at=utcnow())
        await blobs.put(keys.result(photo_id), doc.model_dump_json().encode(), "application/json")
        meta = PhotoMeta.model_validate_json((await blobs.get(keys.meta(photo_id))).data)
        await blobs.close()
        assert meta.share_id
        return meta.share_id

    with ThreadPoolExecutor(max_workers=1) as pool:  # Playwright's sync API owns this thread's event loop
        return pool.submit(asyncio.run, go()).result()


def test_result_page_shows_stage_output(stack: LocalStack, page, faceless_file: Path) -> None:
    """A photo without a face first shows the no_face explanation; then we write the result document the scoring
    stage would have written (nothing else writes one for a faceless photo, so no race with the real stages) and
    check boxes, score word, personal score, share and delete."""
    base = stack.urls()["upload"]
    photo_id = upload_through_ui(page, base, faceless_file)
    page.locator("#status-message.error").wait_for(timeout=RESULT_TIMEOUT_MS)
    assert "couldn’t find a face" in page.locator("#status-message").inner_text()
    assert page.locator("[data-step=faces].failed").is_visible()
    shot(page, "03-no-face")
    share_id = write_result(stack, photo_id)
    page.reload()
    wait_for_result(page)
    box = page.locator(".face-box").first.bounding_box()
    frame = page.locator("#photo").bounding_box()
    assert box and frame and 0.25 * frame["width"] < box["width"] < 0.5 * frame["width"]  # scaled to the image
    assert page.locator(".word-hot").first.is_visible()
    assert "8.1" in page.locator(".face-personal").inner_text()
    assert page.locator(".face-crowd").inner_text() == "Rated by 12 visitors: 6.9 / 10"
    assert page.locator(".age-range").first.inner_text() == " (33–45)"
    shot(page, "03-result-synthetic")

    share_url = press_share(page, base)
    assert share_url == f"{base}/s/{share_id}"
    assert Path(stack.settings.blob_dir, keys.share(share_id)).exists()
    shot(page, "04-shared-synthetic")
    delete_through_ui(page, base)
    assert not Path(stack.settings.blob_dir, keys.share(share_id)).exists()


def test_rate_page(stack: LocalStack, page) -> None:
    """Faces to rate, or the friendly empty state while the rating API is missing (404) or has nobody to show."""
    base = stack.urls()["upload"]
    page.goto(f"{base}/rate")
    page.locator("#rate-card:visible, #rate-empty:visible").first.wait_for(timeout=UI_TIMEOUT_MS)
    if page.locator("#rate-card").is_visible():
        page.keyboard.press("ArrowRight")  # a vote by keyboard moves on without errors
    shot(page, "07-rate")


def face_shown(page) -> None:
    """Wait until the rate page shows its face: rate.js ignores votes until the image has loaded (aria-busy false)."""
    page.locator('#rate-card[aria-busy="false"]').wait_for(state="visible", timeout=UI_TIMEOUT_MS)


def test_rate_page_votes_name_the_browsers_latest_photo(stack: LocalStack, page) -> None:
    """rate.js sends rater_photo_id = the newest photo this browser uploaded and still owns (the rating records the
    gender of its face 0), and leaves it out when the browser owns none. The faces to rate are stubbed: the stack's
    pool may be empty."""
    base = stack.urls()["upload"]
    faces = [{"rate_id": f"stubbedFace{n:010d}", "face_index": 0, "image_url": "/static/favicon.svg"}
             for n in range(4)]
    page.route("**/api/v1/rate/next*", lambda route: route.fulfill(json={"faces": faces}))
    page.route("**/api/v1/ratings", lambda route: route.fulfill(status=202, json={"status": "accepted"}))

    def vote(key: str) -> dict:
        with page.expect_request(lambda r: r.url.endswith("/api/v1/ratings") and r.method == "POST") as posted:
            page.keyboard.press(key)
        return posted.value.post_data_json

    page.goto(f"{base}/rate")
    face_shown(page)  # a key pressed before the image loaded is ignored, and no request would come
    first = vote("ArrowRight")
    assert first["rating"] == 1 and "rater_photo_id" not in first  # this browser owns no photo
    assert first["rate_id"] == faces[0]["rate_id"] and "photo_id" not in first  # raters know faces by rate id
    older, newer = "ownPhotoOfThisBrowser01", "ownPhotoOfThisBrowser02"
    for own in (older, newer):  # what upload.js does when an upload is accepted
        page.evaluate(f"window.Howhot.setToken('{own}', 'token'); window.Howhot.rememberUpload('{own}')")
    assert vote("ArrowLeft")["rater_photo_id"] == newer
    page.evaluate(f"window.Howhot.removeToken('{newer}')")  # deleted on its result page
    assert vote("ArrowRight")["rater_photo_id"] == older


def test_rate_page_keeps_votes_when_its_remembered_photo_is_refused(stack: LocalStack, page) -> None:
    """A browser that remembers a photo its (new) visitor cookie does not own gets 403 not_your_photo: the vote is
    sent again without it, and later votes leave it out, instead of every vote being lost without a word."""
    base = stack.urls()["upload"]
    faces = [{"rate_id": f"stubbedFace{n:010d}", "face_index": 0, "image_url": "/static/favicon.svg"}
             for n in range(4)]
    posted: list[dict] = []

    def ratings(route) -> None:
        body = route.request.post_data_json
        posted.append(body)
        if "rater_photo_id" in body:
            route.fulfill(status=403, json={"error": {"code": "not_your_photo", "message": "not yours"}})
        else:
            route.fulfill(status=202, json={"status": "accepted"})

    def until_posted(count: int) -> None:
        for _ in range(UI_TIMEOUT_MS // 100):
            if len(posted) >= count:
                return
            page.wait_for_timeout(100)  # lets Playwright dispatch the routed requests meanwhile
        raise AssertionError(f"{len(posted)} rating requests, expected {count}: {posted}")

    page.route("**/api/v1/rate/next*", lambda route: route.fulfill(json={"faces": faces}))
    page.route("**/api/v1/ratings", ratings)
    page.goto(f"{base}/rate")
    face_shown(page)
    own = "someoneElsesPhoto0001"
    page.evaluate(f"window.Howhot.setToken('{own}', 't'); window.Howhot.rememberUpload('{own}')")
    page.keyboard.press("ArrowRight")
    until_posted(2)
    page.keyboard.press("ArrowLeft")
    until_posted(3)
    assert [("rater_photo_id" in b, b["rate_id"]) for b in posted] == [
        (True, faces[0]["rate_id"]), (False, faces[0]["rate_id"]), (False, faces[1]["rate_id"])]


def test_back_from_the_result_page_can_upload_again(stack: LocalStack, browser, faceless_file: Path) -> None:
    """Browsers keep the landing page in the back/forward cache: Back from the result page restores it as it was left
    (busy, pickers disabled, "Opening your result…") unless upload.js resets it on pageshow. Playwright turns that
    cache off by default, so this test runs a Chromium that has it, as visitors' browsers do. The upload is stubbed:
    only the landing page's state matters here."""
    base = stack.urls()["upload"]
    chromium = browser.browser_type.launch(
        executable_path=browser_executable(), args=CHROMIUM_ARGS, headless=True,
        ignore_default_args=["--disable-back-forward-cache"],
    )
    try:
        page = chromium.new_page()
        page.add_init_script("addEventListener('pageshow', e => { window.restoredFromCache = e.persisted; })")
        accepted = {"photo_id": "AAAAAAAAAAAAAAAAAAAAAA", "status_url": "", "delete_token": "t", "trace_id": "t"}
        page.route("**/api/v1/photos", lambda route: route.fulfill(status=202, json=accepted))
        page.goto(f"{base}/")
        page.set_input_files("#photo-input", str(faceless_file))
        page.wait_for_url(f"**/p/{accepted['photo_id']}", timeout=UI_TIMEOUT_MS)
        page.go_back(wait_until="commit")  # a page restored from the cache fires no load event
        page.wait_for_function("window.restoredFromCache !== undefined", timeout=UI_TIMEOUT_MS)
        assert page.evaluate("window.restoredFromCache"), "not restored from the back/forward cache: nothing tested"
        assert page.locator("#photo-input").is_enabled()
        assert not page.locator("#progress-wrap").is_visible()
        assert "is-busy" not in page.locator("#upload-form").get_attribute("class")
    finally:
        chromium.close()


def test_rate_page_votes_only_on_a_face_that_is_shown(stack: LocalStack, page) -> None:
    """A double click (or a held arrow key) must not vote on the next face while its image is still loading: the
    visitor never saw it. Face images are stubbed; the second one is held back until the test releases it."""
    base = stack.urls()["upload"]
    faces = [{"rate_id": f"stubbedFace{n:010d}", "face_index": 0, "image_url": f"/stubbed-chip/{n}.svg"}
             for n in range(4)]
    svg = '<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>'
    held: list = []
    posted: list[dict] = []

    def chip(route) -> None:
        if route.request.url.endswith("/0.svg"):
            route.fulfill(content_type="image/svg+xml", body=svg)
        else:
            held.append(route)

    def ratings(route) -> None:
        posted.append(route.request.post_data_json)
        route.fulfill(status=202, json={"status": "accepted"})

    page.route("**/api/v1/rate/next*", lambda route: route.fulfill(json={"faces": faces}))
    page.route("**/stubbed-chip/*", chip)
    page.route("**/api/v1/ratings", ratings)
    page.goto(f"{base}/rate")
    page.locator("#rate-card").wait_for(state="visible", timeout=UI_TIMEOUT_MS)
    face_shown(page)
    page.get_by_role("button", name="Hot").dblclick()
    page.keyboard.press("ArrowLeft")
    page.wait_for_timeout(500)  # lets Playwright dispatch any further rating request
    assert [b["rate_id"] for b in posted] == [faces[0]["rate_id"]]
    for route in held:
        route.fulfill(content_type="image/svg+xml", body=svg)
    face_shown(page)
    page.keyboard.press("ArrowLeft")
    page.wait_for_timeout(500)
    assert [(b["rate_id"], b["rating"]) for b in posted] == [(faces[0]["rate_id"], 1), (faces[1]["rate_id"], 0)]


def test_result_page_delete_keeps_keyboard_focus(stack: LocalStack, page) -> None:
    """Deleting hides the owner actions, the pressed button with them: focus moves to the "Deleted." message instead
    of falling back to the page's top. Status and delete answers are stubbed (a done result, then deleted)."""
    base = stack.urls()["upload"]
    photo_id = "AAAAAAAAAAAAAAAAAAAAAA"
    done = {"photo_id": photo_id, "status": "done", "faces": [SYNTHETIC_FACE]}

    def photo(route) -> None:
        if route.request.method == "DELETE":
            route.fulfill(json={"photo_id": photo_id, "status": "deleted"})
        else:
            route.fulfill(json=done)

    page.route(f"**/api/v1/photos/{photo_id}", photo)
    page.add_init_script(f"localStorage.setItem('howhot:delete-token:{photo_id}', 'token')")
    page.goto(f"{base}/p/{photo_id}")
    page.locator(".face-box").first.wait_for(state="attached", timeout=UI_TIMEOUT_MS)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete my photo").focus()
    page.keyboard.press("Enter")
    page.get_by_text("Deleted.").wait_for(timeout=UI_TIMEOUT_MS)
    assert page.evaluate("document.activeElement.id") == "status-message"


def test_rate_page_running_out_of_faces_keeps_keyboard_focus(stack: LocalStack, page) -> None:
    """The last vote hides the card and its buttons: focus moves to the empty state's heading (so it is read out)."""
    base = stack.urls()["upload"]
    batches = [[{"rate_id": "stubbedFace0000000000", "face_index": 0, "image_url": "/static/favicon.svg"}]]
    page.route("**/api/v1/rate/next*", lambda route: route.fulfill(json={"faces": batches.pop() if batches else []}))
    page.route("**/api/v1/ratings", lambda route: route.fulfill(status=202, json={"status": "accepted"}))
    page.goto(f"{base}/rate")
    page.locator("#rate-card").wait_for(state="visible", timeout=UI_TIMEOUT_MS)
    face_shown(page)
    page.get_by_role("button", name="Hot").focus()
    page.keyboard.press("Enter")
    page.locator("#rate-empty").wait_for(state="visible", timeout=UI_TIMEOUT_MS)
    assert page.evaluate("document.activeElement.id") == "rate-empty-title"
