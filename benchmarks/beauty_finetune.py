"""EXPERIMENT: fine-tune the tail of the CC0 dlib face-embedding network on MEBeauty (split_2022, duplicates merged).

Question: does unfreezing the last residual block(s) of the embedding net lift the MEBeauty test Pearson above the
served head's 0.750 (frozen embedding + member features, benchmarks/results/beauty.md)?

Steps (reuse the project's functions; nothing in services/ is changed):
  prepare  : 256-px chips from the cached RetinaFace landmarks → 150-px dlib chips (padding 0.25) for every labelled
             face + mirror; the frozen network's activations entering block FROM_BLOCK (128×8×8) cached once.
  train    : tail (blocks[k:] + fc) unfrozen + a linear head on the 128-d output, initialised with a ridge fit on the
             frozen embeddings; MSE, AdamW, early stopping on val Pearson (face + mirror averaged).
  Results: .howhot/results/beauty_finetune*.json

    PYTHONPATH=. .venv/bin/python benchmarks/beauty_finetune.py prepare
    PYTHONPATH=. .venv/bin/python benchmarks/beauty_finetune.py train --start 13 --name tail13
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DATASET = Path("../shared/data/mebeauty")
CACHE = Path(".howhot/cache/beauty_finetune")
RESULTS = Path(".howhot/results")
FROM_BLOCK = 8  # cached activations enter this block (128 ch, 8×8); tails start at >= this block


def _labels():
    from services.scoring.beauty.dataset import load_mebeauty
    from services.scoring.beauty.evaluate import mebeauty_files

    labels = load_mebeauty(DATASET)
    all_files = mebeauty_files(DATASET)
    index = {f: i for i, f in enumerate(all_files)}
    rows = np.array([index[f] for f in labels.files])
    return labels, all_files, rows


def prepare() -> None:
    from services.scoring.beauty.cache import cached_landmarks
    from services.scoring.beauty.chips import chips_for
    from services.scoring.beauty.features import EMBEDDING_BLOCK, embedding_chips
    from services.scoring.models.dlib_face_embedding import preprocess
    from services.scoring.models.embedding_registry import embedding_model

    labels, all_files, rows = _labels()
    t0 = time.time()
    marks = cached_landmarks("mebeauty", DATASET / "images", all_files)  # cached: no detection
    files = [all_files[r] for r in rows]
    chips256, chip_lms = chips_for([DATASET / "images" / f for f in files], marks["landmarks"][rows])
    chips = embedding_chips(chips256, chip_lms)  # uint8 [N,150,150,3]
    print(f"chips {chips.shape} in {time.time() - t0:.0f}s")
    model = embedding_model()
    acts, embs = [], []
    t0 = time.time()
    with torch.inference_mode():
        for mirror in (False, True):
            a_list, e_list = [], []
            for s in range(0, len(chips), 64):
                x = preprocess(chips[s:s + 64])
                if mirror:
                    x = x.flip(-1)
                out = F.max_pool2d(F.relu(model.stem_affine(model.stem(x))), 3, stride=2)
                out = model.blocks[:FROM_BLOCK](out)
                a_list.append(out.numpy().astype(np.float16))
                e_list.append(model.fc(model.blocks[FROM_BLOCK:](out).mean(dim=(2, 3))).numpy())
            acts.append(np.concatenate(a_list))
            embs.append(np.concatenate(e_list))
    print(f"activations {acts[0].shape} in {time.time() - t0:.0f}s")
    # sanity: mirror-averaged embedding equals the served cache block
    from services.scoring.beauty.cache import cached_features
    served = cached_features("mebeauty", DATASET / "images", all_files, ["dlib_face_embedding"])[EMBEDDING_BLOCK][rows]
    diff = np.abs((embs[0] + embs[1]) / 2 - served).max()
    print(f"max |Δ| vs served embedding block: {diff:.2e}")
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(CACHE / "mebeauty.npz", files=np.array(files), chips=chips, act=acts[0], act_mirror=acts[1],
             emb=embs[0], emb_mirror=embs[1], score=labels.score, published=labels.published_mean,
             split=labels.split)


class Tail(nn.Module):
    def __init__(self, model: nn.Module, start: int, pool: str = "emb") -> None:
        super().__init__()
        self.pre = copy.deepcopy(model.blocks[FROM_BLOCK:start]).eval()  # frozen, computed once
        for p in self.pre.parameters():
            p.requires_grad_(False)
        self.blocks = copy.deepcopy(model.blocks[start:])
        self.fc = copy.deepcopy(model.fc)
        self.head = nn.Linear(128, 1)
        self.drop = nn.Dropout(0.0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(x).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x))).squeeze(1)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def metrics(pred: np.ndarray, true: np.ndarray) -> dict:
    from services.scoring.beauty.train import regression_metrics

    return regression_metrics(np.clip(pred, 1, 10), true)


def served_predictions(score: np.ndarray, split: np.ndarray) -> dict[str, np.ndarray]:
    """The committed head's predictions (train+val refit) and a train-only refit with its chosen config (for val)."""
    from services.scoring.beauty.evaluate import mebeauty_features
    from services.scoring.beauty.features import stack_blocks
    from services.scoring.beauty.scorer import load_beauty_head
    from services.scoring.beauty.train import _fit

    _labels_df, all_files, rows = _labels()
    head, _ = load_beauty_head("beauty_head_all")
    blocks = mebeauty_features(DATASET, all_files, head.meta.get("block_set", "all"), progress=False)
    feats = {k: v[rows] for k, v in blocks.items()}
    x = stack_blocks(feats, head.blocks)
    pred_served = head.predict(x)[0]
    ch = head.meta["chosen"]
    tr = split == "train"
    sizes = [feats[b].shape[1] for b in head.blocks]
    head_tr = _fit(x[tr], score[tr], sizes, ch["balance"], ch["alpha"], ch["weight_decay"], ch["kind"], head.blocks)
    return {"served": pred_served, "served_train_only": head_tr.predict(x)[0]}


