"""normalize_upload, decode_image_bytes and load_image_file on a hostile and an awkward-but-valid corpus, made here."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms, ImageFile
from skimage import data as skimage_data

from libs.common.images import (
    STORED_CONTENT_TYPE,
    ImageRejected,
    NormalizedImage,
    decode_image_bytes,
    load_image_file,
    normalize_upload,
    sniff_format,
)

MAX_BYTES = 15 * 1024 * 1024  # UploadSettings defaults, so the tests exercise production limits
MAX_PIXELS = 40_000_000
MAX_SIDE = 2048
BOMB_SIDE = 100_000  # 1e10 pixels: ~30 GB as RGB, so any allocation would fail loudly
MAX_MEAN_ABS_ERROR = 6.0  # JPEG round trips at quality ~90 stay well inside this on photos
TWELVE_MP = (4000, 3000)
NORMALIZE_12MP_BUDGET_S = 1.0  # "well under a second" on a laptop; generous for a shared CI core
TIMING_RUNS = 3  # best of three: the cost of the code, not of whatever else shares the CI box
ORIENTATION_TAG = 0x0112
ROTATE_90_CW = 6  # EXIF orientation: the camera was turned; display needs a 90° clockwise rotation
APP0, APP1, APP15, COM, SOS = 0xE0, 0xE1, 0xEF, 0xFE, 0xDA


def normalize(data: bytes, **limits: int) -> NormalizedImage:
    options = {"max_bytes": MAX_BYTES, "max_pixels": MAX_PIXELS, "max_side": MAX_SIDE} | limits
    return normalize_upload(data, **options)


def astronaut(width: int | None = None, height: int | None = None) -> Image.Image:
    image = Image.fromarray(skimage_data.astronaut())
    return image.resize((width, height), Image.Resampling.BICUBIC) if width and height else image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_declaring(width: int, height: int) -> bytes:
    """A well-formed PNG header claiming a huge RGB image, followed by a tiny IDAT (the classic bomb shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 1024))
        + png_chunk(b"IEND", b"")
    )


def mean_abs_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def jpeg_markers(data: bytes) -> list[int]:
    """Marker bytes of every segment before the image data (where all metadata lives)."""
    markers, pos = [], 2
    while pos < len(data):
        assert data[pos] == 0xFF
        marker = data[pos + 1]
        markers.append(marker)
        if marker == SOS:
            break
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    return markers


def assert_rejected(data: bytes, code: str, status: int, **limits: int) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        normalize(data, **limits)
    assert (caught.value.code, caught.value.http_status) == (code, status)
    assert caught.value.message and "PIL" not in caught.value.message and "Error" not in caught.value.message
    return caught.value


# -- rejected -------------------------------------------------------------------------------------------------------


def test_empty_upload_is_rejected_400() -> None:
    assert_rejected(b"", "empty", 400)


