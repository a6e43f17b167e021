"""Full-network DEX fine-tuning from images: backbone + 101-way head, K members on bootstrap samples.

Each member is a ``DexHeadMember`` (backbone → hooked map → pooled features → head) trained end to end with
cross-entropy against age label distributions and augmented crops; the age is the expectation at inference. Crops
follow the backbone's registry preprocessing, cut from aligned chips (labelled folders: the face pipeline's cached
landmarks, as evaluation cuts them) or from IMDB-WIKI's face boxes with DEX's 40 % margin.

What a CPU run on UTKFace taught (benchmarks/results/age_finetune_cpu.md): the CC0 net fine-tunes at ~11 s per epoch
on 2 cores, so it is a CPU job; the WRN stays a GPU job. The recipe:
* the head starts as the backbone's own age classifier where one reads the pooled map (CC0: ``fc`` on the mean of
  ``blocks.4``), so epoch 0 is the published network and training only moves it;
* Gaussian label distributions whose σ grows with age (σ = 0.5 + 0.07·age years): a constant σ pushes an infant's
  target mass above its age (the grid stops at 0);
* optional distillation towards the frozen published network (``distill``: learning without forgetting, Li & Hoiem
  2016), KL(teacher ‖ student) on the 0..100 grid, which keeps the member closer to it on photos unlike the training
  set;
* AdamW with a one-cycle schedule.

For runs longer than a coffee (the WRN or VGG-16 on IMDB-WIKI, on a GPU): crops stream from disk through loader
workers when they would not fit in memory (``loader.py``); every epoch is validated on the member's out-of-bag faces
and the best epoch is what gets saved (``patience`` stops early); every epoch is checkpointed, and ``resume``
continues an interrupted run exactly where it stopped (``checkpoint.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from services.scoring.ensemble import align_to_grid
from services.scoring.models.registry import PretrainedConfig, pretrained_config
from services.scoring.training.backbones import backbone, backbone_constructor
from services.scoring.training.checkpoint import MemberProgress, load_checkpoint, run_fingerprint, save_checkpoint
from services.scoring.training.fit_heads import soft_targets
from services.scoring.training.heads import AGE_CLASSES, DexHead, HeadEnsemble, HeadSpec, float_state, half_state
from services.scoring.training.loader import (
    DEFAULT_CACHE_BYTES,
    DEFAULT_VAL_FRACTION,
    DEFAULT_VAL_LIMIT,
    CropDataset,
    EpochSampler,
    ImageItem,
    PlainSampler,
    crop_bytes,
    crop_loader,
    decode_all,
    member_rows,
    spare_cores,
)
from services.scoring.training.member import GRID, DexHeadMember

PROB_FLOOR = 1e-8  # members return probabilities; log of 0 would be −inf
FULL_LEARNING_RATE = 1e-4  # fine-tuning: 10× below the head-only rate so the pretrained features are not wrecked
FULL_BATCH = 64
FULL_FORMAT = 1  # bump when the saved member layout changes
WEIGHT_DECAY = 1e-4
WARMUP_FRACTION = 0.15  # of the one-cycle schedule's steps
SIGMA_FLOOR, SIGMA_SLOPE = 0.5, 0.07  # label σ = floor + slope·age (years): ~1 y for a child, ~3 y at 35, ~6 y at 80
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_SCALE = 1.0 / 58.4  # ≈ 1/ImageNet std in 0..255 units (one scalar: PretrainedConfig has one scale)


def crop_config(backbone_key: str) -> PretrainedConfig:
    """Preprocessing of a backbone: its registry member's, or VGG-16's (224 px, ImageNet normalisation)."""
    b = backbone(backbone_key)
    if b.member is not None:
        return pretrained_config(b.member)
    from services.scoring.training.vgg16 import INPUT_SIZE

    return dataclasses.replace(pretrained_config("wrn16_8_imdbwiki"), name="vgg16", input_size=INPUT_SIZE,
                               color_order="RGB", mean=IMAGENET_MEAN, scale=IMAGENET_SCALE)


def to_tensor(cfg: PretrainedConfig, crops: np.ndarray | torch.Tensor) -> torch.Tensor:
    """float32 NCHW input in the backbone's colour order and normalisation, on the crops' device."""
    x = torch.as_tensor(np.ascontiguousarray(crops) if isinstance(crops, np.ndarray) else crops).float()
    if cfg.color_order == "BGR":
        x = x.flip(-1)
    return ((x - torch.tensor(cfg.mean, device=x.device)) * cfg.scale).permute(0, 3, 1, 2).contiguous()


def age_label_distribution(ages: np.ndarray) -> torch.Tensor:
    """[N, 101] Gaussian label distributions on the age grid with σ growing with age (see the module docstring)."""
    ages = np.clip(np.asarray(ages, dtype=np.float64), 0, AGE_CLASSES - 1)
    sigma = torch.from_numpy(SIGMA_FLOOR + SIGMA_SLOPE * ages).float()[:, None]
    return soft_targets(torch.from_numpy(ages).float(), sigma)


def init_head_from_classifier(head: DexHead, classifier: nn.Linear, age_values: Sequence[float]) -> None:
    """Make a linear 101-way ``head`` (identity standardisation) equal the backbone's own age classifier.

    Grid age i takes the row of the published class nearest to i; grid ages sharing one class (those past the
    published range) split its mass evenly (bias − log n). The head thus starts as the published network, except
    that the last class's mass is spread over the ages beyond it, which the published network cannot express.
    """
    values = np.asarray(age_values, dtype=np.float64)
    nearest = np.abs(values[None, :] - np.arange(AGE_CLASSES)[:, None]).argmin(axis=1)
    shared = torch.from_numpy(np.bincount(nearest, minlength=len(values))[nearest]).float()
    linear = head.net[-1]
    with torch.no_grad():
        linear.weight.copy_(classifier.weight[torch.from_numpy(nearest)])
        linear.bias.copy_(classifier.bias[torch.from_numpy(nearest)] - torch.log(shared))


def build_member(backbone_key: str, models_dir: Path | None, pretrained: bool = True) -> DexHeadMember:
    """A trainable DexHeadMember: backbone (pretrained when it has weights) + one linear head.

    A backbone with an age classifier on its pooled map gets a mean-pooled head started as that classifier; the
    others a fresh head on 2×2-pooled features.
    """
    b = backbone(backbone_key)
    if b.member is not None and pretrained:
        from services.scoring.models.registry import create_model

        net = create_model(b.member, models_dir)
    else:
        net = backbone_constructor(backbone_key)()
    pooling = "gap" if b.classifier else "grid"
    features = b.channels * (1 if pooling == "gap" else GRID * GRID)
    spec = HeadSpec(backbone=b.member or b.key, layer=b.layer, relu=b.relu, pooling=pooling, in_features=features)
    member = DexHeadMember(net, HeadEnsemble(spec))
    if b.classifier and b.member is not None and pretrained:
        classifier = dict(net.named_modules())[b.classifier]
        init_head_from_classifier(member.heads.heads[0], classifier, pretrained_config(b.member).age_values)
    return member


def full_step(model: DexHeadMember, optimizer: torch.optim.Optimizer, x: torch.Tensor, target: torch.Tensor,
              teacher: torch.Tensor | None = None, distill: float = 0.0) -> float:
    """One optimisation step: cross-entropy against label distributions ``target`` [N, 101], plus ``distill`` ×
    KL(teacher ‖ model) when the frozen network's distributions ``teacher`` are given; the loss before the step."""
    model.train()
    log_probs = torch.log(model(x).float().clamp_min(PROB_FLOOR))
    loss = -(target * log_probs).sum(dim=1).mean()
    if teacher is not None and distill > 0:
        loss = loss + distill * (teacher * (torch.log(teacher.clamp_min(PROB_FLOOR)) - log_probs)).sum(dim=1).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def teacher_distribution(teacher: nn.Module, age_values: Sequence[float], x: torch.Tensor) -> torch.Tensor:
    """The frozen published network's age distribution for a batch, moved onto the 0..100 grid."""
    with torch.inference_mode():
        out = teacher(x)
    probs = (out[-1] if isinstance(out, tuple) else out).float().cpu().numpy()
    return torch.from_numpy(align_to_grid(probs, age_values)).float().to(x.device)