def load_prepared(path: Path, seed: int) -> tuple[Any, np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """Seed torch and numpy; the prepared cache, its scores, split names and (train, val, test) masks."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    d = np.load(path)
    return d, d["score"], d["split"], tuple(d["split"] == s for s in ("train", "val", "test"))


def face_mirror_predict(net: nn.Module, a0: torch.Tensor, a1: torch.Tensor, mask: np.ndarray) -> np.ndarray:
    """The tail's prediction per masked face: the mean over the face's and its mirror's cached activations."""
    net.eval()
    idx = np.flatnonzero(mask)
    out = []
    with torch.inference_mode():
        for s in range(0, len(idx), 256):
            i = torch.from_numpy(idx[s:s + 256])
            out.append(((net(a0[i]) + net(a1[i])) / 2).numpy())
    return np.concatenate(out).astype(np.float64)


def fit_epochs(
    net: nn.Module, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler, idx_tr: np.ndarray,
    batch_loss: Callable[[np.ndarray], torch.Tensor], predict_val: Callable[[], np.ndarray], val_score: np.ndarray,
    args: argparse.Namespace, hist: list[dict],
) -> tuple[dict, int]:
    """Epochs over every training face and its mirror as separate samples (``batch_loss`` of sample ids 2i / 2i+1);
    keeps the best val-Pearson state, or with ``args.refit`` the state at ``args.stop_epoch``. Appends to ``hist``."""
    best_state, best_r, best_epoch = copy.deepcopy(net.state_dict()), hist[0]["val_r"], 0
    deadline = time.time() + getattr(args, "max_minutes", float("inf")) * 60
    for epoch in range(1, args.epochs + 1):
        net.train()
        t0 = time.time()
        samples = np.concatenate([idx_tr * 2, idx_tr * 2 + 1])
        np.random.shuffle(samples)
        total = 0.0
        for s in range(0, len(samples), args.batch):
            b = samples[s:s + args.batch]
            loss = batch_loss(b)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(b)
        pv = predict_val()
        r = pearson(pv, val_score)
        hist.append({"epoch": epoch, "loss": total / len(samples), "val_r": r, "val_mae": float(np.mean(np.abs(
            np.clip(pv, 1, 10) - val_score))), "sec": time.time() - t0})
        print(hist[-1], flush=True)
        if args.refit:
            if epoch == args.stop_epoch:
                return copy.deepcopy(net.state_dict()), epoch
        elif r > best_r:
            best_r, best_epoch, best_state = r, epoch, copy.deepcopy(net.state_dict())
        if time.time() > deadline:
            print("time budget reached")
            break
    return best_state, best_epoch


def save_report(report: dict, name: str, pred_path: Path, pv: np.ndarray, pt: np.ndarray, score: np.ndarray,
                split: np.ndarray) -> None:
    """Blend with the served head (weight chosen on val against the served config refitted on train only, as the
    committed head saw val; test with the committed head), print the summary, write the report and predictions."""
    va, te = split == "val", split == "test"
    sp = served_predictions(score, split)
    ws = np.linspace(0, 1, 21)
    val_rs = [pearson(w * pv + (1 - w) * sp["served_train_only"][va], score[va]) for w in ws]
    w_best = float(ws[int(np.argmax(val_rs))])
    report["served"] = {"test": metrics(sp["served"][te], score[te]),
                        "val_train_only": metrics(sp["served_train_only"][va], score[va]),
                        "test_train_only": metrics(sp["served_train_only"][te], score[te])}
    report["blend"] = {"w_finetuned_val_chosen": w_best, "val_r_curve": dict(zip(map(float, ws), val_rs, strict=True)),
                       "test": metrics(w_best * pt + (1 - w_best) * sp["served"][te], score[te]),
                       "test_w0.5": metrics(0.5 * pt + 0.5 * sp["served"][te], score[te]),
                       "test_train_only_served": metrics(w_best * pt + (1 - w_best) * sp["served_train_only"][te],
                                                         score[te])}
    print(json.dumps({k: v for k, v in report.items() if k != "history"}, indent=1))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=1))
    np.savez(pred_path, val=pv, test=pt)


