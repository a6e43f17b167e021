"""Full-network DEX training loop: crop loading, validation on out-of-bag faces, best-epoch saving, exact resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from services.scoring.training.checkpoint import MemberProgress
from services.scoring.training.full import crop_config, load_full_member, train_full, validation_mae
from services.scoring.training.loader import (
    CropDataset,
    EpochSampler,
    ImageItem,
    PlainSampler,
    crop_loader,
    decode_all,
    member_rows,
)

BACKBONE = "agegender_cc0"  # the smallest backbone: a few ms per 64-px crop on a CPU


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory) -> list[ImageItem]:
    """Twelve noisy 96-px 'photos' whose brightness grows with the age label (something learnable)."""
    folder = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    out = []
    for i in range(12):
        age = float(5 + 6 * i)
        pixels = np.clip(rng.normal(40 + 2.5 * age, 25, (96, 96, 3)), 0, 255).astype(np.uint8)
        path = folder / f"{i}.png"
        Image.fromarray(pixels).save(path)
        out.append(ImageItem(path, age))
    return out


def test_epoch_sampler_draws_from_seed_member_and_epoch_only() -> None:
    bag = [3, 3, 0, 7, 1]
    a, b = EpochSampler(bag, seed=1, member=0), EpochSampler(bag, seed=1, member=0)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    assert sorted(r for r, _ in a) == sorted(bag)
    b.set_epoch(3)
    assert list(a) != list(b)
    assert list(a) != list(EpochSampler(bag, seed=1, member=1))


def test_member_rows_validate_on_out_of_bag_faces_or_a_held_out_share() -> None:
    bag, val = member_rows(200, members=3, k=1, seed=0, val_fraction=0.1, val_limit=None)
    assert len(bag) == 200 and len(set(bag.tolist()) & set(val.tolist())) == 0
    assert set(bag.tolist()) | set(val.tolist()) == set(range(200))
    single_bag, single_val = member_rows(200, members=1, k=0, seed=0, val_fraction=0.1, val_limit=None)
    assert len(single_val) == 20 and len(single_bag) == 180
    assert len(set(single_bag.tolist()) & set(single_val.tolist())) == 0
    _, capped = member_rows(200, members=3, k=1, seed=0, val_fraction=0.1, val_limit=10)
    assert len(capped) == 10 and set(capped.tolist()) <= set(val.tolist())


def test_streamed_crops_equal_cached_crops_whatever_the_worker_count(items: list[ImageItem]) -> None:
    cfg = crop_config(BACKBONE)
    cache = decode_all(items, cfg, workers=1)
    assert cache.shape == (len(items), cfg.input_size, cfg.input_size, 3)
    streamed, cached = CropDataset(items, cfg), CropDataset(items, cfg, cache)
    for key in [(0, 12345), (5, 99), (11, -1)]:
        torch.testing.assert_close(streamed[key][0], cached[key][0])
        assert streamed[key][1] == items[key[0]].age
    assert not torch.equal(cached[(0, 1)][0], cached[(0, 2)][0])  # a different seed, a different augmentation


def test_progress_keeps_the_best_epoch_and_counts_epochs_since() -> None:
    progress = MemberProgress()
    weights = {"w": torch.zeros(2)}
    assert progress.record(0, 3.0, 9.0, weights)
    weights["w"] += 1
    assert progress.record(1, 2.5, 7.0, weights)
    weights["w"] += 1
    assert not progress.record(2, 2.4, 7.5, weights)
    assert progress.best_epoch == 2 and progress.epochs_since_best() == 1
    torch.testing.assert_close(progress.best_state["w"], torch.ones(2))  # a copy, not the live tensor


def _train(items: list[ImageItem], out: Path, **kwargs: object) -> list[Path]:
    settings: dict = {"members": 2, "epochs": 3, "batch_size": 4, "lr": 1e-3, "pretrained": False, "seed": 0,
                      "device": "cpu"}
    settings.update(kwargs)
    members, epochs = settings.pop("members"), settings.pop("epochs")
    return train_full(items, BACKBONE, members, epochs, out, **settings)  # type: ignore[arg-type]


def test_saved_member_is_the_best_validated_epoch(items: list[ImageItem], tmp_path: Path) -> None:
    saved = _train(items, tmp_path, log=lambda _m: None)
    assert [p.name for p in saved] == [f"dex_full_{BACKBONE}_k0.pt", f"dex_full_{BACKBONE}_k1.pt"]
    assert not list(tmp_path.glob("*.ckpt*"))  # checkpoints go once a member is saved
    cfg = crop_config(BACKBONE)
    for k, path in enumerate(saved):
        model, extra = load_full_member(path)
        history = [h["val_mae"] for h in extra["history"]]
        assert len(history) == 3 and extra["validation_mae"] == pytest.approx(min(history))
        assert extra["best_epoch"] == 1 + int(np.argmin(history))
        _, val_rows = member_rows(len(items), 2, k, 0, 0.1, None)
        assert extra["validation_faces"] == len(val_rows) > 0
        loader = crop_loader(CropDataset(items, cfg), PlainSampler(val_rows), 4, 0, pin=False)
        # the saved (fp16) weights reproduce the best epoch's validation MAE
        assert validation_mae(model, loader, cfg, torch.device("cpu")) == pytest.approx(min(history), abs=0.05)


def test_an_interrupted_run_resumes_to_the_same_weights(items: list[ImageItem], tmp_path: Path) -> None:
    whole = _train(items, tmp_path / "whole", log=lambda _m: None)

    class Crash(RuntimeError):
        pass

    def crash_after_second_epoch(message: str) -> None:
        if message.startswith("member 1/2 epoch 2/3"):
            raise Crash(message)

    with pytest.raises(Crash):
        _train(items, tmp_path / "cut", log=crash_after_second_epoch)
    assert (tmp_path / "cut" / f"dex_full_{BACKBONE}_k0.ckpt").exists()
    messages: list[str] = []
    resumed = _train(items, tmp_path / "cut", log=messages.append, resume=True)
    assert "member 1/2: resumed after epoch 2" in messages
    assert not any(m.startswith("member 1/2: validation MAE before") for m in messages)  # kept from the first run
    assert any(m.startswith("member 2/2: validation MAE before") for m in messages)
    assert sum(m.startswith("member 1/2 epoch") for m in messages) == 1  # only the third epoch ran again
    for a, b in zip(whole, resumed, strict=True):
        first, second = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
        assert first["extra"]["history"] == second["extra"]["history"]
        for name, tensor in first["state"].items():
            torch.testing.assert_close(second["state"][name], tensor, rtol=0, atol=0)

    again: list[str] = []
    _train(items, tmp_path / "cut", log=again.append, resume=True)
    assert sum("already trained" in m for m in again) == 2
    with pytest.raises(ValueError, match="other data or settings"):
        _train(items, tmp_path / "cut", log=lambda _m: None, resume=True, lr=5e-4)


def test_patience_stops_a_member_that_no_longer_improves(items: list[ImageItem], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import services.scoring.training.full as full

    scripted = iter([6.0, 5.0, 4.0, 4.5, 4.6, 4.7, 4.8])  # before training, then after each epoch
    monkeypatch.setattr(full, "validation_mae", lambda *_a: next(scripted))
    messages: list[str] = []
    saved = _train(items, tmp_path, members=1, epochs=6, patience=2, val_fraction=0.25, log=messages.append)
    _, extra = load_full_member(saved[0])
    assert [h["val_mae"] for h in extra["history"]] == [5.0, 4.0, 4.5, 4.6]
    assert extra["best_epoch"] == 2 and extra["validation_mae"] == 4.0 and extra["validation_mae_before"] == 6.0
    assert any("no better validation MAE for 2 epochs, stopped" in m for m in messages)


def test_a_run_whose_validation_never_is_finite_fails_loudly(items: list[ImageItem], tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import services.scoring.training.full as full

    monkeypatch.setattr(full, "validation_mae", lambda *_a: float("nan"))
    with pytest.raises(RuntimeError, match="diverged"):
        _train(items, tmp_path, members=1, epochs=2, log=lambda _m: None)
    assert not list(tmp_path.glob("*.pt"))


def test_the_validation_share_is_checked_on_the_command_line() -> None:
    import argparse

    from services.scoring.training.cli import add_train_arguments

    parser = argparse.ArgumentParser(exit_on_error=False)
    add_train_arguments(parser)
    args = parser.parse_args(["--data", "x", "--mode", "full", "--val-fraction", "0"])
    assert args.val_fraction == 0.0
    for bad in ("1", "-0.1", "0.9"):
        with pytest.raises(argparse.ArgumentError, match=r"between 0 and 0\.5"):
            parser.parse_args(["--data", "x", "--val-fraction", bad])
