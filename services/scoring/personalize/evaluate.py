"""``evaluate_personalization``: the cold-start protocol (``protocol.run_protocol``) on a data-set folder.

Visual features come from the beauty feature cache (computed once by ``benchmarks/beauty_features.py``). On FRL
London the committed global beauty head (trained on MEBeauty only, so no FRL face leaks into it) is also a feature of
the visual regression and a "global head" baseline; on MEBeauty it is left out, because its training split overlaps
the faces being predicted.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from services.scoring.beauty.cache import DEFAULT_CACHE_DIR, cached_features
from services.scoring.beauty.evaluate import mebeauty_files
from services.scoring.beauty.features import stack_blocks
from services.scoring.beauty.scorer import FLIP_BY_MEMBER, head_paths, load_beauty_head
from services.scoring.beauty.train import BLOCK_SETS
from services.scoring.personalize.data import RatingsData, load_ratings
from services.scoring.personalize.mf import DEFAULT_RANK, DEFAULT_REG
from services.scoring.personalize.protocol import DEFAULT_FOLDS, ProtocolInputs, run_protocol

GLOBAL_SCORE_WEIGHT = 3.0  # the head's score is one column but carries 1.7 k faces of supervision: weigh it up
PAPER_HOT_OR_NOT_ACCURACY = 0.76  # Rothe et al. 2016, on their own (Blippr-style hot-or-not) data, not comparable


def face_features(
    dataset_dir: Path, faces: Sequence[str], block_set: str, cache_dir: Path = DEFAULT_CACHE_DIR,
    progress: bool = False, extra_blocks: Sequence[str] = (),
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(all blocks, stacked [I, D] features of ``block_set``, per-column weights 1/√(block size)).

    ``extra_blocks`` (e.g. the global head's ``blocks``) are loaded into the returned blocks too, not stacked."""
    blocks_needed = BLOCK_SETS[block_set]
    members = sorted({b.split(".", 1)[0] for b in [*blocks_needed, *extra_blocks]})
    all_files = mebeauty_files(Path(dataset_dir))  # the cache is keyed by the full labels.csv list: never recompute
    cached = cached_features(Path(dataset_dir).name, Path(dataset_dir) / "images", all_files, members,
                             FLIP_BY_MEMBER, cache_dir, progress=progress)
    index = {f: i for i, f in enumerate(all_files)}
    rows = np.array([index[f] for f in faces])
    blocks = {k: v[rows] for k, v in cached.items()}
    x = stack_blocks(blocks, blocks_needed)
    weights = np.concatenate([np.full(blocks[b].shape[1], 1.0 / np.sqrt(blocks[b].shape[1])) for b in blocks_needed])
    return blocks, x, weights


def protocol_inputs(
    dataset_dir: Path,
    block_set: str = "all",
    head_name: str | None = "beauty_head_all",
    cache_dir: Path = DEFAULT_CACHE_DIR,
    progress: bool = True,
) -> tuple[RatingsData, ProtocolInputs, str | None]:
    """The data set's ratings and the protocol's arrays (faces nobody rated dropped); the global head used, if any."""
    data = load_ratings(Path(dataset_dir))
    mask_faces = ~np.all(np.isnan(data.ratings), axis=0)
    use_head = bool(head_name) and data.name != "mebeauty" and head_paths(str(head_name))[0].exists()
    head = load_beauty_head(str(head_name))[0] if use_head else None
    blocks, x, weights = face_features(Path(dataset_dir), data.faces, block_set, cache_dir, progress,
                                       extra_blocks=head.blocks if head is not None else ())
    global_scores = None
    if head is not None:
        global_scores = head.predict(stack_blocks(blocks, head.blocks))[0]
        x = np.hstack([x, global_scores[:, None]])
        weights = np.append(weights, GLOBAL_SCORE_WEIGHT)
    inputs = ProtocolInputs(data.ratings[:, mask_faces], x[mask_faces], data.scale, data.demographics,
                            None if global_scores is None else global_scores[mask_faces], weights)
    return data, inputs, head_name if head is not None else None


def evaluate_personalization(
    dataset_dir: Path,
    ks: Sequence[int] = (0, 5, 10, 20),
    n_folds: int = DEFAULT_FOLDS,
    max_raters: int | None = None,
    block_set: str = "all",
    head_name: str | None = "beauty_head_all",
    rank: int = DEFAULT_RANK,
    reg: float = DEFAULT_REG,
    seed: int = 0,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    progress: bool = True,
    warm: Sequence[int] = (),
) -> dict:
    """Mean per-rater Pearson and hot-or-not accuracy per method and k (see ``protocol`` for the definitions)."""
    data, inputs, head_used = protocol_inputs(dataset_dir, block_set, head_name, cache_dir, progress)
    eval_raters = None
    if max_raters is not None and max_raters < len(data.raters):
        eval_raters = np.random.default_rng(seed).choice(len(data.raters), max_raters, replace=False)
    results = run_protocol(inputs, ks, n_folds, eval_raters, rank, reg, seed, progress, warm)
    results.update({
        "dataset": data.name, "raters": len(data.raters), "faces": int(inputs.ratings.shape[1]),
        "ratings": int((~np.isnan(data.ratings)).sum()), "scale": list(data.scale), "block_set": block_set,
        "global_head": head_used, "max_raters": max_raters,
        "paper_hot_or_not_accuracy": PAPER_HOT_OR_NOT_ACCURACY,
    })
    return results