def test_oversized_body_is_rejected_413_before_decoding() -> None:
    body = encode(astronaut(), "JPEG")
    assert_rejected(body, "too_large", 413, max_bytes=len(body) - 1)
    assert normalize(body, max_bytes=len(body)).width == 512


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(encode(astronaut(64, 64), "GIF"), id="gif"),
        pytest.param(encode(astronaut(64, 64), "BMP"), id="bmp"),
        pytest.param(encode(astronaut(64, 64), "TIFF"), id="tiff"),
        pytest.param(b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', id="svg"),
        pytest.param(b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>", id="html"),
        pytest.param(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n", id="pdf"),
        pytest.param(np.random.default_rng(7).bytes(4096), id="random"),
        pytest.param(b"RIFF\x00\x00\x00\x00WAVEfmt ", id="riff-wav"),
    ],
)
def test_anything_but_jpeg_png_webp_is_rejected_415_whatever_it_is_called(payload: bytes) -> None:
    assert sniff_format(payload) is None
    assert_rejected(payload, "unsupported_type", 415)


def test_png_declaring_ten_gigapixels_is_rejected_from_the_header_without_allocating() -> None:
    started = time.perf_counter()
    assert_rejected(png_declaring(BOMB_SIDE, BOMB_SIDE), "too_many_pixels", 413)
    assert time.perf_counter() - started < 0.5  # decoding even a sliver of 1e10 pixels would take far longer


def test_our_limit_applies_below_pillows_global_one() -> None:
    body = encode(astronaut(300, 300), "PNG")  # 90k pixels
    assert_rejected(body, "too_many_pixels", 413, max_pixels=60_000)
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS >= MAX_PIXELS  # never lowered for everyone


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    ("pillow_limit", "size"),
    [(60_000, (400, 325)), (80_000, (300, 300))],
    ids=["pillow-error-above-twice-its-limit", "pillow-warning-raised-as-error"],
)
def test_pillows_own_bomb_error_and_warning_map_to_too_many_pixels(
    monkeypatch: pytest.MonkeyPatch, pillow_limit: int, size: tuple[int, int]
) -> None:
    body = encode(astronaut(*size), "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)  # another component set a stricter global limit
    assert_rejected(body, "too_many_pixels", 413, max_pixels=60_000)


def test_image_just_within_the_pixel_limit_is_accepted() -> None:
    assert normalize(encode(astronaut(300, 200), "PNG"), max_pixels=60_000).width == 300


def test_truncated_jpeg_is_rejected_415(monkeypatch: pytest.MonkeyPatch) -> None:
    body = encode(astronaut(), "JPEG", quality=90)
    assert_rejected(body[: len(body) // 2], "undecodable", 415)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # some other library flipped the global
    assert_rejected(body[: len(body) // 2], "undecodable", 415)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\xff\xd8\xff" + np.random.default_rng(3).bytes(2048), id="jpeg-magic-then-noise"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, id="png-magic-then-zeros"),
        pytest.param(encode(astronaut(64, 64), "PNG")[:-40], id="truncated-png"),
        pytest.param(b"RIFF\x10\x00\x00\x00WEBPVP8 garbage", id="broken-webp"),
    ],
)
def test_corrupt_files_of_accepted_types_are_rejected_415(payload: bytes) -> None:
    assert_rejected(payload, "undecodable", 415)


# -- accepted -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "name"), [("JPEG", "jpeg"), ("PNG", "png"), ("WEBP", "webp")])
def test_accepted_formats_round_trip_to_an_rgb_jpeg(fmt: str, name: str) -> None:
    source = astronaut(320, 240)
    result = normalize(encode(source, fmt))
    assert (result.original_format, result.width, result.height) == (name, 320, 240)
    stored = Image.open(io.BytesIO(result.jpeg))
    assert (stored.format, stored.mode, stored.size) == ("JPEG", "RGB", (320, 240))
    assert mean_abs_error(result.rgb(), np.asarray(source)) < MAX_MEAN_ABS_ERROR
    assert STORED_CONTENT_TYPE == "image/jpeg"


def test_cmyk_jpeg_becomes_rgb_with_the_same_colours() -> None:
    source = astronaut(256, 256)
    result = normalize(encode(source.convert("CMYK"), "JPEG", quality=95))
    assert result.image.mode == "RGB"
    assert mean_abs_error(result.rgb(), np.asarray(source)) < MAX_MEAN_ABS_ERROR * 2  # CMYK round trip is lossier


def test_sixteen_bit_png_is_scaled_not_clipped_to_eight_bits() -> None:
    ramp = np.tile(np.linspace(0, 65535, 256, dtype=np.uint16), (64, 1))
    result = normalize(encode(Image.fromarray(ramp), "PNG"))
    pixels = result.rgb()
    assert pixels.shape == (64, 256, 3)
    assert abs(int(pixels[32, 128, 0]) - 128) <= 4  # mid-grey stays mid-grey; clipping would give 255
    assert pixels[32, 0, 0] <= 4 and pixels[32, 255, 0] >= 251


def test_palette_png_with_transparency_is_composited_on_white() -> None:
    palette = Image.new("P", (64, 64), 0)
    palette.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    palette.paste(1, (0, 0, 32, 64))  # left half red, right half index 0 = transparent black
    result = normalize(encode(palette, "PNG", transparency=0)).rgb()
    assert tuple(result[32, 60]) == pytest.approx((255, 255, 255), abs=3)
    assert tuple(result[32, 4]) == pytest.approx((200, 30, 30), abs=12)


def test_sixteen_bit_grayscale_png_with_trns_is_composited_on_white() -> None:
    samples = np.full((32, 48), 32768, np.uint16)  # opaque mid-grey ...
    samples[:, :16] = 0  # ... the tRNS value on the left: transparent
    samples[:, 16:24] = 100  # shares the transparent value's top byte but is not it: opaque near-black
    body = encode(Image.fromarray(samples), "PNG", transparency=0)
    assert Image.open(io.BytesIO(body)).info.get("transparency") == 0  # the test input really carries a tRNS
    for pixels in (decode_image_bytes(body), normalize(body).rgb()):
        assert pixels[16, 4].tolist() == [255, 255, 255]  # transparent -> white, not black
        assert pixels[16, 20].max() <= 4  # opaque near-black stays black
        assert abs(int(pixels[16, 40, 0]) - 128) <= 4


def test_rgba_png_is_composited_on_white_not_black() -> None:
    rgba = astronaut(64, 64).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((64, 64)))  # alpha 0 at top, 255 at bottom
    result = normalize(encode(rgba, "PNG")).rgb()
    assert result[0].mean() > 245  # fully transparent row is white
    assert mean_abs_error(result[-1], np.asarray(rgba.convert("RGB"))[-1]) < MAX_MEAN_ABS_ERROR * 2


def test_la_png_is_composited_on_white() -> None:
    gray = Image.new("LA", (32, 32), (0, 0))
    assert normalize(encode(gray, "PNG")).rgb().min() > 245


def test_grayscale_jpeg_becomes_rgb_with_equal_channels() -> None:
    result = normalize(encode(astronaut(128, 128).convert("L"), "JPEG")).rgb()
    assert result.shape == (128, 128, 3)
    assert np.array_equal(result[..., 0], result[..., 1]) and np.array_equal(result[..., 1], result[..., 2])


def test_progressive_jpeg_is_accepted() -> None:
    source = astronaut()
    result = normalize(encode(source, "JPEG", progressive=True, quality=92))
    assert (result.width, result.height) == (512, 512)
    assert mean_abs_error(result.rgb(), np.asarray(source)) < MAX_MEAN_ABS_ERROR


def test_exif_rotated_photo_is_stored_upright() -> None:
    upright = Image.fromarray(skimage_data.astronaut()[:, :384])  # 384 wide x 512 tall: the face is at the top
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera held sideways writes: 512 x 384
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = ROTATE_90_CW
    result = normalize(encode(sideways, "JPEG", quality=95, exif=exif.tobytes()))
    assert (result.width, result.height) == (384, 512)
    assert mean_abs_error(result.rgb(), np.asarray(upright)) < MAX_MEAN_ABS_ERROR
    assert mean_abs_error(result.rgb(), np.asarray(upright.transpose(Image.Transpose.ROTATE_180))) > 30
    assert Image.open(io.BytesIO(result.jpeg)).getexif().get(ORIENTATION_TAG) is None  # no double rotation later


# A Display P3 matrix/curve profile (D50-adapted primaries, gamma 2.2), built byte by byte: no ICC file ships here.
P3_COLORANTS = ((0.5151, 0.2412, -0.0011), (0.2920, 0.6922, 0.0419), (0.1571, 0.0666, 0.7841))  # rXYZ, gXYZ, bXYZ
SRGB_COLORANTS = ((0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141))
D50 = (0.9642, 1.0, 0.8249)
P3_GAMMA = 2.2


def display_p3_profile() -> bytes:
    """An ICC v2 RGB display profile: header, tag table, desc/cprt/wtpt, colorants and one gamma curve per channel."""
    def s15(x: float) -> bytes:
        return struct.pack(">i", round(x * 65536))

    def xyz(v: tuple[float, ...]) -> bytes:
        return b"XYZ " + bytes(4) + b"".join(s15(c) for c in v)

    name = b"Display P3 (test)\0"
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(P3_GAMMA * 256)) + bytes(2)
    tags = [(b"desc", b"desc" + bytes(4) + struct.pack(">I", len(name)) + name + bytes(8) + bytes(3) + bytes(67)),
            (b"cprt", b"text" + bytes(4) + b"none\0"), (b"wtpt", xyz(D50)),
            *((sig, xyz(c)) for sig, c in zip((b"rXYZ", b"gXYZ", b"bXYZ"), P3_COLORANTS, strict=True)),
            (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset, table, body = 128 + 4 + 12 * len(tags), b"", b""
    for sig, data in tags:
        data += bytes(-len(data) % 4)
        table, body = table + sig + struct.pack(">II", offset + len(body), len(data)), body + data
    size = offset + len(body)
    header = (struct.pack(">I", size) + b"lcms" + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ " + bytes(12) + b"acsp"
              + bytes(28) + b"".join(s15(c) for c in D50) + bytes(48))
    return header + struct.pack(">I", len(tags)) + table + body


def p3_to_srgb(rgb: tuple[int, int, int]) -> np.ndarray:
    """The colour maths itself (linearise, P3 → XYZ D50 → linear sRGB, sRGB curve), independent of LittleCMS."""
    linear = (np.asarray(rgb) / 255) ** P3_GAMMA
    srgb = np.clip(np.linalg.solve(np.array(SRGB_COLORANTS).T, np.array(P3_COLORANTS).T @ linear), 0, 1)
    return 255 * np.where(srgb <= 0.0031308, 12.92 * srgb, 1.055 * srgb ** (1 / 2.4) - 0.055)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_a_display_p3_photo_is_stored_in_srgb(fmt: str) -> None:
    """Phones shoot Display P3. The stored copy drops the profile, so its pixels must be converted, not relabelled:
    left as they are, every iPhone photo was shown and scored dulled (here: red 120 → 105 expected, blue 90 → 77)."""
    colour = (120, 170, 90)
    body = encode(Image.new("RGB", (64, 64), colour), fmt, icc_profile=display_p3_profile(), quality=95)
    stored = normalize(body).rgb().reshape(-1, 3).mean(axis=0)
    expected = p3_to_srgb(colour)
    assert np.abs(stored - expected).max() < 2.5, (stored, expected)
    assert np.abs(expected - np.asarray(colour)).max() > 10  # the test tells the two apart
    assert np.abs(decode_image_bytes(body).reshape(-1, 3).mean(axis=0) - expected).max() < 2.5  # same in decoding


def test_a_broken_or_srgb_profile_leaves_the_pixels_as_decoded() -> None:
    colour = (120, 170, 90)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for icc in (srgb, b"not a profile at all", display_p3_profile()[:100]):
        stored = normalize(encode(Image.new("RGB", (64, 64), colour), "PNG", icc_profile=icc)).rgb()
        assert np.abs(stored.reshape(-1, 3).mean(axis=0) - colour).max() < 2.5


def test_twelve_megapixel_photo_is_downscaled_fast() -> None:
    body = encode(astronaut(*TWELVE_MP), "JPEG", quality=92)
    normalize(encode(astronaut(64, 48), "JPEG"))  # warm up lazy plugin imports
    timings = []
    for _ in range(TIMING_RUNS):
        started = time.perf_counter()
        result = normalize(body)
        timings.append(time.perf_counter() - started)
    assert (result.width, result.height) == (2048, 1536)
    assert min(timings) < NORMALIZE_12MP_BUDGET_S, f"normalizing 12 MP took {min(timings):.2f}s at best"


def test_large_png_is_downscaled_to_max_side_and_small_images_are_not_upscaled() -> None:
    assert (normalize(encode(astronaut(1200, 300), "PNG"), max_side=600).width, 600) == (600, 600)
    assert normalize(encode(astronaut(1200, 300), "PNG"), max_side=600).height == 150
    assert normalize(encode(astronaut(100, 50), "PNG")).width == 100


def test_stored_copy_carries_no_metadata_at_all() -> None:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 1
    exif[ExifTags.Base.Make] = "PhoneCo"
    exif.get_ifd(ExifTags.IFD.GPSInfo).update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 0.0)})
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    body = encode(astronaut(), "JPEG", exif=exif.tobytes(), icc_profile=icc, comment=b"shot at home", xmp=xmp)
    source = Image.open(io.BytesIO(body))
    assert source.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the test input really carries GPS
    assert {"icc_profile", "comment", "xmp"} <= set(source.info)

    result = normalize(body)
    markers = jpeg_markers(result.jpeg)
    assert not [m for m in markers if APP1 <= m <= APP15 or m == COM], [hex(m) for m in markers]
    assert markers.count(APP0) <= 1  # only the JFIF header
    stored = Image.open(io.BytesIO(result.jpeg))
    assert len(stored.getexif()) == 0
    assert not {"exif", "icc_profile", "comment", "xmp"} & set(stored.info)