def save_full_member(path: Path, model: DexHeadMember, backbone_key: str, extra: dict[str, Any]) -> None:
    """Weights as fp16 plus the head spec and ``extra`` (training files, bootstrap bag, settings)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FULL_FORMAT, "backbone": backbone_key, "spec": asdict(model.heads.spec),
                "state": half_state(model.state_dict()), "extra": extra}, path)


def load_full_member(path: Path) -> tuple[DexHeadMember, dict[str, Any]]:
    """A saved fine-tuned member in eval mode (fp32) and its ``extra`` metadata (plus its ``backbone`` key)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("format") != FULL_FORMAT:
        raise ValueError(f"{path}: full-member format {blob.get('format')}, expected {FULL_FORMAT}")
    member = DexHeadMember(backbone_constructor(blob["backbone"])(), HeadEnsemble(HeadSpec(**blob["spec"])))
    member.load_state_dict(float_state(blob["state"]))
    return member.eval(), {**blob["extra"], "backbone": blob["backbone"]}


def default_workers(dev: torch.device) -> int:
    """Loader processes: none on a CPU (its cores are busy training), most of the cores feeding a GPU."""
    return 0 if dev.type == "cpu" else spare_cores()


def validation_mae(model: nn.Module, loader: DataLoader, cfg: PretrainedConfig, dev: torch.device) -> float:
    """MAE of the DEX expectation on un-augmented crops."""
    model.eval()
    grid = torch.arange(AGE_CLASSES, dtype=torch.float32, device=dev)
    errors = []
    with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
        for crops, ages in loader:
            probs = model(to_tensor(cfg, crops.to(dev, non_blocking=True))).float()
            errors.append((probs @ grid - ages.to(dev).float()).abs().cpu())
    return float(torch.cat(errors).mean())


