"""Result-card renderer: sizes, valid PNGs, determinism, minors, text fitting, the face, contrast.

One PNG per format (adult and minor) is written to test-artifacts/cards/ so a person can look at them.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from services.share import fonts, palette
from services.share.backdrop import static_layer
from services.share.cards import (
    TEMPLATE_VERSION,
    CardData,
    card_key,
    plan_card,
    render_card,
    warm_caches,
)
from services.share.content import MINOR_LINE, SCORE_SUFFIX
from services.share.fonts import FontUnavailableError, Weight
from services.share.layout import FORMATS
from services.share.png import encode_png
from services.share.textfit import ELLIPSIS, fit_text

ARTIFACT_DIR = Path(__file__).resolve().parents[2] / "test-artifacts" / "cards"
EXPECTED_SIZES = {"og": (1200, 630), "square": (1080, 1080), "story": (1080, 1920)}
ASTRONAUT_FACE_BOX = (130, 30, 320, 220)  # x0, y0, x1, y1: the face in skimage's astronaut (public-domain NASA photo)
CHIP_SIZE = 256
LARGE_TEXT_PX = 24  # WCAG "large text" (bold ≥ 18.7 px; we use 24 to be safe)
FACE_PIXEL_TOLERANCE = 6  # bicubic resampling + anti-aliasing may move a flat colour by a few levels


@pytest.fixture(scope="module")
def chip() -> Image.Image:
    """A 256×256 face chip cut from the astronaut photo, shaped like the face service's aligned chips."""
    return Image.fromarray(data.astronaut()).crop(ASTRONAUT_FACE_BOX).resize((CHIP_SIZE, CHIP_SIZE))


@pytest.fixture(scope="module")
def adult(chip: Image.Image) -> CardData:
    return CardData(
        face=chip,
        age=34,
        age_low=30,
        age_high=38,
        gender="female",
        score=8.7,
        word="Stunning",
        share_url="https://howhot.io/s/AbC123xYz",
    )


@pytest.fixture(scope="module")
def minor(chip: Image.Image) -> CardData:
    return CardData(
        face=np.asarray(chip),
        age=15,
        age_low=13,
        age_high=17,
        gender="female",
        score=None,
        word=None,
        share_url="howhot.io/s/AbC123xYz",
    )


