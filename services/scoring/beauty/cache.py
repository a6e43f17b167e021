"""Feature cache: landmarks and per-member feature blocks of a data set, computed once and kept as .npz files.

Why: the members cost ~0.4 s per face on a shared CPU (WRN-16-8); training heads, choosing blocks and evaluating
personalization must never recompute them. Files are keyed by data-set name, member and flip setting, and store the
image names they belong to, so a changed image list is detected instead of silently misaligned.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from services.scoring.beauty.chips import chips_for, detect_landmarks
from services.scoring.beauty.features import EMBEDDERS, load_embedder, source_features
from services.scoring.evaluation import detection

DEFAULT_CACHE_DIR = Path(".howhot/cache/beauty")
CACHE_VERSION = "1"  # bump when hooks or pooling change for every source
# per-source revisions on top (a source's file is "<CACHE_VERSION>.<rev>"): the dlib embedding gained its last map;
# the CC0 nets' chips moved to the geometry measured against dlib (crops.DLIB_FIVE_POINT)
SOURCE_REVISIONS = {"dlib_face_embedding": "2", "arcface_mbf": "1", "agegender_cc0_age": "2",
                    "agegender_cc0_gender": "2"}


def cache_version(source: str) -> str:
    """The version string a source's cache file must carry (others stay valid when one source changes)."""
    return f"{CACHE_VERSION}.{SOURCE_REVISIONS[source]}" if source in SOURCE_REVISIONS else CACHE_VERSION


def _check_files(path: Path, files: Sequence[str], version: str = CACHE_VERSION) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        if list(data["files"]) != list(files) or str(data["version"]) != version:
            return None
        return {k: data[k] for k in data.files if k not in ("files", "version")}


def cached_landmarks(
    name: str, image_dir: Path, files: Sequence[str], cache_dir: Path = DEFAULT_CACHE_DIR, progress: bool = True,
) -> dict[str, np.ndarray]:
    """{"landmarks": [N,5,2], "detected": [N]} for the images, detecting once (with the bound detector)."""
    path = Path(cache_dir) / f"{name}.landmarks.npz"
    cached = _check_files(path, files)
    if cached is not None:
        return cached
    found = detect_landmarks([Path(image_dir) / f for f in files], detection.detector(), progress=progress)
    out = {"landmarks": found.landmarks, "detected": found.detected}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, files=np.array(files), version=np.array(CACHE_VERSION), **out)
    return out


def cached_features(
    name: str, image_dir: Path, files: Sequence[str], members: Sequence[str], flip: dict[str, bool] | None = None,
    cache_dir: Path = DEFAULT_CACHE_DIR, models_dir: Path | None = None, progress: bool = True,
) -> dict[str, np.ndarray]:
    """All feature blocks of ``members`` for the images (one .npz per member), computing only what is missing.

    A member may also be one of ``features.EMBEDDERS`` (the face embeddings, cached the same way)."""
    from services.scoring.models.registry import create_model

    flip = flip or {}
    blocks: dict[str, np.ndarray] = {}
    chips = None
    for member in members:
        use_flip = flip.get(member, True)
        path = Path(cache_dir) / f"{name}.{member}.{'flip' if use_flip else 'noflip'}.npz"
        cached = _check_files(path, files, cache_version(member))
        if cached is None:
            if chips is None:
                marks = cached_landmarks(name, image_dir, files, cache_dir, progress)
                chips = chips_for([Path(image_dir) / f for f in files], marks["landmarks"])
            model = load_embedder(member, models_dir) if member in EMBEDDERS else create_model(member, models_dir)
            cached = source_features(member, model, chips[0], chips[1], flip=use_flip, progress=progress)
            np.savez(path, files=np.array(files), version=np.array(cache_version(member)), **cached)
        blocks.update(cached)
    return blocks
