"""Visual features: penultimate (and one earlier) activations of the scoring members, read with forward hooks.

Why hooks: the member classes return only probabilities and are owned by another module; a hook reads the
activations without changing them. Why these layers: attractiveness is not what the members were trained for, so
the last layer before the softmax is too specialised on its own; one earlier, more generic block and a coarse 2×2
spatial grid (face layout matters for attractiveness, a global average throws it away) are kept beside it. Each block
is cached separately so the head can pick the combination by validation without re-running the networks.

Blocks are named ``<member>.<layer>``; every block is a float32 [N, D] array. The members' own outputs (expected age,
P(female), the age distribution) are blocks too: age and gender explain a large share of rated attractiveness.

One more feature source is not an ensemble member: dlib's 128-d face embedding (``EMBEDDING``, CC0;
``services.scoring.models.embedding_registry``). Its block ``dlib_face_embedding.emb`` is the embedding of the
150-px dlib chip (padding 0.25, ``crops.dlib_chip`` with the mean-face geometry, from the 256-px chip) averaged with
its mirror's, exactly as ``benchmarks/face_embedding_eval.py`` measured it (benchmarks/results/face_embedding.md).
Another such source is InsightFace's MobileFaceNet (``ARCFACE``, research-only;
``services.scoring.models.arcface_registry``): its block ``arcface_mbf.emb`` is the L2-normalised mean of the 512-d
embeddings of the 112-px ArcFace chip and its mirror.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from libs.common.modelcard import ModelCard
from services.scoring.members import MemberOutput, member_crops, run_member
from services.scoring.models.arcface_mbf import FINAL_MAP_MODULE as ARCFACE_FINAL_MAP
from services.scoring.models.registry import PretrainedConfig

GRID = 2  # 2×2 spatial pooling: keeps upper/lower and left/right face halves apart at 4× the size of a global mean
FEATURE_BATCH = 64  # crops per forward pass: bounded memory, large enough to amortise the per-call overhead

CC0_MEMBERS = ("agegender_cc0_age", "agegender_cc0_gender")  # commercial-safe feature sources
ALL_MEMBERS = ("agegender_cc0_age", "agegender_cc0_gender", "wrn16_8_imdbwiki")
EMBEDDING = "dlib_face_embedding"  # a feature source, not an ensemble member (no age/gender outputs)
EMBEDDING_BLOCK = f"{EMBEDDING}.emb"
ARCFACE = "arcface_mbf"  # InsightFace MobileFaceNet embedding: a feature source, research-only weights
ARCFACE_BLOCK = f"{ARCFACE}.emb"
# feature sources that are not ensemble members: name → (registry module with card()/fetch(), its model loader)
EMBEDDER_REGISTRIES = {
    EMBEDDING: ("services.scoring.models.embedding_registry", "embedding_model"),
    ARCFACE: ("services.scoring.models.arcface_registry", "arcface_model"),
}
EMBEDDERS = tuple(EMBEDDER_REGISTRIES)
EMBEDDING_MEMBER = "dlib_embedding_gender"  # an ensemble member that runs the same network on the same chip
EMBEDDING_MEMBER_BLOCK = f"{EMBEDDING_MEMBER}.emb"  # its tapped embedding: used as EMBEDDING_BLOCK when present
ARCFACE_MEMBER = "dex_head_arcface"  # the ArcFace age member: the same network on the same crop, mirror included
ARCFACE_MEMBER_BLOCK = f"{ARCFACE_MEMBER}.emb"  # its tapped embedding: the ARCFACE blocks are read from its pass


@dataclass(frozen=True)
class HookSpec:
    """Where to read one activation map (a module's output) and how to pool it."""

    module: str  # dotted module path inside the member
    relu: bool  # the member applies a ReLU after this module in forward() (the hook sees the pre-activation)
    grid: bool  # also keep a GRID×GRID average pool (else the global average only)


HOOKS: dict[str, dict[str, HookSpec]] = {
    "wrn16_8_imdbwiki": {
        "final": HookSpec("bn", relu=True, grid=True),  # the map both heads read, 512 channels
        "stage2": HookSpec("blocks.3", relu=False, grid=False),  # end of stage 2, 256 channels, more generic
    },
    "agegender_cc0_age": {
        "final": HookSpec("blocks.4", relu=False, grid=True),  # input of the global average + fc: 256 channels
        "stage2": HookSpec("blocks.2", relu=False, grid=False),  # 128 channels
    },
    "agegender_cc0_gender": {
        "conv": HookSpec("affine4", relu=True, grid=True),  # last conv map, 64 channels
        "fc1": HookSpec("fc1", relu=True, grid=False),  # the 16-unit penultimate layer
    },
    # the face embeddings' last feature maps: identity training squeezes the map into the embedding, and what it
    # squeezes out (skin, expression, proportions) is what raters respond to (beauty.md v3: +0.02 test r)
    EMBEDDING: {
        "block13": HookSpec("blocks.13", relu=False, grid=True),  # last residual block (post-ReLU), 256 channels
    },
    ARCFACE: {
        "final": HookSpec(ARCFACE_FINAL_MAP, relu=False, grid=True),  # 512 × 7 × 7 map before the GDC conv
    },
    # the ArcFace age member's own pass (face and mirror, always): its last map and embedding are the ARCFACE blocks
    ARCFACE_MEMBER: {
        "final": HookSpec(f"backbone.{ARCFACE_FINAL_MAP}", relu=False, grid=True),
        "emb": HookSpec("backbone", relu=False, grid=False),
    },
    # the embedding gender member's own pass over the embedding's 150-px chip: its embedding and last map (face and
    # mirror averaged when the member runs with flip TTA) are exactly the EMBEDDING blocks, read from there
    EMBEDDING_MEMBER: {
        "emb": HookSpec("embedding", relu=False, grid=False),
        "block13": HookSpec("embedding.blocks.13", relu=False, grid=True),
    },
}


def _pool(activation: torch.Tensor, spec: HookSpec) -> dict[str, torch.Tensor]:
    x = F.relu(activation) if spec.relu else activation
    if x.dim() == 2:
        return {"": x}
    out = {"gap": x.mean(dim=(2, 3))}
    if spec.grid:
        out["grid"] = F.adaptive_avg_pool2d(x, GRID).flatten(1)
    return out


@contextmanager
def feature_hooks(name: str, model: nn.Module) -> Iterator[dict[str, torch.Tensor]]:
    """Forward hooks on member ``name``'s HOOKS layers while the block runs; the dict fills with their outputs.

    Separate from ``member_features`` so the scoring service can read the features during the ensemble's own forward
    pass instead of running every network a second time for attractiveness.
    """
    captured: dict[str, torch.Tensor] = {}
    modules = dict(getattr(model, "_orig_mod", model).named_modules())  # a torch.compile'd member wraps the network
    handles = []
    for layer, spec in HOOKS[name].items():
        def hook(_m: nn.Module, _i: object, out: torch.Tensor, layer: str = layer) -> None:
            captured[layer] = out
        handles.append(modules[spec.module].register_forward_hook(hook))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def pooled_blocks(name: str, captured: dict[str, torch.Tensor], n: int, flip: bool) -> dict[str, np.ndarray]:
    """The hooked activations of N faces (2N rows with ``flip``: mirrors averaged in) as float32 feature blocks."""
    blocks: dict[str, np.ndarray] = {}
    for layer, spec in HOOKS[name].items():
        for kind, value in _pool(captured[layer], spec).items():
            arr = value.float().cpu().numpy()
            arr = (arr[:n] + arr[n:]) / 2 if flip else arr
            blocks[f"{name}.{layer}{'_' + kind if kind else ''}"] = arr.astype(np.float32)
    return blocks


def output_blocks(output: MemberOutput) -> dict[str, np.ndarray]:
    """A member's own answers as blocks: P(female) [N, 1] and the age distribution [N, K], where it has them."""
    blocks: dict[str, np.ndarray] = {}
    if output.p_female is not None:
        blocks[f"{output.name}.p_female"] = output.p_female.reshape(-1, 1).astype(np.float32)
    if output.age_probs is not None:
        blocks[f"{output.name}.age_probs"] = output.age_probs.astype(np.float32)
    return blocks


def member_features(
    cfg: PretrainedConfig,
    model: nn.Module,
    chips: Sequence[np.ndarray],
    landmarks: Sequence[np.ndarray],
    flip: bool = True,
) -> dict[str, np.ndarray]:
    """Feature blocks of one member for N chips (fp32); with ``flip`` each block is the mean over face and mirror."""
    crops = member_crops(cfg, chips, landmarks)
    with feature_hooks(cfg.name, model) as captured:
        output = run_member(cfg, model, crops, flip=flip)
    return {**pooled_blocks(cfg.name, captured, len(crops), flip), **output_blocks(output)}


def batched_member_features(
    cfg: PretrainedConfig,
    model: nn.Module,
    chips: Sequence[np.ndarray],
    landmarks: Sequence[np.ndarray],
    flip: bool = True,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """``member_features`` over any number of chips in FEATURE_BATCH slices (bounded memory), concatenated."""
    return _in_batches(lambda c, lm: member_features(cfg, model, c, lm, flip), chips, landmarks, cfg.name, progress)


def _in_batches(
    compute: Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], dict[str, np.ndarray]],
    chips: Sequence[np.ndarray],
    landmarks: Sequence[np.ndarray],
    desc: str,
    progress: bool,
) -> dict[str, np.ndarray]:
    """``compute`` on FEATURE_BATCH slices of the chips (bounded memory), blocks concatenated in order."""
    from tqdm import tqdm

    starts = range(0, len(chips), FEATURE_BATCH)
    parts = [compute(chips[s : s + FEATURE_BATCH], landmarks[s : s + FEATURE_BATCH])
             for s in tqdm(starts, desc=desc, unit="batch", disable=not progress)]
    if not parts:
        return compute(chips, landmarks)
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def embedding_chips(chips: Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> np.ndarray:
    """uint8 [N, 150, 150, 3] dlib face-recognition chips (padding 0.25) cut from 256-px chips + chip landmarks."""
    from services.scoring.crops import GEOMETRY_BY_CROP, dlib_chip
    from services.scoring.models.dlib_face_embedding import CHIP_CROP, CHIP_PADDING, INPUT_SIZE

    geometry = GEOMETRY_BY_CROP[CHIP_CROP]
    return np.stack([dlib_chip(chip, np.asarray(lm, dtype=np.float64), INPUT_SIZE, CHIP_PADDING, geometry)
                     for chip, lm in zip(chips, landmarks, strict=True)])


def embedding_features(
    model: nn.Module, chips: Sequence[np.ndarray], landmarks: Sequence[np.ndarray], flip: bool = True,
) -> dict[str, np.ndarray]:
    """The embedding block and its last map (HOOKS) for N chips; with ``flip`` each is the mean over face and mirror."""
    from services.scoring.models.dlib_face_embedding import EMBEDDING_SIZE, embed

    if not len(chips):
        return {EMBEDDING_BLOCK: np.zeros((0, EMBEDDING_SIZE), np.float32)}
    with feature_hooks(EMBEDDING, model) as captured:
        emb = embed(model, embedding_chips(chips, landmarks), flip=flip, batch=None)
    return {EMBEDDING_BLOCK: emb.astype(np.float32), **pooled_blocks(EMBEDDING, captured, len(chips), flip)}


def arcface_features(model: nn.Module, chips: Sequence[np.ndarray], flip: bool = True) -> dict[str, np.ndarray]:
    """The ArcFace blocks for N chips: the embedding (L2-normalised; with ``flip`` the mean of face and mirror, then
    normalised) and its last map (HOOKS)."""
    from services.scoring.models.arcface_mbf import EMBEDDING_SIZE, arcface_chips, embed

    if not len(chips):
        return {ARCFACE_BLOCK: np.zeros((0, EMBEDDING_SIZE), np.float32)}
    with feature_hooks(ARCFACE, model) as captured:
        emb = embed(model, arcface_chips(chips), flip=flip)
    return {ARCFACE_BLOCK: emb.astype(np.float32), **pooled_blocks(ARCFACE, captured, len(chips), flip)}


def embedder_features(
    name: str, model: nn.Module, chips: Sequence[np.ndarray], landmarks: Sequence[np.ndarray], flip: bool = True,
) -> dict[str, np.ndarray]:
    """The block of one of the EMBEDDERS for N chips."""
    if name == ARCFACE:
        return arcface_features(model, chips, flip)
    return embedding_features(model, chips, landmarks, flip)


def _embedder_registry(name: str) -> ModuleType:
    return importlib.import_module(EMBEDDER_REGISTRIES[name][0])


def load_embedder(name: str, models_dir: Path | None = None) -> nn.Module:
    """One of the EMBEDDERS in eval mode, fetched and converted into the model cache on first use."""
    loader: Callable[[Path | None], nn.Module] = getattr(_embedder_registry(name), EMBEDDER_REGISTRIES[name][1])
    return loader(models_dir)


def embedder_card(name: str) -> ModelCard:
    """The model card one of the EMBEDDERS is converted with (its version and licence)."""
    card: ModelCard = _embedder_registry(name).card()
    return card


def profile_embedders(profile: str) -> list[str]:
    """The EMBEDDERS a profile may run: all of them, or (commercial-safe) those whose card allows commercial use,
    the same rule ``ensemble.profile_members`` applies to the members."""
    return [name for name in EMBEDDERS if profile == "default" or embedder_card(name).commercial_use]


def source_features(
    name: str, model: nn.Module, chips: Sequence[np.ndarray], landmarks: Sequence[np.ndarray], flip: bool = True,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Feature blocks of one feature source (an ensemble member or one of the EMBEDDERS) in FEATURE_BATCH slices."""
    if name not in EMBEDDERS:
        from services.scoring.models.registry import pretrained_config

        return batched_member_features(pretrained_config(name), model, chips, landmarks, flip, progress)
    return _in_batches(lambda c, lm: embedder_features(name, model, c, lm, flip), chips, landmarks, name, progress)


def stack_blocks(blocks: dict[str, np.ndarray], names: Sequence[str]) -> np.ndarray:
    """Concatenate the named blocks (in order) into one [N, D] float64 matrix."""
    missing = [n for n in names if n not in blocks]
    if missing:
        raise KeyError(f"feature blocks missing: {missing}; have {sorted(blocks)}")
    return np.concatenate([np.asarray(blocks[n], dtype=np.float64) for n in names], axis=1)