def _finished_fingerprint(path: Path) -> str | None:
    """The fingerprint a saved member was trained under (None: saved before fingerprints existed)."""
    return torch.load(path, map_location="cpu", weights_only=True)["extra"].get("fingerprint")


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
    lr: float = FULL_LEARNING_RATE,
    distill: float = 0.0,
    log: Callable[[str], None] = print,
    *,
    workers: int | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
    patience: int = 0,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    val_limit: int | None = DEFAULT_VAL_LIMIT,
    resume: bool = False,
    pretrained: bool = True,
    progress: bool = False,
) -> list[Path]:
    """Train K members end to end, each on its own bootstrap sample; saves ``dex_full_<backbone>_k<i>.pt``.

    Each epoch is validated (out-of-bag rows; see ``member_rows``) and checkpointed; the saved member is the best
    epoch's. ``patience`` > 0 stops a member after that many epochs without a better validation MAE. ``resume``
    continues each member from its checkpoint and skips members already saved by the same settings.
    """
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    cfg = crop_config(backbone_key)
    workers = default_workers(dev) if workers is None else workers
    out_dir = Path(out_dir)
    need = crop_bytes(len(items), cfg.input_size)
    cache = decode_all(items, cfg, workers, progress=progress) if need <= cache_bytes else None
    log(f"{len(items)} faces, {cfg.input_size}-px crops ({need / 2**30:.2f} GiB): "
        f"{'decoded once into memory' if cache is not None else 'decoded per draw'}, {workers} loader workers")
    dataset = CropDataset(items, cfg, cache)
    pin = dev.type == "cuda"
    teacher = None
    if distill > 0:
        from services.scoring.models.registry import create_model

        member_name = backbone(backbone_key).member
        if member_name is None:
            raise ValueError(f"backbone {backbone_key} has no published network to distil from")
        teacher = create_model(member_name, models_dir).to(dev).eval()
    data_id = hashlib.sha256("\n".join(f"{i.path}\t{i.age}" for i in items).encode()).hexdigest()[:16]
    saved = []
    for k in range(members):
        bag, val_rows = member_rows(len(items), members, k, seed, val_fraction, val_limit)
        settings = {"backbone": backbone_key, "data": data_id, "member": k, "members": members, "epochs": epochs,
                    "lr": lr, "batch": batch_size, "distill": distill, "seed": seed, "val_fraction": val_fraction,
                    "val_limit": val_limit, "pretrained": pretrained}
        fingerprint = run_fingerprint(settings)
        path, ckpt = out_dir / f"dex_full_{backbone_key}_k{k}.pt", out_dir / f"dex_full_{backbone_key}_k{k}.ckpt"
        if resume and path.exists():
            if _finished_fingerprint(path) != fingerprint:
                raise ValueError(f"{path} was trained with other data or settings; move it away or use another --out")
            log(f"member {k + 1}/{members}: already trained ({path.name}), skipped")
            saved.append(path)
            continue
        torch.manual_seed(seed + k)
        model = build_member(backbone_key, models_dir, pretrained=pretrained).to(dev)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, lr, total_steps=epochs * math.ceil(len(bag) / batch_size), pct_start=WARMUP_FRACTION)
        state = MemberProgress()
        if resume and ckpt.exists():
            state = load_checkpoint(ckpt, fingerprint, model, optimizer, schedule)
            log(f"member {k + 1}/{members}: resumed after epoch {state.epochs_done}")
        sampler = EpochSampler(bag, seed, k)
        train_loader = crop_loader(dataset, sampler, batch_size, workers, pin)
        val_loader = crop_loader(dataset, PlainSampler(val_rows), batch_size, workers, pin) if len(val_rows) else None
        if val_loader is not None and state.baseline_mae is None:  # the starting network: what training must beat
            state.baseline_mae = validation_mae(model, val_loader, cfg, dev)
            log(f"member {k + 1}/{members}: validation MAE before training {state.baseline_mae:.2f}")
        for epoch in range(state.epochs_done, epochs):
            sampler.set_epoch(epoch)
            losses = []
            batches = tqdm(train_loader, desc=f"member {k + 1}/{members} epoch {epoch + 1}/{epochs}", unit="batch",
                           leave=False, disable=not progress)
            for crops, ages in batches:
                x = to_tensor(cfg, crops.to(dev, non_blocking=True))
                target = age_label_distribution(ages.numpy()).to(dev)
                soft = teacher_distribution(teacher, cfg.age_values, x) if teacher is not None else None
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                    losses.append(full_step(model, optimizer, x, target, soft, distill))
                schedule.step()
            val_mae = validation_mae(model, val_loader, cfg, dev) if val_loader is not None else None
            best = state.record(epoch, float(np.mean(losses)), val_mae, model.state_dict())
            save_checkpoint(ckpt, fingerprint, state, model, optimizer, schedule)
            log(f"member {k + 1}/{members} epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.3f}"
                + (f", validation MAE {val_mae:.2f} on {len(val_rows)} faces{' (best)' if best else ''}"
                   if val_mae is not None else ""))
            if patience and state.epochs_since_best() >= patience and epoch + 1 < epochs:
                log(f"member {k + 1}/{members}: no better validation MAE for {patience} epochs, stopped")
                break
        if val_loader is not None and state.best_state is None:
            raise RuntimeError(f"member {k + 1}/{members} diverged: no epoch reached a finite validation MAE "
                               f"(history {state.history}); lower --lr")
        if state.best_state is not None:
            model.load_state_dict(state.best_state)
        save_full_member(path, model.cpu(), backbone_key, {
            "train_files": [str(i.path) for i in items], "bag": bag.tolist(), "epochs": epochs, "lr": lr,
            "distill": distill, "seed": seed + k, "fingerprint": fingerprint, "history": state.history,
            "best_epoch": state.best_epoch, "validation_faces": len(val_rows),
            "validation_mae": state.best_mae if val_loader is not None else None,
            "validation_mae_before": state.baseline_mae})
        ckpt.unlink(missing_ok=True)
        saved.append(path)
    return saved
