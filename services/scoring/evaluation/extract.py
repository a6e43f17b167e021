"""Per-image member outputs and backbone features through the full pipeline, cached on disk.

Why a cache: on the shared 2-core CPU the WRN costs ~80–250 ms per face, and calibration fits, head training, reports
and re-runs all need the same numbers. One pass per image stores everything they need: the chosen face's landmarks
(so a report can re-cut the chip without detecting again), every backbone member's raw probabilities for the crop
and (for the cheap CC0 nets) its mirror, and pooled penultimate features (the DEX heads' inputs). The file is keyed
by the data-set folder, the pipeline mode and the members' versions; only images it lacks are computed, and an image
whose file changed since its row was computed (size or modification time, ``STAMP_KEY``) is computed again.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from services.scoring.evaluation.data import AgeSample, DatasetError
from services.scoring.evaluation.faces import chip_for
from services.scoring.members import member_crops, to_input
from services.scoring.models.registry import PretrainedConfig, pretrained_config

CACHE_VERSION = "1"  # bump when the stored arrays or the pipeline change meaning
DEFAULT_CACHE_DIR = Path(".howhot/cache/age")
BACKBONE_MEMBERS = ("wrn16_8_imdbwiki", "agegender_cc0_age", "agegender_cc0_gender")
FLIPPED_MEMBERS = frozenset({"agegender_cc0_age", "agegender_cc0_gender"})  # the WRN's mirror would double its cost
BF16_MEMBERS = frozenset({"wrn16_8_imdbwiki"})  # as FaceScorer runs it on a bf16-capable CPU (2×, |Δage| 0.08 y)
FEATURE_LAYERS = {  # member → (module whose output feeds the classifier, apply ReLU as forward() does)
    "wrn16_8_imdbwiki": ("bn", True),
    "agegender_cc0_age": ("blocks.4", False),
}
GRID = 2  # 2×2 pooled features keep upper/lower face apart (wrinkles vs. hair) at 4× the size of a global mean
BATCH = 16  # images per detector/member call: bounded memory on a shared machine
SAVE_EVERY = 256  # images between checkpoints, so an interrupted run keeps its work
PIPELINE_KEY = "detect"  # cache key of the one pipeline both evaluation modes run
STAMP_KEY = "file_stamp"  # [size, mtime_ns] of the image a row was computed from: a replaced image is recomputed


def cache_path(dataset_dir: Path, mode: str, members: Sequence[str], cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """One file per (folder, mode, member versions)."""
    versions = {m: pretrained_config(m).version for m in members}
    key = json.dumps([str(Path(dataset_dir).resolve()), mode, versions, CACHE_VERSION], sort_keys=True)
    digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:10]
    return Path(cache_dir) / f"{Path(dataset_dir).name}.{mode}.{digest}.npz"


def load_cache(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """{file: {key: array}} from a cache file (empty when absent)."""
    if not path.exists():
        return {}
    with np.load(path, allow_pickle=False) as data:
        files = [str(f) for f in data["files"]]
        keys = [k for k in data.files if k != "files"]
        arrays = {k: data[k] for k in keys}
    return {f: {k: arrays[k][i] for k in keys} for i, f in enumerate(files)}


def save_cache(path: Path, rows: dict[str, dict[str, np.ndarray]]) -> None:
    """Write atomically (temp file + rename): a killed job never leaves a truncated cache."""
    if not rows:
        return
    files = sorted(rows)
    keys = sorted(set.intersection(*(set(r) for r in rows.values())))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, files=np.array(files), **{k: np.stack([rows[f][k] for f in files]) for k in keys})
    tmp.replace(path)


NO_STAMP = (-1, -1)  # the stamp of a file that cannot be found


def file_stamp(path: Path) -> np.ndarray:
    """[size in bytes, modification time in ns] of an image file (``NO_STAMP`` when it is not there)."""
    try:
        info = Path(path).stat()
    except OSError:
        return np.array(NO_STAMP, np.int64)
    return np.array([info.st_size, info.st_mtime_ns], np.int64)


def stale_files(
    samples: Sequence[AgeSample], rows: dict[str, dict[str, np.ndarray]],
    stamps: dict[str, np.ndarray] | None = None,
) -> tuple[list[AgeSample], bool]:
    """(samples to compute: no row, or a row of another version of the file; whether ``rows`` gained stamps).

    The current stamps are the files' own, or ``stamps`` (file → stamp) where given. A row from before stamps
    existed adopts the current one (trusted once, not recomputed), so existing caches stay valid; a file that is
    gone keeps its row (a cached image may have been moved away)."""
    todo, adopted = [], False
    for sample in samples:
        row = rows.get(sample.file)
        if row is None:
            todo.append(sample)
            continue
        stamp = stamps[sample.file] if stamps is not None else file_stamp(sample.path)
        if STAMP_KEY not in row:
            row[STAMP_KEY], adopted = stamp, True
        elif tuple(stamp) != NO_STAMP and not np.array_equal(row[STAMP_KEY], stamp):
            todo.append(sample)
    return todo, adopted


def _load_images(
    chunk: Sequence[AgeSample], load_image: Callable[[Path], np.ndarray], unreadable: dict[str, str],
) -> tuple[list[AgeSample], list[np.ndarray]]:
    """The chunk's images that decode; the others go into ``unreadable`` (file → reason) instead of raising."""
    from libs.common.images import DECODE_ERRORS

    kept, images = [], []
    for sample in chunk:
        try:
            images.append(load_image(sample.path))
        except DECODE_ERRORS as exc:  # OSError covers a missing file; Pillow raises the rest on corrupt ones
            unreadable[sample.file] = f"{type(exc).__name__}: {exc}"
            continue
        kept.append(sample)
    return kept, images