def test_png_text_and_exif_chunks_do_not_reach_the_stored_copy() -> None:
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "someone private")
    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.GPSInfo).update({1: "N", 2: (52.0, 31.0, 12.0)})
    result = normalize(encode(astronaut(64, 64), "PNG", pnginfo=text, exif=exif.tobytes()))
    assert not [m for m in jpeg_markers(result.jpeg) if APP1 <= m <= APP15 or m == COM]


# -- decode_image_bytes ---------------------------------------------------------------------------------------------


def test_decode_image_bytes_reads_stored_copies_as_rgb_arrays() -> None:
    result = normalize(encode(astronaut(320, 240), "PNG"))
    pixels = decode_image_bytes(result.jpeg)
    assert pixels.shape == (240, 320, 3) and pixels.dtype == np.uint8
    assert mean_abs_error(pixels, result.rgb()) < MAX_MEAN_ABS_ERROR / 2
    pixels[0, 0] = 0  # writable, owned by the caller


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", "empty"),
        (encode(astronaut(32, 32), "GIF"), "unsupported_type"),
        (encode(astronaut(), "JPEG")[:2000], "undecodable"),
        (png_declaring(BOMB_SIDE, BOMB_SIDE), "too_many_pixels"),
    ],
)
def test_decode_image_bytes_applies_the_same_guards(payload: bytes, code: str) -> None:
    with pytest.raises(ImageRejected) as caught:
        decode_image_bytes(payload)
    assert caught.value.code == code


