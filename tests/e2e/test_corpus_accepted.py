"""Photos people really upload, end to end through the local stack: every encoding we accept reaches a terminal state
with the right outcome, and the stored copy carries no metadata (EXIF, GPS) whatever the upload carried.

All photos are uploaded first and awaited together, so the whole corpus costs one pipeline's worth of waiting.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import requests
from PIL import Image

from libs.cli.stack import LocalStack

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

TERMINAL = frozenset({"done", "no_face", "failed"})
CORPUS_TIMEOUT_S = 300.0  # ten photos on two shared cores, 12 MP and 8-face ones among them
POLL_S = 0.5
TWELVE_MP = (4000, 3000)
GROUP_FACES = 8
# The astronaut's face with a margin (x0, y0, x1, y1) in skimage's 512×512 image: a crop the detector finds alone.
FACE_CROP = (120, 0, 360, 260)
EXIF_ORIENTATION = 0x0112
ORIENTATION_ROTATE_90_CW = 6  # "rotate 90° clockwise to display"
EXIF_GPS_IFD = 0x8825


def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def encode(image: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def cmyk_jpeg() -> bytes:
    return encode(astronaut().convert("CMYK"), "JPEG", quality=90)


def png16() -> bytes:
    gray = np.asarray(astronaut().convert("L"), dtype=np.uint16) * 257  # full 16-bit range
    deep = Image.fromarray(gray)  # uint16 → mode "I;16"
    assert deep.mode == "I;16"
    return encode(deep, "PNG")


def palette_png() -> bytes:
    return encode(astronaut().convert("P", palette=Image.Palette.ADAPTIVE, colors=256), "PNG")


def alpha_png() -> bytes:
    rgba = astronaut().convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size).point(lambda v: 128 + v // 2))
    return encode(rgba, "PNG")


def grayscale_jpeg() -> bytes:
    return encode(astronaut().convert("L"), "JPEG", quality=90)


def progressive_jpeg() -> bytes:
    return encode(astronaut(), "JPEG", quality=90, progressive=True, optimize=True)


def exif_rotated_jpeg_with_gps() -> bytes:
    """Pixels stored lying on their side (90° counter-clockwise) plus the tag a phone writes to stand them up, and a
    GPS position that must never be stored."""
    sideways = astronaut().transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = ORIENTATION_ROTATE_90_CW
    exif[EXIF_GPS_IFD] = {1: "N", 2: (52.0, 22.0, 1.0), 3: "E", 4: (4.0, 53.0, 2.0)}
    return encode(sideways, "JPEG", quality=90, exif=exif)


def twelve_mp_jpeg() -> bytes:
    canvas = Image.new("RGB", TWELVE_MP, (90, 120, 150))
    side = TWELVE_MP[1]
    canvas.paste(astronaut().resize((side, side), Image.Resampling.BICUBIC), ((TWELVE_MP[0] - side) // 2, 0))
    return encode(canvas, "JPEG", quality=85)


def no_face_jpeg() -> bytes:
    from skimage import data

    return encode(Image.fromarray(data.coffee()), "JPEG", quality=90)


def group_jpeg() -> bytes:
    face = astronaut().crop(FACE_CROP)
    cols, rows = 4, GROUP_FACES // 4
    sheet = Image.new("RGB", (face.width * cols, face.height * rows), (240, 240, 240))
    for n in range(GROUP_FACES):
        sheet.paste(face, ((n % cols) * face.width, (n // cols) * face.height))
    return encode(sheet, "JPEG", quality=90)


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], bytes]
    filename: str
    content_type: str
    expect: str  # "face" (done with ≥ min_faces) or "no_face"
    min_faces: int = 1


CASES = [
    Case("cmyk_jpeg", cmyk_jpeg, "cmyk.jpg", "image/jpeg", "face"),
    Case("png_16bit", png16, "deep.png", "image/png", "face"),
    Case("png_palette", palette_png, "palette.png", "image/png", "face"),
    Case("png_alpha", alpha_png, "alpha.png", "image/png", "face"),
    Case("grayscale_jpeg", grayscale_jpeg, "gray.jpg", "image/jpeg", "face"),
    Case("progressive_jpeg", progressive_jpeg, "prog.jpg", "image/jpeg", "face"),
    Case("exif_rotated", exif_rotated_jpeg_with_gps, "phone.jpg", "image/jpeg", "face"),
    Case("twelve_megapixel", twelve_mp_jpeg, "big.jpg", "image/jpeg", "face"),
    Case("no_face", no_face_jpeg, "coffee.jpg", "image/jpeg", "no_face"),
    Case("group_of_8", group_jpeg, "group.jpg", "image/jpeg", "face", min_faces=GROUP_FACES),
]


@pytest.fixture(scope="module")
def outcomes(stack: LocalStack) -> dict[str, dict]:
    """Upload the whole corpus, then wait until every photo is terminal; name → {accepted, final, photo_id}."""
    base = stack.urls()["upload"]
    accepted: dict[str, dict] = {}
    for case in CASES:
        response = requests.post(f"{base}/api/v1/photos",
                                 files={"photo": (case.filename, case.make(), case.content_type)}, timeout=60)
        assert response.status_code == 202, (case.name, response.status_code, response.text)
        accepted[case.name] = response.json()
    final: dict[str, dict] = {}
    deadline = time.monotonic() + CORPUS_TIMEOUT_S
    while len(final) < len(accepted) and time.monotonic() < deadline:
        for name, posted in accepted.items():
            if name not in final:
                doc = requests.get(posted["status_url"], timeout=10).json()
                if doc.get("status") in TERMINAL:
                    final[name] = doc
        time.sleep(POLL_S)
    missing = sorted(set(accepted) - set(final))
    assert not missing, f"not terminal within {CORPUS_TIMEOUT_S} s: {missing}"
    return {name: {"accepted": accepted[name], "final": final[name]} for name in accepted}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_photo_reaches_the_expected_terminal_state(outcomes: dict[str, dict], case: Case) -> None:
    doc = outcomes[case.name]["final"]
    if case.expect == "no_face":
        assert doc["status"] == "no_face", doc
        return
    assert doc["status"] == "done", doc
    assert len(doc["faces"]) >= case.min_faces, (len(doc["faces"]), doc)


def test_stored_photo_has_no_exif_or_gps(stack: LocalStack, outcomes: dict[str, dict]) -> None:
    base = stack.urls()["upload"]
    for name in ("exif_rotated", "cmyk_jpeg", "twelve_megapixel"):
        photo_id = outcomes[name]["accepted"]["photo_id"]
        response = requests.get(f"{base}/api/v1/photos/{photo_id}/image", timeout=10)
        assert response.status_code == 200, response.text
        assert b"Exif" not in response.content[:4096] and b"GPS" not in response.content
        stored = Image.open(io.BytesIO(response.content))
        assert stored.format == "JPEG" and stored.mode == "RGB"
        assert len(stored.getexif()) == 0 and "exif" not in stored.info, name
    upright = Image.open(io.BytesIO(requests.get(
        f"{base}/api/v1/photos/{outcomes['exif_rotated']['accepted']['photo_id']}/image", timeout=10).content))
    as_taken = np.asarray(astronaut().convert("L"), dtype=np.float32)
    stored = np.asarray(upright.convert("L").resize((as_taken.shape[1], as_taken.shape[0])), dtype=np.float32)
    sideways = np.rot90(as_taken)
    # The orientation tag was applied: the stored pixels match the upright photo, not the sideways bytes.
    assert np.abs(stored - as_taken).mean() < np.abs(stored - sideways).mean() / 2


def test_the_exif_upload_really_carried_orientation_and_gps() -> None:
    """Guards the test above: the input must actually hold what the stored copy must not."""
    exif = Image.open(io.BytesIO(exif_rotated_jpeg_with_gps())).getexif()
    assert exif[EXIF_ORIENTATION] == ORIENTATION_ROTATE_90_CW
    assert exif.get_ifd(EXIF_GPS_IFD)
