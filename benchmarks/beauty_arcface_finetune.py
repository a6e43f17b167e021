"""EXPERIMENT: fine-tune the tail of InsightFace's MobileFaceNet (``arcface_mbf``) on MEBeauty (split_2022, merged).

Question: the frozen net's last 512×7×7 map is the strongest attractiveness block we have (beauty.md v3: 0.791 test
r alone, 0.792 served). Does unfreezing the net's tail, with a linear head on the same pooled map (global mean +
2×2 grid), lift the served head above 0.80 on its own or blended with it?

Steps (the project's own functions; nothing in services/ changes):
  prepare : 256-px chips from the cached landmarks → 112-px ArcFace chips → the frozen graph up to tensor SPLIT
            (256×14×14, the input of the last stage) for every labelled face and its mirror, cached once (fp16);
            the pooled final map of that pass is checked against the served cache block.
  train   : the graph's nodes from ``--start`` to the final map unfrozen (``637``: the 7×7 stage's two residual
            blocks + the 512-ch 1×1 conv; ``473``: also the stride-2 block), a linear head on the standardised pooled
            map initialised by a ridge fit on the frozen features (= epoch 0); MSE, AdamW, one-cycle; face and
            mirror separate samples, early stopping on val Pearson (face + mirror averaged). Blend with the served
            ``beauty_head_all``: weight chosen on val against the served config refitted on train only.

    PYTHONPATH=. .venv/bin/python benchmarks/beauty_arcface_finetune.py prepare
    PYTHONPATH=. .venv/bin/python benchmarks/beauty_arcface_finetune.py train --start 637 --name af637
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from beauty_finetune import (  # noqa: E402
    DATASET,
    _labels,
    face_mirror_predict,
    fit_epochs,
    load_prepared,
    metrics,
    pearson,
    save_report,
    training_arguments,
)
from torch import nn  # noqa: E402

from services.scoring.models.onnx_graph import OnnxGraphNet  # noqa: E402

CACHE = Path(".howhot/cache/beauty_arcface_finetune")
SPLIT = "473"  # output of the 14×14 stage's last residual add: nothing after it reads an earlier tensor
GRID = 2


def sub_plan(plan: dict, start: str, stop: str) -> dict:
    """The nodes computing ``stop`` from ``start`` (refuses a cut that a later node crosses)."""
    names = [n["output"] for n in plan["nodes"]]
    i0, i1 = names.index(start) + 1, names.index(stop) + 1
    nodes = plan["nodes"][i0:i1]
    known = {start} | {n["output"] for n in nodes}
    crossing = [n["key"] for n in nodes for t in n["inputs"] if t not in known]
    if crossing:
        raise ValueError(f"cut at {start} is crossed by {crossing}")
    return {"input": start, "output": stop, "nodes": nodes}


def tail_net(model: OnnxGraphNet, start: str, stop: str) -> OnnxGraphNet:
    net = OnnxGraphNet(sub_plan(model.plan, start, stop))
    own = model.state_dict()
    net.load_state_dict({k: v for k, v in own.items() if k.split(".")[1] in net.layers})
    return net


def pooled(fmap: torch.Tensor) -> torch.Tensor:
    return torch.cat([fmap.mean(dim=(2, 3)), F.adaptive_avg_pool2d(fmap, GRID).flatten(1)], dim=1)


def prepare() -> None:
    from services.scoring.beauty.cache import cached_features, cached_landmarks
    from services.scoring.beauty.chips import chips_for
    from services.scoring.beauty.features import ARCFACE, load_embedder
    from services.scoring.models.arcface_mbf import FINAL_MAP_TENSOR, MEAN, SCALE, arcface_chips

    labels, all_files, rows = _labels()
    t0 = time.time()
    marks = cached_landmarks("mebeauty", DATASET / "images", all_files)
    files = [all_files[r] for r in rows]
    chips256, _ = chips_for([DATASET / "images" / f for f in files], marks["landmarks"][rows])
    chips = arcface_chips(chips256)
    print(f"chips {chips.shape} in {time.time() - t0:.0f}s", flush=True)
    model = load_embedder(ARCFACE)
    head = OnnxGraphNet(sub_plan({**model.plan, "nodes": [{"output": model.plan["input"]}] + model.plan["nodes"]},
                                 model.plan["input"], SPLIT))
    head.load_state_dict({k: v for k, v in model.state_dict().items() if k.split(".")[1] in head.layers})
    tail = tail_net(model, SPLIT, FINAL_MAP_TENSOR)
    acts, feats = [], []
    with torch.inference_mode():
        for mirror in (False, True):
            a_list, f_list = [], []
            for s in range(0, len(chips), 64):
                x = (torch.from_numpy(chips[s:s + 64]).permute(0, 3, 1, 2).float() - MEAN) * SCALE
                a = head(x.flip(3) if mirror else x)
                a_list.append(a.numpy().astype(np.float16))
                f_list.append(pooled(tail(a)).numpy())
            acts.append(np.concatenate(a_list))
            feats.append(np.concatenate(f_list))
    print(f"activations {acts[0].shape} in {time.time() - t0:.0f}s", flush=True)
    served = cached_features("mebeauty", DATASET / "images", all_files, [ARCFACE])
    ref = np.concatenate([served[f"{ARCFACE}.final_gap"], served[f"{ARCFACE}.final_grid"]], axis=1)[rows]
    print(f"max |Δ| vs served map block: {np.abs((feats[0] + feats[1]) / 2 - ref).max():.2e}")
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(CACHE / "mebeauty.npz", files=np.array(files), act=acts[0], act_mirror=acts[1], feat=feats[0],
             feat_mirror=feats[1], score=labels.score, published=labels.published_mean, split=labels.split)


class Tail(nn.Module):
    """Frozen part [SPLIT → start], trainable graph [start → final map], standardised pooled map → linear."""

    def __init__(self, model: OnnxGraphNet, start: str, mean: np.ndarray, scale: np.ndarray) -> None:
        super().__init__()
        from services.scoring.models.arcface_mbf import FINAL_MAP_TENSOR

        self.pre = tail_net(model, SPLIT, start).eval() if start != SPLIT else nn.Identity()
        for p in self.pre.parameters():
            p.requires_grad_(False)
        self.body = tail_net(model, start, FINAL_MAP_TENSOR)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))
        self.head = nn.Linear(len(mean), 1)
        self.drop = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (pooled(self.body(x)) - self.mean) * self.scale
        return self.head(self.drop(z)).squeeze(1)


def train(args: argparse.Namespace) -> None:
    from services.scoring.beauty.features import ARCFACE, load_embedder

    d, score, split, (tr, va, te) = load_prepared(CACHE / "mebeauty.npz", args.seed)
    fit = tr | va if args.refit else tr
    f_fit = np.concatenate([d["feat"][fit], d["feat_mirror"][fit]]).astype(np.float64)
    mean, std = f_fit.mean(0), f_fit.std(0)
    scale = 1.0 / np.where(std > 1e-6, std, 1.0)
    model = load_embedder(ARCFACE)
    net = Tail(model, args.start, mean, scale)
    with torch.inference_mode():
        a0 = torch.cat([net.pre(torch.from_numpy(d["act"][s:s + 256].astype(np.float32)))
                        for s in range(0, len(score), 256)])
        a1 = torch.cat([net.pre(torch.from_numpy(d["act_mirror"][s:s + 256].astype(np.float32)))
                        for s in range(0, len(score), 256)])
    a0, a1 = a0.clone(), a1.clone()
    y = torch.tensor(score, dtype=torch.float32)
    # head init: ridge on the frozen standardised pooled map (faces + mirrors), alpha chosen on val
    z = (f_fit - mean) * scale
    y2 = np.concatenate([score[fit], score[fit]])
    zc = z - z.mean(0)
    u, s, vt = np.linalg.svd(zc, full_matrices=False)
    uty = u.T @ (y2 - y2.mean())
    zv = ((d["feat"][va] - mean) * scale + (d["feat_mirror"][va] - mean) * scale) / 2
    best = None
    for alpha in np.logspace(1, 5, 25):
        w = vt.T @ (s / (s**2 + alpha) * uty)
        b = float(y2.mean() - z.mean(0) @ w)
        r = pearson(zv @ w + b, score[va])
        if best is None or (not args.refit and r > best[0]) or (args.refit and np.isclose(alpha, args.alpha)):
            best = (r, alpha, w, b)
    print(f"ridge init: val r {best[0]:.4f} (alpha {best[1]:.3g})", flush=True)
    with torch.no_grad():
        net.head.weight.copy_(torch.tensor(best[2], dtype=torch.float32)[None])
        net.head.bias.fill_(best[3])
    net.drop.p = args.dropout
    opt = torch.optim.AdamW([{"params": net.body.parameters(), "lr": args.lr, "weight_decay": args.wd},
                             {"params": net.head.parameters(), "lr": args.head_lr, "weight_decay": args.head_wd}])
    idx_tr = np.flatnonzero(fit)
    steps = int(np.ceil(2 * len(idx_tr) / args.batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[args.lr, args.head_lr], total_steps=args.epochs * steps,
                                                pct_start=0.1)

    def predict(mask: np.ndarray) -> np.ndarray:
        return face_mirror_predict(net, a0, a1, mask)

    def batch_loss(b: np.ndarray) -> torch.Tensor:
        i, m = torch.from_numpy(b // 2), torch.from_numpy(b % 2 == 1)
        x = torch.where(m[:, None, None, None], a1[i], a0[i])
        if args.noise > 0:
            x = x * (1 + args.noise * torch.randn_like(x))
        return F.mse_loss(net(x), y[i])

    init_test = predict(te)
    hist = [{"epoch": 0, "val_r": pearson(predict(va), score[va]), "test_r": pearson(init_test, score[te])}]
    print(hist[-1], flush=True)
    t_start = time.time()
    best_state, best_epoch = fit_epochs(net, opt, sched, idx_tr, batch_loss, lambda: predict(va), score[va], args,
                                        hist)
    net.load_state_dict(best_state)
    pv, pt = predict(va), predict(te)
    n_params = sum(p.numel() for p in list(net.body.parameters()) + list(net.head.parameters()))
    report = {"config": vars(args), "best_epoch": best_epoch, "train_sec": time.time() - t_start,
              "init": {"val_r": hist[0]["val_r"], "test": metrics(init_test, score[te])},
              "val": metrics(pv, score[va]), "test": metrics(pt, score[te]), "trainable_params": n_params,
              "history": hist}
    save_report(report, f"beauty_arcface_finetune_{args.name}", CACHE / f"pred_{args.name}.npz", pv, pt, score,
                split)

def main() -> None:
    torch.set_num_threads(2)
    p = training_arguments(__doc__, start="637", name="af", head_lr=1e-4, dropout=0.0, stop_epoch=10)
    p.add_argument("--head-wd", type=float, default=1e-2)
    p.add_argument("--alpha", type=float, default=1000.0, help="ridge init alpha for --refit")
    args = p.parse_args()
    prepare() if args.cmd == "prepare" else train(args)


if __name__ == "__main__":
    main()
