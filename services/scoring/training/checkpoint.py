"""Per-epoch checkpoints of a full-network member, so a long GPU run survives a crash, a pre-emption or a Ctrl-C.

Why a fingerprint: resuming a checkpoint written with other data or settings would silently mix two runs. A
checkpoint carries the hash of everything that shapes a member's training (backbone, files and ages, bag, epochs,
learning rate, batch, distillation, seed), and a mismatch is an error that names the file to delete. Files are
written to a temporary name and renamed, so a crash during the write leaves the previous epoch's checkpoint intact.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = 1


def run_fingerprint(settings: dict[str, Any]) -> str:
    """A short stable hash of a member's training settings (JSON-serialisable values)."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class MemberProgress:
    """What a member has done so far: epochs finished, the validation history and the best epoch's weights."""

    epochs_done: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_mae: float = float("inf")
    best_epoch: int = -1
    best_state: dict[str, torch.Tensor] | None = None
    baseline_mae: float | None = None  # validation MAE of the network before its first step

    def record(self, epoch: int, loss: float, val_mae: float | None, state: dict[str, torch.Tensor]) -> bool:
        """Add one epoch; keeps a CPU copy of ``state`` when it is the best so far (returns whether it is)."""
        entry = {"epoch": epoch + 1, "loss": round(loss, 5)}
        if val_mae is not None:
            entry["val_mae"] = round(val_mae, 4)
        self.history.append(entry)
        self.epochs_done = epoch + 1
        if val_mae is None:  # nothing to choose by: the latest epoch is the one saved, and the live model holds it
            self.best_epoch = epoch + 1
            return True
        if val_mae < self.best_mae:
            self.best_mae, self.best_epoch = val_mae, epoch + 1
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
            return True
        return False

    def epochs_since_best(self) -> int:
        return self.epochs_done - self.best_epoch


def save_checkpoint(path: Path, fingerprint: str, progress: MemberProgress, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, schedule: Any) -> None:
    """Everything needed to continue after the last finished epoch, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": CHECKPOINT_FORMAT, "fingerprint": fingerprint, "epochs_done": progress.epochs_done,
        "history": progress.history, "best_mae": progress.best_mae, "best_epoch": progress.best_epoch,
        "best_state": progress.best_state, "baseline_mae": progress.baseline_mae, "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(), "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, fingerprint: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    schedule: Any) -> MemberProgress:
    """Restore a checkpoint into ``model``, ``optimizer`` and ``schedule``; ValueError when it is another run's."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("format") != CHECKPOINT_FORMAT or blob.get("fingerprint") != fingerprint:
        raise ValueError(f"{path} was written by a run with other data or settings; delete it to start this "
                         "member afresh, or resume with the original command")
    model.load_state_dict(blob["model"])
    optimizer.load_state_dict(blob["optimizer"])
    schedule.load_state_dict(blob["schedule"])
    torch.set_rng_state(blob["torch_rng"])
    if blob["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["cuda_rng"])
    return MemberProgress(blob["epochs_done"], blob["history"], blob["best_mae"], blob["best_epoch"],
                          blob["best_state"], blob["baseline_mae"])
