"""Training crops for full-network DEX training: streamed from disk or held in memory, augmented in loader workers.

Why both: UTKFace's 4k faces at 64 px are 50 MB and decode once; IMDB-WIKI's ~200k faces at VGG-16's 224 px are
30 GB, which no training box should hold, so those crops are decoded per draw in ``DataLoader`` workers (which also
take the augmentation off the training loop). The sampler yields ``(item, augmentation seed)`` pairs drawn from
``(seed, member, epoch)`` alone, so a run's crops do not depend on the number of workers, and a run resumed at epoch e
sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from services.scoring.training.augment import augment_crop

if TYPE_CHECKING:
    from services.scoring.models.registry import PretrainedConfig
    from services.scoring.training.full import ImageItem

DEFAULT_CACHE_BYTES = 4 << 30  # crops up to 4 GiB are decoded once and kept; larger sets stream from disk
NO_AUGMENT = -1  # augmentation seed meaning "the crop as cut" (validation, cache filling)


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
        from services.scoring.training.full import load_crop

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
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="decode crops", unit="batch")
    start = 0
    for crops, _ages in loader:
        out[start:start + len(crops)] = crops.numpy()
        start += len(crops)
    return out