def _decode(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_each_format_is_a_valid_png_of_the_right_size(fmt: str, adult: CardData, minor: CardData) -> None:
    ARTIFACT_DIR.mkdir(parents=True, exist_ok=True)
    for name, card in (("adult", adult), ("minor", minor)):
        png = render_card(card, fmt)  # type: ignore[arg-type]
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        Image.open(io.BytesIO(png)).verify()  # CRCs and structure
        image = _decode(png)
        assert image.format == "PNG"
        assert image.mode == "RGB"
        assert image.size == EXPECTED_SIZES[fmt]
        (ARTIFACT_DIR / f"{fmt}-{name}.png").write_bytes(png)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_equal_input_gives_identical_bytes(fmt: str, adult: CardData) -> None:
    same_from_numpy = CardData(**{**adult.__dict__, "face": np.asarray(adult.face)})
    assert render_card(adult, fmt) == render_card(adult, fmt) == render_card(same_from_numpy, fmt)  # type: ignore[arg-type]


def test_different_input_gives_different_bytes(adult: CardData) -> None:
    other = CardData(**{**adult.__dict__, "score": 6.1, "word": "Nice"})
    assert render_card(adult, "og") != render_card(other, "og")


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_minor_card_shows_age_and_friendly_line_but_no_score(fmt: str, minor: CardData) -> None:
    texts, _ = plan_card(minor, fmt)  # type: ignore[arg-type]
    shown = {t.role: t.text for t in texts}
    assert shown["score"] == "15"
    assert SCORE_SUFFIX not in shown.values()
    assert shown["badge"] == MINOR_LINE
    assert not any("." in t.text and t.text.replace(".", "").isdigit() for t in texts)  # no "8.7"-like number


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_very_long_url_and_word_stay_inside_their_slots(fmt: str, adult: CardData) -> None:
    long_card = CardData(
        **{
            **adult.__dict__,
            "share_url": "https://howhot.io/s/" + "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789" * 6,
            "word": "Supercalifragilisticexpialidocious-Godlike",
            "score": 10.0,
        }
    )
    spec = FORMATS[fmt]
    width, height = spec.size
    texts, pills = plan_card(long_card, fmt)  # type: ignore[arg-type]
    slots = {"link": spec.link, "badge": spec.badge, "details": spec.details, "kicker": spec.kicker}
    for item in texts:
        x0, y0, x1, y1 = item.bbox
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, (item.role, item.bbox)
        if item.role in slots:
            sx0, sy0, sx1, sy1 = slots[item.role].box
            assert sx0 <= x0 and x1 <= sx1 and sy0 <= y0 and y1 <= sy1, (item.role, item.bbox, slots[item.role].box)
    for pill in pills:
        assert pill.box[0] >= 0 and pill.box[2] <= width
    link = next(t for t in texts if t.role == "link")
    assert link.text.endswith(ELLIPSIS)
    assert link.text.startswith("howhot.io/s/")  # scheme dropped, start kept: the domain is the useful part
    render_card(long_card, fmt)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_face_circle_is_drawn_from_the_chip(fmt: str, adult: CardData) -> None:
    colour = (20, 180, 90)
    flat = CardData(**{**adult.__dict__, "face": np.full((CHIP_SIZE, CHIP_SIZE, 3), colour, dtype=np.uint8)})
    spec = FORMATS[fmt]
    cx, cy = spec.face_center
    flat_pixel = _decode(render_card(flat, fmt)).getpixel((cx, cy))  # type: ignore[arg-type]
    assert all(abs(a - b) <= FACE_PIXEL_TOLERANCE for a, b in zip(flat_pixel, colour, strict=True))
    real = _decode(render_card(adult, fmt)).getpixel((cx, cy))  # type: ignore[arg-type]
    chip_centre = adult.face.getpixel((CHIP_SIZE // 2, CHIP_SIZE // 2))  # type: ignore[union-attr]
    assert sum(abs(a - b) for a, b in zip(real, chip_centre, strict=True)) <= 3 * 12


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("who", ["adult", "minor"])
def test_text_has_wcag_contrast_against_what_is_behind_it(fmt: str, who: str, request: pytest.FixtureRequest) -> None:
    card: CardData = request.getfixturevalue(who)
    background = np.asarray(static_layer(fmt, card.brand))
    texts, _ = plan_card(card, fmt)  # type: ignore[arg-type]
    for item in texts:
        needed = palette.WCAG_AA_LARGE if item.font.size >= LARGE_TEXT_PX else palette.WCAG_AA_NORMAL
        if item.backdrop is not None:
            worst = palette.contrast_ratio(item.fill, item.backdrop)
        else:
            x0, y0, x1, y1 = item.bbox
            region = background[y0:y1, x0:x1].reshape(-1, 3)
            colours = np.unique(region, axis=0)
            worst = min(palette.contrast_ratio(item.fill, tuple(int(v) for v in px)) for px in colours)
        assert worst >= needed, (fmt, item.role, round(worst, 2))


def test_fit_text_shrinks_then_ellipsises() -> None:
    roomy = fit_text("Nice", Weight.BOLD, max_width=1000, max_size=40, min_size=12)
    assert roomy.size == 40 and roomy.text == "Nice"
    squeezed = fit_text("Stunning", Weight.BOLD, max_width=120, max_size=40, min_size=12)
    assert 12 <= squeezed.size < 40 and squeezed.width <= 120 and squeezed.text == "Stunning"
    cut = fit_text("x" * 500, Weight.BOLD, max_width=120, max_size=40, min_size=12)
    assert cut.size == 12 and cut.width <= 120 and cut.text.endswith(ELLIPSIS)


def test_png_writer_round_trips_pixels() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    decoded = np.asarray(_decode(encode_png(Image.fromarray(pixels))))
    assert np.array_equal(decoded, pixels)


def test_missing_font_package_fails_with_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    fonts.font_bytes.cache_clear()
    monkeypatch.setattr(fonts, "FONT_PACKAGE", "fontpkg_does_not_exist")
    try:
        with pytest.raises(FontUnavailableError, match="pip install fontpkg-poppins"):
            fonts.font_bytes(Weight.BOLD)
    finally:
        fonts.font_bytes.cache_clear()


def test_rejects_unknown_format_and_impossible_values(adult: CardData) -> None:
    with pytest.raises(ValueError, match="unknown card format"):
        render_card(adult, "banner")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="score"):
        render_card(CardData(**{**adult.__dict__, "score": 11.0}), "og")
    with pytest.raises(ValueError, match="outside its range"):
        render_card(CardData(**{**adult.__dict__, "age": 50}), "og")


def test_card_key_carries_the_template_version() -> None:
    photo_id = "A" * 22
    assert card_key(photo_id, "og") == f"cards/{photo_id}/og-{TEMPLATE_VERSION}.png"


def test_warm_caches_builds_every_static_layer() -> None:
    static_layer.cache_clear()
    warm_caches()
    assert static_layer.cache_info().currsize == len(FORMATS)
