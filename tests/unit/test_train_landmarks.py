"""The landmark pass of folder training: the real detector alone, append-only shards, evaluation-cache reuse."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from libs.common.settings import Settings
from services.scoring.evaluation.data import AgeSample
from services.scoring.evaluation.extract import BACKBONE_MEMBERS, PIPELINE_KEY, cache_path, save_cache
from services.scoring.evaluation.faces import chip_for, fallback_landmarks
from services.scoring.training import landmarks as landmarks_module
from services.scoring.training.landmarks import folder_landmarks, read_shards, shard_dir


class CountingDetector:
    """The real detector, counting the photos it is asked about."""

    def __init__(self) -> None:
        from services.face.detector import FaceDetector
        from services.face.models.convert_tf_graph import fetch

        settings = Settings()
        fetch(settings.models_dir, progress=False)
        self.inner = FaceDetector.from_settings(settings, precision="fp32")
        self.photos = 0

    def detect_batch(self, images: list[np.ndarray]) -> Sequence[Sequence[object]]:
        self.photos += len(images)
        return self.inner.detect_batch(images)


@pytest.fixture(scope="module")
def detector() -> CountingDetector:
    return CountingDetector()


@pytest.fixture
def folder(tmp_path: Path) -> tuple[Path, list[AgeSample]]:
    """The astronaut twice, a face-less noise image and a file that is not an image."""
    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    photo = Image.fromarray(data.astronaut())
    photo.save(root / "images" / "a.jpg")
    photo.resize((300, 300)).save(root / "images" / "b.png")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(root / "images" / "noise.png")
    (root / "images" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    names = ["a.jpg", "b.png", "noise.png", "broken.jpg"]
    return root, [AgeSample(n, root / "images" / n, 40.0) for n in names]


def test_landmarks_are_the_evaluation_pipelines_choice_and_bad_files_are_named(
        folder: tuple[Path, list[AgeSample]], detector: CountingDetector, tmp_path: Path) -> None:
    root, samples = folder
    found = folder_landmarks(samples, root, detector=detector, workers=1, cache_dir=tmp_path / "marks",
                             evaluation_cache_dir=tmp_path / "eval", progress=False)
    image = np.asarray(Image.open(root / "images" / "a.jpg").convert("RGB"))
    expected = chip_for(image, detector.inner.detect_batch([image])[0]).image_landmarks
    np.testing.assert_allclose(found.landmarks["a.jpg"], expected, atol=1e-4)
    np.testing.assert_allclose(found.landmarks["noise.png"], fallback_landmarks(90, 120))
    assert set(found.landmarks) == {"a.jpg", "b.png", "noise.png"}
    assert list(found.unreadable) == ["broken.jpg"] and found.unreadable["broken.jpg"]
    assert found.detected == 4


def test_a_second_run_detects_nothing(folder: tuple[Path, list[AgeSample]], detector: CountingDetector,
                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, samples = folder
    monkeypatch.setattr(landmarks_module, "DETECT_BATCH", 2)
    monkeypatch.setattr(landmarks_module, "SHARD_SIZE", 1)  # one shard per detector call
    first = folder_landmarks(samples, root, detector=detector, workers=0, cache_dir=tmp_path / "marks",
                             evaluation_cache_dir=tmp_path / "eval", progress=False)
    shards = sorted(shard_dir(root, tmp_path / "marks").glob("shard-*.npz"))
    assert len(shards) == 2  # two batches of two photos
    before = detector.photos
    again = folder_landmarks(samples, root, detector=detector, workers=0, cache_dir=tmp_path / "marks",
                             evaluation_cache_dir=tmp_path / "eval", progress=False)
    assert detector.photos == before and again.detected == 0
    assert again.unreadable == first.unreadable
    for file, marks in first.landmarks.items():
        np.testing.assert_array_equal(again.landmarks[file], marks)


def test_the_evaluation_cache_is_reused_and_only_the_rest_is_detected(
        folder: tuple[Path, list[AgeSample]], detector: CountingDetector, tmp_path: Path) -> None:
    root, samples = folder
    marked = np.arange(10, dtype=np.float32).reshape(5, 2)
    save_cache(cache_path(root, PIPELINE_KEY, BACKBONE_MEMBERS, tmp_path / "eval"),
               {"a.jpg": {"landmarks": marked, "detected": np.array(True)}})
    before = detector.photos
    found = folder_landmarks(samples, root, detector=detector, workers=0, cache_dir=tmp_path / "marks",
                             evaluation_cache_dir=tmp_path / "eval", progress=False)
    np.testing.assert_array_equal(found.landmarks["a.jpg"], marked)
    assert found.detected == 3 and detector.photos == before + 2  # the unreadable file never reaches the detector
    stored, bad = read_shards(shard_dir(root, tmp_path / "marks"))
    assert set(stored) == {"b.png", "noise.png"} and set(bad) == {"broken.jpg"}


def test_only_the_asked_samples_come_back(folder: tuple[Path, list[AgeSample]], detector: CountingDetector,
                                          tmp_path: Path) -> None:
    root, samples = folder
    folder_landmarks(samples, root, detector=detector, workers=0, cache_dir=tmp_path / "marks",
                     evaluation_cache_dir=tmp_path / "eval", progress=False)
    some = folder_landmarks(samples[:1], root, detector=detector, workers=0, cache_dir=tmp_path / "marks",
                            evaluation_cache_dir=tmp_path / "eval", progress=False)
    assert list(some.landmarks) == ["a.jpg"] and not some.unreadable and some.detected == 0