def _raise_unreadable(unreadable: dict[str, str], dataset_dir: Path) -> None:
    if unreadable:
        first = "; ".join(f"{f} ({why})" for f, why in sorted(unreadable.items())[:5])
        raise DatasetError(f"{len(unreadable)} image(s) listed in {Path(dataset_dir) / 'labels.csv'} cannot be read: "
                           f"{first}{' …' if len(unreadable) > 5 else ''}. Fix or remove them from labels.csv "
                           "(the others are cached).")


def _forward_with_features(cfg: PretrainedConfig, model: nn.Module, crops: np.ndarray, flip: bool,
                           ) -> dict[str, np.ndarray]:
    """Raw probabilities (and pooled features) for crops, the mirrored half kept apart under ``*_flip`` keys."""
    n = len(crops)
    captured: dict[str, torch.Tensor] = {}
    handle = None
    if cfg.name in FEATURE_LAYERS:
        module_name, _ = FEATURE_LAYERS[cfg.name]

        def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
            captured["map"] = out
        handle = dict(model.named_modules())[module_name].register_forward_hook(hook)
    x = to_input(cfg, crops, flip)
    try:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.name in BF16_MEMBERS):
            out = model(x)
    finally:
        if handle is not None:
            handle.remove()
    probs = out if isinstance(out, tuple) else (out,)
    arrays: dict[str, np.ndarray] = {}
    named: list[tuple[str, torch.Tensor]] = []
    if cfg.task == "age+gender":
        named = [("p_female", probs[0][:, cfg.female_index]), ("age_probs", probs[1])]
    elif cfg.task == "age":
        named = [("age_probs", probs[0])]
    else:
        named = [("p_female", probs[0][:, cfg.female_index])]
    if "map" in captured:
        fmap = captured["map"].float()
        fmap = F.relu(fmap) if FEATURE_LAYERS[cfg.name][1] else fmap
        named += [("feat_gap", fmap.mean(dim=(2, 3))), ("feat_grid", F.adaptive_avg_pool2d(fmap, GRID).flatten(1))]
    for key, value in named:
        value = value.float()
        arrays[key] = value[:n].numpy()
        if flip:
            arrays[f"{key}_flip"] = value[n:].numpy()
    return arrays


def _store_dtype(key: str, value: np.ndarray) -> np.ndarray:
    return value.astype(np.float16 if key.split(".", 1)[-1].startswith("feat") else np.float32)