# -- load_image_file ------------------------------------------------------------------------------------------------


def awkward_pngs() -> dict[str, bytes]:
    """PNGs whose plain ``convert("RGB")`` differs from the service's decoding (16-bit, alpha, tRNS, EXIF)."""
    grey16 = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (48, 1))
    transparent16 = grey16.copy()
    transparent16[:, :8] = 0
    palette = Image.new("P", (64, 48), 0)
    palette.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    palette.paste(1, (0, 0, 32, 48))
    rgba = astronaut(64, 48).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((64, 48)))
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = ROTATE_90_CW
    return {
        "grey16": encode(Image.fromarray(grey16), "PNG"),
        "grey16_trns": encode(Image.fromarray(transparent16), "PNG", transparency=0),
        "grey16_exif_rotated": encode(Image.fromarray(grey16), "PNG", exif=exif.tobytes()),
        "palette_trns": encode(palette, "PNG", transparency=0),
        "rgba": encode(rgba, "PNG"),
        "la": encode(Image.new("LA", (64, 48), (0, 0)), "PNG"),
    }


def test_load_image_file_scales_sixteen_bit_pngs_instead_of_clipping(tmp_path: Path) -> None:
    path = tmp_path / "grey16.png"
    path.write_bytes(encode(Image.fromarray(np.full((40, 60), 32768, np.uint16)), "PNG"))
    pixels = load_image_file(path)
    assert pixels.shape == (40, 60, 3) and pixels.dtype == np.uint8
    assert abs(int(pixels[0, 0, 0]) - 128) <= 1  # a plain convert("RGB") clips to 255 (white)


def test_load_image_file_composites_transparency_on_white(tmp_path: Path) -> None:
    path = tmp_path / "transparent.png"
    path.write_bytes(encode(Image.new("RGBA", (60, 40), (0, 0, 0, 0)), "PNG"))
    assert load_image_file(path).min() == 255  # a plain convert("RGB") drops the alpha onto black


@pytest.mark.parametrize("name", sorted(awkward_pngs()))
def test_load_image_file_sees_the_pixels_the_service_decodes(tmp_path: Path, name: str) -> None:
    body = awkward_pngs()[name]
    path = tmp_path / f"{name}.png"
    path.write_bytes(body)
    assert np.array_equal(load_image_file(path), decode_image_bytes(body))


def test_load_image_file_still_reads_trusted_formats_the_upload_path_refuses(tmp_path: Path) -> None:
    path = tmp_path / "dataset.bmp"
    astronaut(32, 24).save(path, "BMP")
    assert load_image_file(path).shape == (24, 32, 3)
    with pytest.raises(ImageRejected):
        decode_image_bytes(path.read_bytes())
