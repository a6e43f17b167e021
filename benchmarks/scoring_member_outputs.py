"""Member outputs on labelled chips, cached for fitting and evaluating the ensemble calibration.

    .venv/bin/python benchmarks/scoring_member_outputs.py --set utk-train --n 1000
    .venv/bin/python benchmarks/scoring_member_outputs.py --set utk-eval --n 500

Writes ``.howhot/scoring_cache/<set>.npz`` (ignored by git; derived from research data, never committed) with,
per member, the age probabilities / P(female) of the crops and of their mirrors (so flip TTA can be switched per
member afterwards), plus the true ages. Chips come from ``services.scoring.chipsource`` (UTKFace crops warped onto the
chip contract with a fixed landmark estimate) because no face detector is wired in yet. Members run at the precision
the scorer uses on CPU (bf16 autocast for the WRN, fp32 for the small CC0 nets).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from libs.common.settings import Settings  # noqa: E402
from services.scoring.evaluate import read_labels, utk_is_eval, utkface_chips  # noqa: E402
from services.scoring.members import member_crops, run_member  # noqa: E402
from services.scoring.models import create_model, list_models, pretrained_config  # noqa: E402
from services.scoring.scorer import CPU_BF16_MEMBERS  # noqa: E402

DATA = REPO.parent / "shared" / "data"
CHUNK = 32


def detected_faces(faces: list) -> tuple[list, object]:
    """Detect and align every photo once (largest face); photos without a face are dropped and counted."""
    from PIL import Image

    from libs.common.alignment import align_face
    from services.face.detector import FaceDetector

    detector = FaceDetector.from_settings()
    kept, chips = [], {}
    for face in faces:
        image = np.asarray(Image.open(face.path).convert("RGB"))
        found = detector.detect(image)
        if found:
            best = max(found, key=lambda f: f.size)
            aligned = align_face(image, best.landmarks_array())
            chips[face.path] = (aligned.chip, aligned.landmarks)
            kept.append(face)
    print(f"detected {len(kept)}/{len(faces)}", flush=True)
    return kept, lambda chunk: [chips[f.path] for f in chunk]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", choices=["utk-train", "utk-eval", "fgnet"], required=True)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / ".howhot" / "scoring_cache")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.set == "fgnet":
        faces = read_labels(DATA / "fgnet", age_column="real_age")
    else:
        faces = [f for f in read_labels(DATA / "utkface") if utk_is_eval(f.path.name) == (args.set == "utk-eval")]
    rng = np.random.default_rng(args.seed)
    faces = [faces[i] for i in sorted(rng.choice(len(faces), min(args.n, len(faces)), replace=False))]
    chip_source = utkface_chips
    if args.set == "fgnet":  # uncropped photos: the face service's RetinaFace + alignment make the chips
        faces, chip_source = detected_faces(faces)
    models = {n: create_model(n, Settings().models_dir).to(memory_format=torch.channels_last) for n in list_models()}
    arrays: dict[str, list[np.ndarray]] = {}
    started = time.time()
    for start in range(0, len(faces), CHUNK):
        chunk = faces[start:start + CHUNK]
        chips = list(chip_source(chunk))
        for name, model in models.items():
            cfg = pretrained_config(name)
            crops = member_crops(cfg, [c for c, _ in chips], [lm for _, lm in chips])
            dtype = torch.bfloat16 if name in CPU_BF16_MEMBERS else None
            for tag, batch in (("", crops), ("_flip", np.ascontiguousarray(crops[:, :, ::-1]))):
                out = run_member(cfg, model, batch, flip=False, autocast_dtype=dtype)
                if out.age_probs is not None:
                    arrays.setdefault(f"{name}{tag}_age_probs", []).append(out.age_probs.astype(np.float32))
                if out.p_female is not None:
                    arrays.setdefault(f"{name}{tag}_p_female", []).append(out.p_female.astype(np.float32))
        print(f"{start + len(chunk)}/{len(faces)} {time.time() - started:.0f}s", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out / f"{args.set}.npz",
        ages=np.array([f.age for f in faces]), female=np.array([f.p_female_true for f in faces], dtype=float),
        files=np.array([f.path.name for f in faces]), **{k: np.concatenate(v) for k, v in arrays.items()},
    )


if __name__ == "__main__":
    main()
