"""Full-network DEX fine-tuning from images (the GPU path): backbone + 101-way head, K members on bootstrap samples.

Each member is a ``DexHeadMember`` (backbone → hooked map → pooled features → head) trained end to end with
cross-entropy over one-year classes and augmented crops; the age is the expectation at inference. Crops follow the
backbone's registry preprocessing, cut from aligned chips (labelled folders: the cached detector landmarks, or the
whole-image fallback) or from IMDB-WIKI's face boxes with DEX's 40 % margin. On a CPU this is far too slow for real
data (see benchmarks/results/age_training.md); the unit test runs one step on a tiny synthetic batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from services.scoring.crops import warp_affine
from services.scoring.members import member_crops
from services.scoring.models.registry import PretrainedConfig, pretrained_config
from services.scoring.training.augment import augment_crop
from services.scoring.training.backbones import backbone, backbone_constructor
from services.scoring.training.fit_heads import ages_to_classes
from services.scoring.training.heads import HeadEnsemble, HeadSpec
from services.scoring.training.member import GRID, DexHeadMember

DEX_MARGIN = 0.4  # IMDB-WIKI boxes enlarged by 40 % per side, as DEX and yu4u crop them
PROB_FLOOR = 1e-8  # members return probabilities; log of 0 would be −inf
FULL_LEARNING_RATE = 1e-4  # fine-tuning: 10× below the head-only rate so the pretrained features are not wrecked
FULL_BATCH = 64
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_SCALE = 1.0 / 58.4  # ≈ 1/ImageNet std in 0..255 units (one scalar: PretrainedConfig has one scale)


@dataclass(frozen=True)
class ImageItem:
    """One training image: path, age, and either a face box (IMDB-WIKI) or five landmarks (None: whole image)."""

    path: Path
    age: float
    box: tuple[float, float, float, float] | None = None
    landmarks: np.ndarray | None = None


def crop_config(backbone_key: str) -> PretrainedConfig:
    """Preprocessing of a backbone: its registry member's, or VGG-16's (224 px, ImageNet normalisation)."""
    b = backbone(backbone_key)
    if b.member is not None:
        return pretrained_config(b.member)
    from services.scoring.training.vgg16 import INPUT_SIZE

    return dataclasses.replace(pretrained_config("wrn16_8_imdbwiki"), name="vgg16", input_size=INPUT_SIZE,
                               color_order="RGB", mean=IMAGENET_MEAN, scale=IMAGENET_SCALE)


def box_crop(image: np.ndarray, box: Sequence[float], size: int, margin: float = DEX_MARGIN) -> np.ndarray:
    """The face box enlarged by ``margin`` per side (square on its longer side), edge-replicated, ``size``²."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    scale = size / side
    out_from_in = np.array([[scale, 0.0, -(cx - side / 2) * scale], [0.0, scale, -(cy - side / 2) * scale]])
    return warp_affine(image, out_from_in, size)


def load_crop(item: ImageItem, cfg: PretrainedConfig) -> np.ndarray:
    """The backbone's input crop of one item (uint8 HxWx3)."""
    from libs.common.alignment import align_face
    from libs.common.images import load_image_file as load_image
    from services.scoring.evaluation.faces import fallback_landmarks

    image = load_image(item.path)
    if item.box is not None:
        return box_crop(image, item.box, cfg.input_size)
    marks = item.landmarks if item.landmarks is not None else fallback_landmarks(*image.shape[:2])
    aligned = align_face(image, marks)
    return member_crops(cfg, [aligned.chip], [aligned.landmarks])[0]


def to_tensor(cfg: PretrainedConfig, crops: np.ndarray) -> torch.Tensor:
    """float32 NCHW input in the backbone's colour order and normalisation."""
    x = torch.from_numpy(np.ascontiguousarray(crops)).float()
    if cfg.color_order == "BGR":
        x = x.flip(-1)
    return ((x - torch.tensor(cfg.mean)) * cfg.scale).permute(0, 3, 1, 2).contiguous()


def build_member(backbone_key: str, models_dir: Path | None, pretrained: bool = True) -> DexHeadMember:
    """A trainable DexHeadMember: pretrained backbone (when it has one) + one fresh linear head."""
    b = backbone(backbone_key)
    if b.member is not None and pretrained:
        from services.scoring.models.registry import create_model

        net = create_model(b.member, models_dir)
    else:
        net = backbone_constructor(backbone_key)()
    features = b.channels * GRID * GRID
    spec = HeadSpec(backbone=b.member or b.key, layer=b.layer, relu=b.relu, pooling="grid", in_features=features)
    return DexHeadMember(net, HeadEnsemble(spec))


def full_step(model: DexHeadMember, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    """One optimisation step of cross-entropy on the member's output distribution; the loss before the step."""
    model.train()
    probs = model(x)
    loss = F.nll_loss(torch.log(probs.clamp_min(PROB_FLOOR)), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def train_full(
    items: Sequence[ImageItem],
    backbone_key: str,
    members: int,
    epochs: int,
    out_dir: Path,
    models_dir: Path | None = None,
    device: str = "auto",
    batch_size: int = FULL_BATCH,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Train K members end to end, each on its own bootstrap sample; saves ``dex_full_<backbone>_k<i>.pt``."""
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    cfg = crop_config(backbone_key)
    crops = np.stack([load_crop(item, cfg) for item in items])  # decoded once: images are re-augmented per epoch
    classes = ages_to_classes(np.array([i.age for i in items]))
    saved = []
    for k in range(members):
        rng = np.random.default_rng(seed + k)
        torch.manual_seed(seed + k)
        bag = rng.integers(0, len(items), len(items)) if members > 1 else np.arange(len(items))
        model = build_member(backbone_key, models_dir).to(dev)
        optimizer = torch.optim.AdamW(model.parameters(), lr=FULL_LEARNING_RATE, weight_decay=1e-4)
        for epoch in range(epochs):
            losses = []
            order = rng.permutation(bag)
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                batch = np.stack([augment_crop(crops[r], rng) for r in rows])
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                    losses.append(full_step(model, optimizer, to_tensor(cfg, batch).to(dev),
                                            torch.from_numpy(classes[rows]).to(dev)))
            log(f"member {k + 1}/{members} epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.3f}")
        path = Path(out_dir) / f"dex_full_{backbone_key}_k{k}.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.cpu().state_dict(), path)
        saved.append(path)
    return saved
