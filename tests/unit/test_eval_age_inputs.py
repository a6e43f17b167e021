"""A user's own labelled folder: labels.csv as spreadsheets write it, bad cells, unreadable and replaced images.

Fast: no networks (``extract`` runs with no members and a detector that finds nothing, so a row is the whole-image
fallback, whose landmarks follow the image size).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from services.scoring.evaluation.data import DatasetError, read_age_samples
from services.scoring.evaluation.extract import STAMP_KEY, cache_path, extract, load_cache, save_cache


def _labels(folder: Path, text: str, encoding: str = "utf-8") -> Path:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels.csv").write_bytes(text.encode(encoding))
    return folder


def test_labels_saved_with_a_byte_order_mark_and_crlf_are_read(tmp_path: Path) -> None:
    _labels(tmp_path, "file,age,gender\r\na.jpg,30,1\r\nb.jpg,41,0\r\n", "utf-8-sig")  # Excel's "CSV UTF-8"
    samples = read_age_samples(tmp_path)
    assert [(s.file, s.age, s.female) for s in samples] == [("a.jpg", 30.0, 1.0), ("b.jpg", 41.0, 0.0)]


def test_nan_cells_count_as_missing_not_as_an_age(tmp_path: Path) -> None:
    _labels(tmp_path, "file,age,gender,apparent_age_std\na.jpg,30,NaN,nan\nb.jpg,NaN,0,2\n")
    samples = read_age_samples(tmp_path)
    assert [s.file for s in samples] == ["a.jpg"]  # b has no age: skipped, not scored as a NaN-year-old
    assert samples[0].female is None and samples[0].age_std is None


def test_gender_as_letters_or_words(tmp_path: Path) -> None:
    _labels(tmp_path, "file,age,gender\na.jpg,30,F\nb.jpg,31,m\nc.jpg,32,Female\nd.jpg,33,male\ne.jpg,34,\n")
    assert [s.female for s in read_age_samples(tmp_path)] == [1.0, 0.0, 1.0, 0.0, None]


@pytest.mark.parametrize(("text", "message"), [
    ("file,age,gender\na.jpg,30,1\nb.jpg,31,x\n", r"line 3: gender 'x'"),
    ("file,age\na.jpg,thirty\n", r"line 2: column 'age' holds 'thirty'"),
    ("image,age\na.jpg,30\n", r"no 'file' column"),
])
def test_bad_labels_raise_a_dataset_error_naming_the_cell(tmp_path: Path, text: str, message: str) -> None:
    _labels(tmp_path, text)
    with pytest.raises(DatasetError, match=message):
        read_age_samples(tmp_path)


def test_apparent_age_spread_is_not_applied_to_the_real_age(tmp_path: Path) -> None:
    _labels(tmp_path, "file,real_age,apparent_age,apparent_age_std\na.jpg,50,40,3\n")
    assert read_age_samples(tmp_path, "apparent_age")[0].age_std == 3.0
    real = read_age_samples(tmp_path, "real_age")[0]
    assert real.age == 50.0 and real.age_std is None  # no ε-error of a real age against the voters' σ


class _NoFaces:
    def __init__(self) -> None:
        self.calls = 0

    def detect_batch(self, images: list[np.ndarray]) -> list[list[object]]:
        self.calls += 1
        return [[] for _ in images]


def _photo(path: Path, size: int) -> None:
    Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(path)


def _extract(folder: Path, cache: Path, detector: object) -> dict:
    return extract(read_age_samples(folder), folder, members=(), cache_dir=cache, progress=False, detector=detector)


def test_a_replaced_image_is_computed_again(tmp_path: Path) -> None:
    folder = _labels(tmp_path / "set", "file,age\na.png,30\nb.png,40\n")
    _photo(folder / "images" / "a.png", 100)
    _photo(folder / "images" / "b.png", 100)
    first = _extract(folder, tmp_path / "cache", _NoFaces())
    _photo(folder / "images" / "a.png", 300)  # same name, another photo
    detector = _NoFaces()
    second = _extract(folder, tmp_path / "cache", detector)
    assert detector.calls == 1  # only a.png ran again
    assert second["a.png"]["landmarks"].max() > 2 * first["a.png"]["landmarks"].max()  # the new, larger photo's
    np.testing.assert_array_equal(second["b.png"]["landmarks"], first["b.png"]["landmarks"])


def test_a_cache_from_before_file_stamps_stays_valid(tmp_path: Path) -> None:
    folder = _labels(tmp_path / "set", "file,age\na.png,30\n")
    _photo(folder / "images" / "a.png", 100)
    _extract(folder, tmp_path / "cache", _NoFaces())
    path = cache_path(folder, "detect", (), tmp_path / "cache")
    rows = load_cache(path)
    for row in rows.values():
        del row[STAMP_KEY]
    save_cache(path, rows)
    detector = _NoFaces()
    assert STAMP_KEY in _extract(folder, tmp_path / "cache", detector)["a.png"]
    assert detector.calls == 0  # adopted, not recomputed


def test_unreadable_images_are_named_and_the_readable_ones_cached(tmp_path: Path) -> None:
    folder = _labels(tmp_path / "set", "file,age\na.png,30\ngone.jpg,40\nbad.jpg,50\n")
    _photo(folder / "images" / "a.png", 100)
    (folder / "images" / "bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DatasetError, match=r"2 image\(s\).*bad\.jpg.*gone\.jpg"):
        _extract(folder, tmp_path / "cache", _NoFaces())
    assert set(load_cache(cache_path(folder, "detect", (), tmp_path / "cache"))) == {"a.png"}
