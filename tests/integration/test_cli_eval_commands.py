"""``howhot eval faces|age`` and ``howhot train dex --mode full`` end to end on a tiny labelled folder (no shared data).

They run the real detector and ensemble in a subprocess, the way a user runs them, so they also prove the wiring: the
scoring package's offline tools get their face detector from the CLI (``libs.cli``), not by importing the face
service. The folder holds the astronaut photo (one adult face, public domain) in three sizes and formats.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 600


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("astronauts")
    (root / "images").mkdir()
    photo = Image.fromarray(data.astronaut())
    files = {"a.jpg": photo, "b.png": photo.resize((320, 320)), "c.jpg": photo.convert("L").convert("RGB")}
    with (root / "labels.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "age", "gender"])
        for name, image in files.items():
            image.save(root / "images" / name)
            writer.writerow([name, 44, 1])  # Eileen Collins was born in 1956; the photo is from ~2000
    return root


def run_howhot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "libs.cli.main", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def howhot(*args: str, cwd: Path) -> dict:
    return json.loads(run_howhot(*args, cwd=cwd).stdout)


def test_eval_faces_finds_every_face(dataset: Path, tmp_path: Path) -> None:
    report = howhot("eval", "faces", "--dataset", str(dataset), "--json", cwd=tmp_path)
    assert report["images"] == 3
    assert report["detection_rate"] == 1.0
    assert report["mean_faces_per_image"] == pytest.approx(1.0)


def test_eval_age_runs_the_whole_pipeline(dataset: Path, tmp_path: Path) -> None:
    report = howhot("eval", "age", "--dataset", str(dataset), "--json", "--no-progress",
                    "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert report["n"] == 3 and report["failures"] == 0
    # one adult face: a sane age, not a precise one (the default ensemble reads this made-up, smiling studio portrait
    # of a 44-year-old at about 28 on average over the three copies: every member reads her young, the ArcFace
    # member most)
    assert report["mae"] < 20
    assert report["gender_accuracy"] >= 2 / 3  # the colour photos are read as female; the grey copy is the hard one
    assert set(report["member_mae"]) >= {"agegender_cc0_age", "wrn16_8_imdbwiki", "dex_head_arcface"}


def test_train_full_on_a_folder_detects_once_and_skips_unreadable_files(dataset: Path, tmp_path: Path) -> None:
    """The folder path of full training: the detector-only landmark pass, a member saved, a bad file named."""
    folder = tmp_path / "set"
    shutil.copytree(dataset, folder)
    (folder / "images" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")  # hash split: a train-portion name
    with (folder / "labels.csv").open("a", newline="") as fh:
        csv.writer(fh).writerow(["broken.jpg", 30, 0])
    args = ("train", "dex", "--mode", "full", "--data", str(folder), "--backbone", "agegender_cc0",
            "--members", "1", "--epochs", "1", "--val-fraction", "0", "--device", "cpu", "--workers", "0",
            "--no-progress")
    done = run_howhot(*args, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert "face landmarks of 3 train-portion photos: 3 detected now" in done.stderr
    assert "1 unreadable images skipped (first: broken.jpg" in done.stderr
    saved = [Path(line) for line in done.stdout.split()]
    assert len(saved) == 1 and saved[0].exists()
    again = run_howhot(*args, "--out", str(tmp_path / "again"), cwd=tmp_path)
    assert "face landmarks of 3 train-portion photos: 0 detected now" in again.stderr


def test_eval_age_member_gender_accuracy_counts_the_labelled_faces(dataset: Path, tmp_path: Path) -> None:
    """One face without a gender label: the members' accuracies are still given, over the labelled faces."""
    folder = tmp_path / "set"
    shutil.copytree(dataset, folder)
    (folder / "labels.csv").write_text("file,age,gender\na.jpg,44,1\nb.png,44,\nc.jpg,44,1\n")
    report = howhot("eval", "age", "--dataset", str(folder), "--json", "--no-progress",
                    "--cache-dir", str(tmp_path / "cache"), cwd=tmp_path)
    assert report["n"] == 3 and "gender_accuracy" in report
    assert set(report["gender_member_accuracy"]) >= {"agegender_cc0_gender", "wrn16_8_imdbwiki"}
    assert all(0 <= v <= 1 for v in report["gender_member_accuracy"].values())


def test_eval_age_on_bad_labels_says_what_to_fix_without_a_traceback(dataset: Path, tmp_path: Path) -> None:
    folder = tmp_path / "set"
    shutil.copytree(dataset, folder)
    (folder / "labels.csv").write_text("file,age,gender\na.jpg,44,1\nb.png,44,unknown\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "libs.cli.main", "eval", "age", "--dataset", str(folder), "--json"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "line 3: gender 'unknown'" in done.stderr
