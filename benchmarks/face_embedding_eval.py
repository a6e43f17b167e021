"""What dlib's 128-d face embedding (``dlib_face_embedding``) gives: verification, gender, attractiveness.

    PYTHONPATH=. .venv/bin/python benchmarks/face_embedding_eval.py embed [--data ../shared/data] [--sets fgnet ...]
    PYTHONPATH=. .venv/bin/python benchmarks/face_embedding_eval.py verify|gender|beauty|personalize [--data ...]
    PYTHONPATH=. .venv/bin/python benchmarks/face_embedding_eval.py reference --ref-bin /tmp/dlref/ref --dat FILE

``embed`` computes embeddings (and mirror embeddings) once per data set into .howhot/cache/embedding/, reusing the
landmarks the project already cached (age caches for FG-NET/UTKFace, beauty caches for MEBeauty/FRL London) and the
project's chip pipeline: landmarks → 256-px chip → ``crops.dlib_chip(…, 150, padding 0.25)``. ``reference`` compares
the PyTorch port with dlib's own C++ (benchmarks/face_embedding_dlib_reference.cpp, built against a dlib sdist) on
real chips. Results go to benchmarks/results/face_embedding.md (by hand) and .howhot/results/face_embedding_*.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from services.scoring.evaluation.data import split_portion  # noqa: E402
from services.scoring.training.logistic import logistic_fit  # noqa: E402

CACHE_DIR = REPO / ".howhot/cache/embedding"
RESULTS_DIR = REPO / ".howhot/results"
AGE_SETS = ("fgnet", "utkface")
BEAUTY_SETS = ("mebeauty", "frl_london")


# --- embeddings -------------------------------------------------------------------------------------------------------


def _landmark_source(name: str, data: Path) -> tuple[list[str], np.ndarray, str]:
    """(files, image landmarks [N,5,2], chip builder) from the project's caches for data set ``name``."""
    if name in AGE_SETS:
        from services.scoring.evaluation.extract import BACKBONE_MEMBERS, DEFAULT_CACHE_DIR, PIPELINE_KEY, cache_path

        path = REPO / cache_path(data / name, PIPELINE_KEY, BACKBONE_MEMBERS, DEFAULT_CACHE_DIR)
        builder = "align_face"  # as extract.chip_for made the age caches' chips
    else:
        from services.scoring.beauty.cache import DEFAULT_CACHE_DIR as BEAUTY_CACHE

        path = REPO / BEAUTY_CACHE / f"{name}.landmarks.npz"
        builder = "chips_for"  # as the beauty feature cache made its chips
    if not path.exists():
        raise FileNotFoundError(f"{path}: run the project's feature extraction for {name} first")
    with np.load(path, allow_pickle=False) as cached:
        return [str(f) for f in cached["files"]], cached["landmarks"].astype(np.float64), builder


def face_chips(image: np.ndarray, landmarks: np.ndarray, builder: str) -> np.ndarray:
    """The 150-px dlib chip (padding 0.25) of one face, through the project's 256-px chip contract."""
    from services.scoring.beauty.features import embedding_chips

    if builder == "align_face":
        from libs.common.alignment import align_face

        aligned = align_face(image, landmarks)
        chip, chip_landmarks = aligned.chip, aligned.landmarks
    else:
        from services.scoring.chipsource import chip_from_landmarks

        chip, chip_landmarks = chip_from_landmarks(image, landmarks)
    return embedding_chips([chip], [chip_landmarks])[0]  # as the scoring service cuts them


def embed_set(name: str, data: Path, model: torch.nn.Module, batch: int = 32) -> Path:
    """Embeddings (plain and mirror) of every cached face of ``name``, saved once."""
    from libs.common.images import load_image_file
    from services.scoring.models.dlib_face_embedding import embed

    out = CACHE_DIR / f"{name}.dlib_face_embedding.npz"
    files, landmarks, builder = _landmark_source(name, data)
    if out.exists():
        with np.load(out) as cached:
            if [str(f) for f in cached["files"]] == files:
                return out
    emb, emb_flip = [], []
    started = time.perf_counter()
    for start in range(0, len(files), batch):
        chips = np.stack([face_chips(load_image_file(data / name / "images" / f), lm, builder)
                          for f, lm in zip(files[start:start + batch], landmarks[start:start + batch], strict=True)])
        plain = embed(model, chips)
        mirror = embed(model, chips[:, :, ::-1].copy())
        emb.append(plain)
        emb_flip.append(mirror)
        print(f"\r{name}: {min(start + batch, len(files))}/{len(files)} "
              f"({time.perf_counter() - started:.0f} s)", end="", flush=True)
    print()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part.npz")
    np.savez(tmp, files=np.array(files), emb=np.concatenate(emb), emb_flip=np.concatenate(emb_flip))
    tmp.replace(out)
    return out