def extract(
    samples: Sequence[AgeSample],
    dataset_dir: Path,
    mode: str = "detect",
    members: Sequence[str] = BACKBONE_MEMBERS,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    models_dir: Path | None = None,
    progress: bool = True,
    load_image: Callable[[Path], np.ndarray] | None = None,
    detector: object | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Cached rows for ``samples`` (computing the missing ones): {file: {key: array}}.

    ``mode`` is ``detect`` (full pipeline) or ``aligned`` (already-aligned crops: pad and detect anyway, misses use
    the fallback). Both compute identical rows — the modes differ only in how ``eval_age`` counts misses — so they
    share one cache file (keyed ``PIPELINE_KEY``).
    """
    from tqdm import tqdm

    from libs.common.images import load_image_file as default_load
    from services.scoring.models.registry import create_model

    load_image = load_image or default_load
    if mode not in ("detect", "aligned"):
        raise ValueError(f"unknown mode {mode!r}")
    path = cache_path(dataset_dir, PIPELINE_KEY, members, cache_dir)
    rows = load_cache(path)
    missing, adopted = stale_files(samples, rows)
    unreadable: dict[str, str] = {}
    if adopted and not missing:
        save_cache(path, rows)
    if missing:
        if detector is None:
            from services.scoring.evaluation.detection import detector as bound_detector

            detector = bound_detector()
        models = {m: create_model(m, models_dir).to(memory_format=torch.channels_last) for m in members}
        unsaved = 0
        bar = tqdm(total=len(missing), desc=f"{Path(dataset_dir).name} faces", unit="img", disable=not progress)
        for start in range(0, len(missing), BATCH):
            chunk, images = _load_images(missing[start:start + BATCH], load_image, unreadable)
            bar.update(len(missing[start:start + BATCH]) - len(chunk))
            if not chunk:
                continue
            began = time.perf_counter()
            found = detector.detect_batch(images)  # type: ignore[attr-defined]
            chips = [chip_for(im, faces) for im, faces in zip(images, found, strict=True)]
            detect_ms = (time.perf_counter() - began) * 1000 / len(chunk)
            began = time.perf_counter()
            outputs: dict[str, np.ndarray] = {}
            for name, model in models.items():
                cfg = pretrained_config(name)
                crops = member_crops(cfg, [c.chip for c in chips], [c.chip_landmarks for c in chips])
                for key, value in _forward_with_features(cfg, model, crops, name in FLIPPED_MEMBERS).items():
                    outputs[f"{name}.{key}"] = value
            member_ms = (time.perf_counter() - began) * 1000 / len(chunk)
            for i, (sample, chip) in enumerate(zip(chunk, chips, strict=True)):
                row = {k: _store_dtype(k, v[i]) for k, v in outputs.items()}
                row.update(landmarks=chip.image_landmarks, chip_landmarks=chip.chip_landmarks,
                           detected=np.array(chip.detected), score=np.array(chip.score, np.float32),
                           n_faces=np.array(chip.n_faces), detect_ms=np.array(detect_ms, np.float32),
                           member_ms=np.array(member_ms, np.float32))
                row[STAMP_KEY] = file_stamp(sample.path)
                rows[sample.file] = row
            unsaved += len(chunk)
            bar.update(len(chunk))
            if unsaved >= SAVE_EVERY:
                save_cache(path, rows)
                unsaved = 0
        bar.close()
        save_cache(path, rows)
    _raise_unreadable(unreadable, dataset_dir)
    return {s.file: rows[s.file] for s in samples}


# --- the attractiveness embedders' features (no backbone member: cached apart, from the rows' landmarks) ------------
# The dlib face embedding feeds the embedding gender member, the ArcFace net's last map the ArcFace age member; each
# is computed from the chip ``extract`` made (the row's landmarks → ``align_face``), as the scoring service cuts it.

EMBEDDING_KEY = "dlib_face_embedding.emb"  # rows gain this [128] array and its mirror's under ``…emb_flip``
ARCFACE_KEY = "arcface_mbf.final_gapgrid"  # [2560]: global mean + 2×2 grid of the last map, face and mirror averaged


def _embedding_rows(models_dir: Path | None) -> Callable[[list, list], dict[str, np.ndarray]]:
    from services.scoring.beauty.features import embedding_chips
    from services.scoring.models.dlib_face_embedding import embed
    from services.scoring.models.embedding_registry import embedding_model

    model = embedding_model(models_dir)

    def rows(chips: list, landmarks: list) -> dict[str, np.ndarray]:
        crops = embedding_chips(chips, landmarks)
        return {EMBEDDING_KEY: embed(model, crops), f"{EMBEDDING_KEY}_flip": embed(model, np.ascontiguousarray(
            crops[:, :, ::-1]))}
    return rows


def _arcface_rows(models_dir: Path | None) -> Callable[[list, list], dict[str, np.ndarray]]:
    from services.scoring.beauty.features import ARCFACE, arcface_features
    from services.scoring.models.arcface_registry import arcface_model

    model = arcface_model(models_dir)

    def rows(chips: list, _landmarks: list) -> dict[str, np.ndarray]:
        blocks = arcface_features(model, chips)
        return {ARCFACE_KEY: np.hstack([blocks[f"{ARCFACE}.final_gap"], blocks[f"{ARCFACE}.final_grid"]])}
    return rows


EMBEDDERS = {  # cache kind → (registry module, the rows' keys per batch of chips)
    "embedding": ("services.scoring.models.embedding_registry", _embedding_rows),
    "arcface": ("services.scoring.models.arcface_registry", _arcface_rows),
}


def embedder_cache_path(dataset_dir: Path, kind: str = "embedding", cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """One file per folder, embedder and its version (the chips come from the backbone cache's landmarks)."""
    import importlib

    registry = importlib.import_module(EMBEDDERS[kind][0])
    key = json.dumps([str(Path(dataset_dir).resolve()), PIPELINE_KEY, {registry.NAME: registry.VERSION},
                      CACHE_VERSION], sort_keys=True)
    digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:10]
    return Path(cache_dir) / f"{Path(dataset_dir).name}.{PIPELINE_KEY}.{kind}.{digest}.npz"


def extract_embedder(
    samples: Sequence[AgeSample],
    rows: dict[str, dict[str, np.ndarray]],
    dataset_dir: Path,
    kind: str = "embedding",
    cache_dir: Path = DEFAULT_CACHE_DIR,
    models_dir: Path | None = None,
    progress: bool = True,
    load_image: Callable[[Path], np.ndarray] | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """``rows`` (from ``extract``) with one embedder's features of each face added (``EMBEDDERS``), computing the
    missing ones: the row's image landmarks → ``align_face`` (the chip ``extract`` made) → the embedder's own crop of
    that chip, as the scoring service cuts it."""
    from tqdm import tqdm

    from libs.common.alignment import align_face
    from libs.common.images import load_image_file as default_load

    load_image = load_image or default_load
    path = embedder_cache_path(dataset_dir, kind, cache_dir)
    cached = load_cache(path)
    # an embedder's features belong to the version of the image its backbone row was computed from
    stamps = {s.file: rows[s.file][STAMP_KEY] if STAMP_KEY in rows[s.file] else file_stamp(s.path) for s in samples}
    missing, adopted = stale_files(samples, cached, stamps)
    if adopted and not missing:
        save_cache(path, cached)
    if missing:
        compute = EMBEDDERS[kind][1](models_dir)
        unsaved = 0
        for start in tqdm(range(0, len(missing), BATCH), desc=f"{Path(dataset_dir).name} {kind}", unit="batch",
                          disable=not progress):
            chunk = missing[start:start + BATCH]
            aligned = [align_face(load_image(s.path), rows[s.file]["landmarks"]) for s in chunk]
            computed = compute([a.chip for a in aligned], [a.landmarks for a in aligned])
            for i, sample in enumerate(chunk):
                cached[sample.file] = {key: value[i] for key, value in computed.items()} | {
                    STAMP_KEY: stamps[sample.file]}
            unsaved += len(chunk)
            if unsaved >= SAVE_EVERY:
                save_cache(path, cached)
                unsaved = 0
        save_cache(path, cached)
    return {s.file: {**rows[s.file], **cached[s.file]} for s in samples}
