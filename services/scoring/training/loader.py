"""What a full-network member trains on: items, their crops, each member's rows, and batches of augmented crops.

Why crops are streamed or held: UTKFace's 4k faces at 64 px are 50 MB and decode once; IMDB-WIKI's ~200k faces at
VGG-16's 224 px are 30 GB, which no training box should hold, so those crops are decoded per draw in ``DataLoader``
workers (which also take the augmentation off the training loop). The sampler yields ``(item, augmentation seed)``
pairs drawn from ``(seed, member, epoch)`` alone, so a run's crops do not depend on the number of workers, and a run
resumed at epoch e sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from services.scoring.crops import DEX_MARGIN, warp_affine
from services.scoring.members import member_crops
from services.scoring.models.registry import PretrainedConfig
from services.scoring.training.augment import augment_crop

DEFAULT_CACHE_BYTES = 4 << 30  # crops up to 4 GiB are decoded once and kept; larger sets stream from disk
DEFAULT_VAL_FRACTION = 0.1  # a single member's validation share (K > 1: the out-of-bag rows)
DEFAULT_VAL_LIMIT = 2000  # validation faces per member and epoch at most: a 200k-face bag leaves ~74k out of bag
MAX_WORKERS = 8  # loader / decoder processes at most: a handful keeps a GPU fed
NO_AUGMENT = -1  # augmentation seed meaning "the crop as cut" (validation, cache filling)


def spare_cores(limit: int = MAX_WORKERS) -> int:
    """Worker processes for decoding beside a busy main process: every core but one, at least 1, at most ``limit``."""
    return max(1, min(limit, (os.cpu_count() or 2) - 1))


@dataclass(frozen=True)
class ImageItem:
    """One training image: path, age, and either a face box (IMDB-WIKI) or five landmarks (None: whole image)."""

    path: Path
    age: float
    box: tuple[float, float, float, float] | None = None
    landmarks: np.ndarray | None = None


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


def member_rows(n: int, members: int, k: int, seed: int, val_fraction: float,
                val_limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Member ``k``'s training rows and validation rows.

    K > 1: a bootstrap bag (with repeats), validated on its out-of-bag rows, as DEX's ensemble was; one member:
    everything but a random ``val_fraction``. At most ``val_limit`` validation rows (a fixed random subset).
    """
    rng = np.random.default_rng(seed + k)
    if members > 1:
        bag = rng.integers(0, n, n)
        val = np.setdiff1d(np.arange(n), bag)
    else:
        order = rng.permutation(n)
        cut = round(n * val_fraction)
        val, bag = np.sort(order[:cut]), np.sort(order[cut:])
    if val_limit is not None and len(val) > val_limit:
        val = np.sort(rng.choice(val, val_limit, replace=False))
    return bag, val




def crop_bytes(count: int, size: int) -> int:
    """Memory of ``count`` uint8 RGB crops of ``size``²."""
    return count * size * size * 3


class CropDataset(Dataset):
    """``(item index, augmentation seed)`` → (uint8 crop [H, W, 3], age); from ``cache`` when given, else from disk."""

    def __init__(self, items: Sequence[ImageItem], cfg: PretrainedConfig, cache: np.ndarray | None = None) -> None:
        self.items = items
        self.cfg = cfg
        self.cache = cache

    def __len__(self) -> int:
        return len(self.items)

    def crop(self, index: int) -> np.ndarray:
        """The un-augmented crop of item ``index``."""
        if self.cache is not None:
            return self.cache[index]
        return load_crop(self.items[index], self.cfg)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, float]:
        index, seed = key
        crop = self.crop(index)
        if seed != NO_AUGMENT:
            crop = augment_crop(crop, np.random.default_rng(seed))
        return torch.from_numpy(np.require(crop, np.uint8, ["C", "W"])), float(self.items[index].age)


class EpochSampler(Sampler):
    """One epoch of a member: its rows (a bootstrap bag, with repeats) shuffled, each with a fresh augmentation seed.

    Everything is drawn from ``(seed, member, epoch)``: call ``set_epoch`` before iterating.
    """

    def __init__(self, rows: Sequence[int], seed: int, member: int) -> None:
        self.rows = np.asarray(rows, dtype=np.int64)
        self.seed, self.member, self.epoch = seed, member, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.member, self.epoch])
        order = rng.permutation(self.rows)
        seeds = rng.integers(0, 2**62, len(order))
        return iter(zip(order.tolist(), seeds.tolist(), strict=True))


class PlainSampler(Sampler):
    """Fixed rows in order, un-augmented (validation and cache filling)."""

    def __init__(self, rows: Sequence[int]) -> None:
        self.rows = [int(r) for r in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter((r, NO_AUGMENT) for r in self.rows)


def crop_loader(dataset: CropDataset, sampler: Sampler, batch_size: int, workers: int, pin: bool) -> DataLoader:
    """Batches of (crops [N, H, W, 3] uint8, ages [N]) in the sampler's order."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, pin_memory=pin,
                      persistent_workers=False, drop_last=False)


def decode_all(items: Sequence[ImageItem], cfg: PretrainedConfig, workers: int, batch_size: int = 64,
               progress: bool = False) -> np.ndarray:
    """Every item's crop, decoded once (in ``workers`` processes) into one uint8 array [N, H, W, 3]."""
    dataset = CropDataset(items, cfg)
    out = np.empty((len(items), cfg.input_size, cfg.input_size, 3), dtype=np.uint8)
    loader = crop_loader(dataset, PlainSampler(range(len(items))), batch_size, workers, pin=False)
    start = 0
    for crops, _ages in tqdm(loader, desc="decode crops", unit="batch", disable=not progress):
        out[start:start + len(crops)] = crops.numpy()
        start += len(crops)
    return out
