"""Face landmarks for training on a labelled folder: the detector alone, cached in append-only shards.

Why not the evaluation cache alone: ``evaluation.extract`` runs every backbone member on every image and rewrites one
growing file at each checkpoint, which suits the few thousand faces of an evaluation. A training folder of 100k+
photos needs only where the face is, so here the detector runs alone, photos are decoded in ``DataLoader`` workers,
and each checkpoint writes one new shard (linear in the folder's size; a killed run keeps every finished shard).

Why the evaluation cache is read first: it holds the same detector's choice of face for images already evaluated, so
a folder that ``howhot eval age`` has seen trains on exactly the chips it was measured on, without detecting again.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from libs.common.images import DECODE_ERRORS, load_image_file
from services.scoring.evaluation.data import AgeSample
from services.scoring.evaluation.extract import BACKBONE_MEMBERS, DEFAULT_CACHE_DIR, PIPELINE_KEY, cache_path
from services.scoring.evaluation.faces import chosen_landmarks
from services.scoring.training.loader import spare_cores

LANDMARKS_VERSION = "1"  # bump when what a shard stores changes meaning
DEFAULT_LANDMARK_DIR = Path(".howhot/cache/landmarks")
SHARD_SIZE = 1024  # photos per shard: a killed run loses at most this much detection
DETECT_BATCH = 16  # photos per detector call, as the evaluation cache detects them


@dataclass(frozen=True)
class FolderLandmarks:
    """Image landmarks (5, 2) per file that has any, and why each unreadable file has none."""

    landmarks: dict[str, np.ndarray]
    unreadable: dict[str, str]
    detected: int  # photos the detector ran on in this call (the rest came from a cache)


def shard_dir(dataset_dir: Path, cache_dir: Path = DEFAULT_LANDMARK_DIR) -> Path:
    """One shard folder per data-set folder and cache version."""
    key = json.dumps([str(Path(dataset_dir).resolve()), LANDMARKS_VERSION])
    return cache_dir / hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:10]


def read_shards(directory: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every finished shard's landmarks and unreadable files (later shards win)."""
    landmarks: dict[str, np.ndarray] = {}
    unreadable: dict[str, str] = {}
    for path in sorted(directory.glob("shard-*.npz")):
        with np.load(path, allow_pickle=False) as data:
            landmarks.update(zip((str(f) for f in data["files"]), data["landmarks"], strict=True))
            unreadable.update(zip((str(f) for f in data["bad_files"]), (str(e) for e in data["bad_reasons"]),
                                  strict=True))
    return landmarks, unreadable


def write_shard(directory: Path, landmarks: dict[str, np.ndarray], unreadable: dict[str, str]) -> Path:
    """One new shard, written atomically (temp file + rename) under a name no other writer picks."""
    directory.mkdir(parents=True, exist_ok=True)
    files = sorted(landmarks)
    bad = sorted(unreadable)
    path = directory / f"shard-{uuid.uuid4().hex}.npz"
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, files=np.array(files, dtype=str),
             landmarks=np.stack([landmarks[f] for f in files]).astype(np.float32) if files
             else np.zeros((0, 5, 2), np.float32),
             bad_files=np.array(bad, dtype=str), bad_reasons=np.array([unreadable[f] for f in bad], dtype=str))
    tmp.replace(path)
    return path


def evaluation_landmarks(dataset_dir: Path, cache_dir: Path = DEFAULT_CACHE_DIR) -> dict[str, np.ndarray]:
    """Landmarks stored by ``howhot eval age`` for this folder (only the two arrays needed are read)."""
    path = cache_path(dataset_dir, PIPELINE_KEY, BACKBONE_MEMBERS, cache_dir)
    if not path.exists():
        return {}
    with np.load(path, allow_pickle=False) as data:
        return dict(zip((str(f) for f in data["files"]), data["landmarks"].astype(np.float32), strict=True))


class _Photos(Dataset):
    """Decodes one photo per item in a worker; an unreadable file comes back as its error, not as an exception."""

    def __init__(self, samples: Sequence[AgeSample]) -> None:
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[str, np.ndarray | None, str]:
        sample = self.samples[index]
        try:
            return sample.file, load_image_file(sample.path), ""
        except DECODE_ERRORS as exc:  # a missing, truncated or odd file
            return sample.file, None, f"{type(exc).__name__}: {exc}"


def decode_workers(requested: int | None) -> int:
    """Photo decoding processes: as asked, else every core but the detector's, at most ``MAX_WORKERS``."""
    return requested if requested is not None else spare_cores()


def _as_list(batch: list) -> list:
    return batch


def folder_landmarks(samples: Sequence[AgeSample], dataset_dir: Path, *, detector: object | None = None,
                     workers: int = 2, cache_dir: Path = DEFAULT_LANDMARK_DIR,
                     evaluation_cache_dir: Path = DEFAULT_CACHE_DIR, progress: bool = True) -> FolderLandmarks:
    """Landmarks of every sample: from the evaluation cache, then the shards, then the detector (saved as shards)."""
    directory = shard_dir(dataset_dir, cache_dir)
    known, unreadable = read_shards(directory)
    from_evaluation = evaluation_landmarks(dataset_dir, evaluation_cache_dir)
    known = {**known, **from_evaluation}
    missing = [s for s in samples if s.file not in known and s.file not in unreadable]
    if missing:
        if detector is None:
            from services.scoring.evaluation.detection import detector as bound_detector

            detector = bound_detector()
        loader = DataLoader(_Photos(missing), batch_size=DETECT_BATCH, num_workers=workers, collate_fn=_as_list)
        new: dict[str, np.ndarray] = {}
        new_bad: dict[str, str] = {}
        unsaved = 0
        with tqdm(total=len(missing), desc=f"{Path(dataset_dir).name} landmarks", unit="img",
                  disable=not progress) as bar:
            for batch in loader:
                readable = [(file, image) for file, image, _ in batch if image is not None]
                new_bad.update({file: error for file, image, error in batch if image is None})
                found = detector.detect_batch([image for _, image in readable]) if readable else []  # type: ignore[attr-defined]
                for (file, image), faces in zip(readable, found, strict=True):
                    new[file] = np.asarray(chosen_landmarks(image, faces)[0], np.float32)
                unsaved += len(batch)
                bar.update(len(batch))
                if unsaved >= SHARD_SIZE:
                    write_shard(directory, new, new_bad)
                    known.update(new)
                    unreadable.update(new_bad)
                    new, new_bad, unsaved = {}, {}, 0
        if unsaved:
            write_shard(directory, new, new_bad)
            known.update(new)
            unreadable.update(new_bad)
    wanted = {s.file for s in samples}
    return FolderLandmarks({f: v for f, v in known.items() if f in wanted},
                           {f: e for f, e in unreadable.items() if f in wanted}, len(missing))