def training_arguments(description: str, start: object, name: str, head_lr: float, dropout: float,
                       stop_epoch: int) -> argparse.ArgumentParser:
    """The options both tail fine-tuning experiments share (their defaults differ)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cmd", choices=["prepare", "train"])
    p.add_argument("--start", type=type(start), default=start, help="first unfrozen block / tensor of the tail")
    p.add_argument("--name", default=name)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--head-lr", type=float, default=head_lr)
    p.add_argument("--wd", type=float, default=1e-2)
    p.add_argument("--dropout", type=float, default=dropout)
    p.add_argument("--noise", type=float, default=0.0)
    p.add_argument("--refit", action="store_true", help="train on train+val, keep epoch --stop-epoch (val in-sample)")
    p.add_argument("--stop-epoch", type=int, default=stop_epoch)
    p.add_argument("--seed", type=int, default=0)
    return p


def augmented_activations(model: nn.Module, chips: np.ndarray, mirror: np.ndarray, start: int) -> torch.Tensor:
    """Random similarity jitter (scale ±7 %, rotation ±6°, shift ±4 px) + brightness/contrast ±10 % of 150-px chips,
    mirrored where asked, then the frozen prefix of the network up to block ``start`` (no gradients)."""
    from services.scoring.models.dlib_face_embedding import preprocess

    x = preprocess(chips)
    n = len(x)
    with torch.no_grad():
        x = torch.where(torch.from_numpy(mirror)[:, None, None, None], x.flip(-1), x)
        ang = (torch.rand(n) * 2 - 1) * np.deg2rad(6)
        sc = 1 + (torch.rand(n) * 2 - 1) * 0.07
        tx, ty = [(torch.rand(n) * 2 - 1) * 4 / 75 for _ in range(2)]
        cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        x = x * (1 + (torch.rand(n, 1, 1, 1) * 2 - 1) * 0.1) + (torch.rand(n, 1, 1, 1) * 2 - 1) * 0.1 * 0.25
        out = F.max_pool2d(F.relu(model.stem_affine(model.stem(x))), 3, stride=2)
        return model.blocks[:start](out)


def train(args: argparse.Namespace) -> None:
    from services.scoring.models.embedding_registry import embedding_model

    d, score, split, (tr, va, te) = load_prepared(CACHE / "mebeauty.npz", args.seed)
    model = embedding_model()
    net = Tail(model, args.start)
    # activations entering the tail (frozen part between FROM_BLOCK and start applied once)
    with torch.inference_mode():
        a0 = net.pre(torch.from_numpy(d["act"].astype(np.float32)))
        a1 = net.pre(torch.from_numpy(d["act_mirror"].astype(np.float32)))
    a0, a1 = a0.clone(), a1.clone()
    y = torch.tensor(score, dtype=torch.float32)
    # head init: ridge on frozen embeddings (train faces + mirrors), alpha chosen on val
    e_tr = np.concatenate([d["emb"][tr], d["emb_mirror"][tr]]).astype(np.float64)
    y_tr2 = np.concatenate([score[tr], score[tr]])
    mu = e_tr.mean(0)
    best = None
    for alpha in np.logspace(-2, 3, 21):
        xc = e_tr - mu
        w = np.linalg.solve(xc.T @ xc + alpha * len(xc) * np.eye(128) / 100, xc.T @ (y_tr2 - y_tr2.mean()))
        pv = ((d["emb"][va] - mu) @ w + (d["emb_mirror"][va] - mu) @ w) / 2 + y_tr2.mean()
        r = pearson(pv, score[va])
        if best is None or r > best[0]:
            best = (r, alpha, w)
    print(f"ridge init: val r {best[0]:.4f} (alpha {best[1]:.3g})")
    with torch.no_grad():
        net.head.weight.copy_(torch.tensor(best[2], dtype=torch.float32)[None])
        net.head.bias.fill_(float(y_tr2.mean() - mu @ best[2]))
    net.drop.p = args.dropout
    backbone = [p for p in list(net.blocks.parameters()) + list(net.fc.parameters())]
    opt = torch.optim.AdamW([{"params": backbone, "lr": args.lr, "weight_decay": args.wd},
                             {"params": net.head.parameters(), "lr": args.head_lr, "weight_decay": 0.0}])
    idx_tr = np.flatnonzero(tr | va) if args.refit else np.flatnonzero(tr)  # refit: train+val, fixed epochs
    steps_per_epoch = int(np.ceil(2 * len(idx_tr) / args.batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[args.lr, args.head_lr], total_steps=args.epochs *
                                                steps_per_epoch, pct_start=0.1)

    def predict(mask: np.ndarray) -> np.ndarray:
        return face_mirror_predict(net, a0, a1, mask)

    chips = d["chips"] if args.augment else None

    def batch_loss(b: np.ndarray) -> torch.Tensor:
        i, m = torch.from_numpy(b // 2), torch.from_numpy(b % 2 == 1)
        if args.augment:
            x = augmented_activations(model, chips[b // 2], b % 2 == 1, args.start)
        else:
            x = torch.where(m[:, None, None, None], a1[i], a0[i])
        if args.noise > 0:
            x = F.relu(x * (1 + args.noise * torch.randn_like(x)))
        return F.mse_loss(net(x), y[i]) if args.loss == "mse" else F.smooth_l1_loss(net(x), y[i])

    init_val, init_test = predict(va), predict(te)
    hist = [{"epoch": 0, "val_r": pearson(init_val, score[va]), "test_r": pearson(init_test, score[te])}]
    print(hist[-1])
    t_start = time.time()
    best_state, best_epoch = fit_epochs(net, opt, sched, idx_tr, batch_loss, lambda: predict(va), score[va], args,
                                        hist)
    train_sec = time.time() - t_start
    net.load_state_dict(best_state)
    pv, pt = predict(va), predict(te)
    n_params = sum(p.numel() for p in list(net.blocks.parameters()) + list(net.fc.parameters()) +
                   list(net.head.parameters()))
    report = {"config": vars(args), "best_epoch": best_epoch, "epochs_run": len(hist) - 1,
              "sec_per_epoch": float(np.mean([h["sec"] for h in hist[1:]])), "train_sec": train_sec,
              "init": {"val_r": hist[0]["val_r"], "test": metrics(init_test, score[te])},
              "val": metrics(pv, score[va]), "test": metrics(pt, score[te]),
              "test_vs_published_mean": metrics(pt, d["published"][te]),
              "trainable_params": n_params, "fp16_mb": n_params * 2 / 1e6, "history": hist}
    save_report(report, f"beauty_finetune_{args.name}", CACHE / f"pred_{args.name}.npz", pv, pt, score, split)

def main() -> None:
    torch.set_num_threads(2)
    p = training_arguments(__doc__, start=13, name="tail", head_lr=1e-3, dropout=0.1, stop_epoch=11)
    p.add_argument("--loss", default="mse", choices=["mse", "huber"])
    p.add_argument("--augment", action="store_true")
    p.add_argument("--max-minutes", type=float, default=15)
    args = p.parse_args()
    prepare() if args.cmd == "prepare" else train(args)


if __name__ == "__main__":
    main()