def load_embeddings(name: str, flip: bool = False) -> dict[str, np.ndarray]:
    """{file: embedding}; ``flip`` averages each embedding with its mirror's."""
    with np.load(CACHE_DIR / f"{name}.dlib_face_embedding.npz") as cached:
        emb = cached["emb"] if not flip else (cached["emb"] + cached["emb_flip"]) / 2
        return {str(f): e for f, e in zip(cached["files"], emb, strict=True)}


def load_model(models_dir: Path | None, dat: Path | None) -> torch.nn.Module:
    if dat is not None:  # straight from a .dat file (no model cache involved)
        from services.scoring.models.convert_dlib import parse_network
        from services.scoring.models.dlib_face_embedding import dlib_face_embedding, state_dict_from_dlib

        model = dlib_face_embedding()
        model.load_state_dict(state_dict_from_dlib(parse_network(dat.read_bytes())))
        return model.eval()
    from services.scoring.models.embedding_registry import embedding_model

    return embedding_model(models_dir)


# --- metrics ----------------------------------------------------------------------------------------------------------


def roc_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney AUC (ties averaged): P(score of a positive > score of a negative)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    ranks[order] = np.arange(1, len(scores) + 1)
    _, inverse, counts = np.unique(sorted_scores, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks[order])
    ranks[order] = (sums / counts)[inverse]
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pair_distances(emb: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Euclidean distance and same-person flag of every unordered pair (i < j), with the pair indices."""
    i, j = np.triu_indices(len(emb), k=1)
    sq = (emb**2).sum(axis=1)
    dist = np.sqrt(np.maximum(sq[i] + sq[j] - 2 * np.einsum("nd,nd->n", emb[i], emb[j]), 0.0))
    return dist, ids[i] == ids[j], i, j


def verification_report(emb: np.ndarray, ids: np.ndarray, threshold: float) -> dict[str, float]:
    dist, same, _, _ = pair_distances(emb, ids)
    tpr = float((dist[same] < threshold).mean())
    tnr = float((dist[~same] >= threshold).mean())
    # best balanced accuracy over thresholds (an optimistic upper bound, for reference)
    grid = np.linspace(0.2, 1.2, 101)
    balanced = [((dist[same] < t).mean() + (dist[~same] >= t).mean()) / 2 for t in grid]
    best = int(np.argmax(balanced))
    return {
        "pairs_same": int(same.sum()), "pairs_different": int((~same).sum()),
        "roc_auc": roc_auc(-dist, same), "threshold": threshold, "tpr_at_threshold": tpr, "tnr_at_threshold": tnr,
        "balanced_accuracy_at_threshold": (tpr + tnr) / 2,
        "accuracy_all_pairs_at_threshold": float(((dist < threshold) == same).mean()),
        "best_balanced_accuracy": float(balanced[best]), "best_threshold": float(grid[best]),
        "mean_distance_same": float(dist[same].mean()), "mean_distance_different": float(dist[~same].mean()),
    }


def verify(data: Path, flip: bool) -> dict:
    """FG-NET same- vs different-person pairs (all pairs; also adults-only and an age-gap breakdown)."""
    import csv

    from services.scoring.models.dlib_face_embedding import SAME_PERSON_DISTANCE

    with (data / "fgnet/labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    emb_by_file = load_embeddings("fgnet", flip)
    rows = [r for r in rows if r["file"] in emb_by_file]
    emb = np.stack([emb_by_file[r["file"]] for r in rows]).astype(np.float64)
    ids = np.array([int(r["person_id"]) for r in rows])
    ages = np.array([float(r["real_age"]) for r in rows])
    report = {"all": verification_report(emb, ids, SAME_PERSON_DISTANCE)}
    adults = ages >= 18
    report["both_18_plus"] = verification_report(emb[adults], ids[adults], SAME_PERSON_DISTANCE)
    dist, same, i, j = pair_distances(emb, ids)
    gap = np.abs(ages[i] - ages[j])
    bands = {}
    for lo, hi in ((0, 5), (5, 10), (10, 20), (20, 100)):
        pos = same & (gap >= lo) & (gap < hi)
        subset = pos | ~same
        bands[f"age_gap_{lo}_{hi}"] = {"pairs_same": int(pos.sum()), "roc_auc": roc_auc(-dist[subset], pos[subset]),
                                       "tpr_at_threshold": float((dist[pos] < SAME_PERSON_DISTANCE).mean())}
    report["same_person_by_age_gap"] = bands
    return report


def _gender_probe(x: np.ndarray, y: np.ndarray, train: np.ndarray, ages: np.ndarray) -> dict:
    """Standardise on train, pick the L2 strength on every 5th training face, refit on train, score held-out."""
    mean, std = x[train].mean(0), x[train].std(0) + 1e-8
    z = (x - mean) / std
    tr_idx = np.flatnonzero(train)
    inner_val = np.zeros(len(x), bool)
    inner_val[tr_idx[::5]] = True
    inner_tr = train & ~inner_val
    scores = {}
    for l2 in (1e-4, 1e-3, 1e-2, 3e-2, 1e-1):
        w, b = logistic_fit(z[inner_tr], y[inner_tr], l2)
        scores[l2] = float((((z[inner_val] @ w + b) > 0) == (y[inner_val] > 0.5)).mean())
    best = max(scores, key=lambda k: scores[k])
    w, b = logistic_fit(z[train], y[train], best)
    correct = ((z @ w + b) > 0) == (y > 0.5)
    held = ~train
    return {"features": x.shape[1], "l2_inner_val": scores, "l2": best, "train_accuracy": float(correct[train].mean()),
            "heldout_accuracy": float(correct[held].mean()),
            "heldout_accuracy_age_18_plus": float(correct[held & (ages >= 18)].mean()),
            "heldout_accuracy_age_under_13": float(correct[held & (ages < 13)].mean())}


def gender(data: Path, flip: bool) -> dict:
    """Logistic regression on UTKFace train-portion embeddings → accuracy on the held-out portion (split_portion).

    Also stacked with the members' own P(female) logits (CC0 gender net with its mirror, WRN) read from the age cache,
    i.e. what an embedding-based gender member calibrated together with the existing ones could reach.
    """
    from services.scoring.evaluation.data import read_age_samples
    from services.scoring.evaluation.extract import (
        BACKBONE_MEMBERS,
        DEFAULT_CACHE_DIR,
        PIPELINE_KEY,
        cache_path,
        load_cache,
    )

    samples = [s for s in read_age_samples(data / "utkface") if s.female is not None]
    emb_by_file = load_embeddings("utkface", flip)
    rows = load_cache(REPO / cache_path(data / "utkface", PIPELINE_KEY, BACKBONE_MEMBERS, DEFAULT_CACHE_DIR))
    samples = [s for s in samples if s.file in emb_by_file and s.file in rows]
    emb = np.stack([emb_by_file[s.file] for s in samples]).astype(np.float64)
    y = np.array([s.female for s in samples], dtype=np.float64)
    ages = np.array([s.age for s in samples])
    train = np.array([split_portion(s.file) == "train" for s in samples])

    def logit(p: np.ndarray) -> np.ndarray:
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))

    cc0 = np.array([(float(rows[s.file]["agegender_cc0_gender.p_female"])
                     + float(rows[s.file]["agegender_cc0_gender.p_female_flip"])) / 2 for s in samples])
    wrn = np.array([float(rows[s.file]["wrn16_8_imdbwiki.p_female"]) for s in samples])
    held = ~train
    return {
        "train": int(train.sum()), "heldout": int(held.sum()),
        "members_alone_heldout": {"agegender_cc0_gender": float(((cc0 > 0.5) == (y > 0.5))[held].mean()),
                                  "wrn16_8_imdbwiki": float(((wrn > 0.5) == (y > 0.5))[held].mean())},
        "embedding": _gender_probe(emb, y, train, ages),
        "embedding+cc0_p_female": _gender_probe(np.hstack([emb, logit(cc0)[:, None]]), y, train, ages),
        "embedding+cc0+wrn_p_female": _gender_probe(np.hstack([emb, logit(cc0)[:, None], logit(wrn)[:, None]]),
                                                    y, train, ages),
    }


def beauty(data: Path) -> dict:
    """MEBeauty official split: the project's own head trainer on embedding blocks, alone and with the members."""
    from services.scoring.beauty import train as beauty_train
    from services.scoring.beauty.dataset import load_mebeauty
    from services.scoring.beauty.evaluate import mebeauty_features, mebeauty_files
    from services.scoring.beauty.head import Standardizer, ridge_path

    labels = load_mebeauty(data / "mebeauty")
    all_files = mebeauty_files(data / "mebeauty")
    member_blocks = mebeauty_features(data / "mebeauty", all_files, "all_members", progress=False)
    index = {f: i for i, f in enumerate(all_files)}
    rows = np.array([index[f] for f in labels.files])
    features = {k: v[rows] for k, v in member_blocks.items()}
    plain, flipped = load_embeddings("mebeauty"), load_embeddings("mebeauty", flip=True)
    features["dlib_face_embedding.emb"] = np.stack([plain[f] for f in labels.files])
    features["dlib_face_embedding.emb_flip"] = np.stack([flipped[f] for f in labels.files])
    beauty_train.BLOCK_SETS["emb"] = ["dlib_face_embedding.emb"]
    beauty_train.BLOCK_SETS["emb_flip"] = ["dlib_face_embedding.emb_flip"]
    beauty_train.BLOCK_SETS["emb_flip+cc0"] = ["dlib_face_embedding.emb_flip", *beauty_train.BLOCK_SETS["cc0_members"]]
    beauty_train.BLOCK_SETS["emb_flip+all"] = ["dlib_face_embedding.emb_flip", *beauty_train.BLOCK_SETS["all_members"]]
    report: dict = {}
    tr, va, te = (labels.split == s for s in ("train", "val", "test"))
    for block_set in ("emb", "emb_flip", "emb_flip+cc0", "emb_flip+all", "all_members"):
        names = beauty_train.BLOCK_SETS[block_set]
        x = np.concatenate([np.asarray(features[n], np.float64) for n in names], axis=1)
        sizes = [features[n].shape[1] for n in names]
        # plain ridge: fit on train, alpha on val, measured on test (no refit)
        std = Standardizer.fit(x[tr], sizes, True)
        xtr, xva, xte = std(x[tr]), std(x[va]), std(x[te])
        alphas = beauty_train.RIDGE_ALPHAS
        path = ridge_path(xtr, labels.score[tr], alphas)
        val = [beauty_train.regression_metrics(xva @ w + b, labels.score[va])["pearson"] for w, b in path]
        best = int(np.argmax(val))
        w, b = path[best]
        ridge = {"alpha": alphas[best], "val_pearson": val[best],
                 "test": beauty_train.regression_metrics(xte @ w + b, labels.score[te])}
        _, head_report = beauty_train.train_beauty_head(features, labels, block_set, progress=False)
        report[block_set] = {"ridge_train_only": ridge, "project_head": {
            "chosen": head_report.get("chosen"), "val": head_report.get("val"), "test": head_report.get("test")}}
        print(block_set, json.dumps(report[block_set], default=float)[:400], flush=True)
    return report


def personalize(data: Path, max_raters: int | None, ks: tuple[int, ...] = (0, 5, 10)) -> dict:
    """FRL London cold-start protocol with the embedding as (extra) visual features, against the same protocol on the
    project's member blocks (same raters, folds and seed): ``evaluate_personalization`` with its feature hook swapped.
    """
    from services.scoring.beauty import train as beauty_train
    from services.scoring.personalize import evaluate as personal_eval

    original = personal_eval.face_features
    flipped = load_embeddings("frl_london", flip=True)

    def with_embedding(dataset_dir: Path, faces: list[str], block_set: str, *args: object, **kwargs: object
                       ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        if not block_set.startswith("emb_flip"):
            return original(dataset_dir, faces, block_set, *args, **kwargs)
        base = block_set.removeprefix("emb_flip").removeprefix("+") or None
        emb = np.stack([flipped[f] for f in faces]).astype(np.float64)
        if base is None:  # embedding only (the global head still needs the member blocks)
            blocks, _, _ = original(dataset_dir, faces, "all_members", *args, **kwargs)
            return blocks, emb, np.full(emb.shape[1], 1.0 / np.sqrt(emb.shape[1]))
        blocks, x, weights = original(dataset_dir, faces, base, *args, **kwargs)
        return (blocks, np.hstack([emb, x]),
                np.concatenate([np.full(emb.shape[1], 1.0 / np.sqrt(emb.shape[1])), weights]))

    beauty_train.BLOCK_SETS.setdefault("emb_flip", [])
    beauty_train.BLOCK_SETS.setdefault("emb_flip+all_members", beauty_train.BLOCK_SETS["all_members"])
    personal_eval.face_features = with_embedding  # type: ignore[assignment]
    report = {}
    try:
        for block_set in ("all_members", "emb_flip", "emb_flip+all_members"):
            started = time.perf_counter()
            result = personal_eval.evaluate_personalization(data / "frl_london", ks=ks, max_raters=max_raters,
                                                            block_set=block_set, progress=False)
            report[block_set] = {method: {str(k): v for k, v in by_k.items()}
                                 for method, by_k in result["methods"].items()}
            report[block_set]["seconds"] = time.perf_counter() - started
            row = result["methods"].get("personal_demo_prior", {})
            print(block_set, {k: round(v["hot_or_not_acc"], 3) for k, v in row.items()}, flush=True)
    finally:
        personal_eval.face_features = original
    return report


def reference(ref_bin: Path, dat: Path, data: Path, count: int) -> dict:
    """Max |Δ| between dlib's C++ and the port on ``count`` real FG-NET chips plus 2 noise images."""
    from libs.common.images import load_image_file
    from services.scoring.models.dlib_face_embedding import embed

    files, landmarks, builder = _landmark_source("fgnet", data)
    step = max(1, len(files) // count)
    chips = [face_chips(load_image_file(data / "fgnet/images" / files[i]), landmarks[i], builder)
             for i in range(0, len(files), step)][:count]
    rng = np.random.default_rng(0)
    chips += [rng.integers(0, 256, (150, 150, 3), dtype=np.uint8) for _ in range(2)]
    stacked = np.stack(chips)
    work = CACHE_DIR / "reference"
    work.mkdir(parents=True, exist_ok=True)
    stacked.tofile(work / "chips.u8")
    subprocess.run([str(ref_bin), str(dat), str(work / "chips.u8"), str(work / "out.f32")], check=True)
    ref = np.fromfile(work / "out.f32", dtype=np.float32).reshape(-1, 128)
    ours = embed(load_model(None, dat), stacked)
    return {"chips": len(stacked), "max_abs_diff": float(np.abs(ref - ours).max()),
            "max_relative_l2": float((np.linalg.norm(ref - ours, axis=1) / np.linalg.norm(ref, axis=1)).max()),
            "mean_norm": float(np.linalg.norm(ref, axis=1).mean())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["embed", "verify", "gender", "beauty", "personalize", "reference"])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared/data")
    parser.add_argument("--sets", nargs="+", default=[*AGE_SETS, *BEAUTY_SETS])
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--dat", type=Path, default=None, help="use this .dat directly instead of the model cache")
    parser.add_argument("--ref-bin", type=Path, default=None)
    parser.add_argument("--flip", action="store_true", help="average embeddings with their mirror's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-raters", type=int, default=None, help="personalize: a random subset of raters")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.command == "embed":
        model = load_model(args.models_dir, args.dat)
        for name in args.sets:
            print(embed_set(name, args.data, model))
        return 0
    if args.command == "reference":
        result = reference(args.ref_bin, args.dat, args.data, 30)
    elif args.command == "verify":
        result = verify(args.data, args.flip)
    elif args.command == "gender":
        result = gender(args.data, args.flip)
    elif args.command == "beauty":
        result = beauty(args.data)
    else:
        result = personalize(args.data, args.max_raters)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    suffix = "_flip" if args.flip else ""
    (RESULTS_DIR / f"face_embedding_{args.command}{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
