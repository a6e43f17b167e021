"""Rate-others queue policies, simulated on FRL London's full rating matrix: what sharing the queue's slots with new
faces costs each rater, and what it gains every later viewer of those faces.

    PYTHONPATH=. .venv/bin/python benchmarks/rate_queue_sim.py [--arrivals 100 20] [--per-rater 10] [--batch 5]

Per (rater fold, face fold) pair, as in the personalization protocol (protocol.py): the model is fitted on the other
raters' ratings of the other faces. Those faces are "known": they keep their MF vectors. The held-out faces are new
uploads: cold, pixels only, until rated. Held-out raters arrive one at a time in a random order. Each one asks the
queue for ``batch`` faces at a time among the faces they have not rated, and gives their true FRL ratings; their
closed-form weights (raters.csv prior) update after each rating. Each rating of a new face is folded into that face's
state with the rater's weights from before the rating, as the service does.

After the last arrival, two figures per arrived rater, as hot-or-not accuracy (protocol.per_rater_metrics):
- **new faces**: the new faces they did not rate, from the final face states and their final weights. This is what
  later viewers of new photos get.
- **known faces**: the known faces they did not rate. This is what the queue taught the model about the rater.

Policies: ``informative`` (picker only: the queue before session 8), ``queue`` (picker.pick_queue, shipped),
``random``. Raw numbers go to .howhot/results/rate_queue.json; the write-up is benchmarks/results/rate_queue.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from services.face.detector import FaceDetector  # noqa: E402 - a benchmark composes both services
from services.scoring.evaluation.detection import provide_detector  # noqa: E402
from services.scoring.personalize.evaluate import protocol_inputs  # noqa: E402
from services.scoring.personalize.model import fit_personal_model  # noqa: E402
from services.scoring.personalize.picker import pick_informative, pick_queue  # noqa: E402
from services.scoring.personalize.protocol import DEFAULT_FOLDS, ProtocolInputs, per_rater_metrics  # noqa: E402

POLICIES = ("informative", "queue", "random")
KNOWN = 10**9  # a known face's rating count: never "cold" for the queue


def simulate_pair(inputs: ProtocolInputs, train_r: np.ndarray, test_r: np.ndarray, train_f: np.ndarray,
                  test_f: np.ndarray, policy: str, per_rater: int, batch: int, seed: int) -> dict:
    """One (rater fold, face fold) pair under one policy: arrivals, then predictions for every arrived rater."""
    r_all = inputs.ratings
    demo_train = None if inputs.demographics is None else inputs.demographics[train_r]
    model, mf = fit_personal_model(r_all[np.ix_(train_r, train_f)], inputs.features[train_f], inputs.scale,
                                   demo_train, column_weights=inputs.column_weights)
    noise = model.noise_var
    off_known, vec_known = mf.mu + mf.item_bias, mf.item_vectors()
    new_features = inputs.features[test_f]
    items = [model.new_item_state(str(face)) for face in test_f]  # new uploads: no ratings yet
    faces = np.concatenate([train_f, test_f])
    n_known = len(train_f)
    rng = np.random.default_rng([seed, 7])
    final_w = {}
    for u in test_r:
        demo = None if inputs.demographics is None else inputs.demographics[u]
        prior_mean, prior_precision = model.prior.mean(demo), model.prior.precision_for(demo)
        state = model.new_state(str(u))
        rated = np.zeros(len(faces), dtype=bool)
        for _ in range(per_rater // batch):
            off_new, vec_new = model.item_params(new_features, items)
            offsets, vectors = np.concatenate([off_known, off_new]), np.vstack([vec_known, vec_new])
            precision = state.posterior_precision(prior_precision, noise)
            if policy == "informative":
                picks = pick_informative(precision, vectors, batch, noise, rated)
            elif policy == "queue":
                counts = np.concatenate([np.full(n_known, KNOWN), [item.n_ratings for item in items]])
                picks = pick_queue(precision, vectors, counts, batch, noise, rated)
            else:
                picks = list(rng.choice(np.flatnonzero(~rated), batch, replace=False))
            for j in picks:
                y = float(r_all[u, faces[j]])
                if j >= n_known:  # a new face learns from this rating, with the rater's weights from before it
                    items[j - n_known] = model.add_item_rating(
                        items[j - n_known], state.weights(prior_mean, prior_precision, noise), y, str(u))
                state = state.with_rating(str(faces[j]), vectors[j], float(offsets[j]), y)
                rated[j] = True
        final_w[u] = (state.weights(prior_mean, prior_precision, noise), rated)
    off_new, vec_new = model.item_params(new_features, items)
    counts_new = np.array([item.n_ratings for item in items])
    pred_new = np.full((len(test_r), len(test_f)), np.nan)
    pred_known = np.full((len(test_r), n_known), np.nan)
    for row, u in enumerate(test_r):
        w, rated = final_w[u]
        pred_new[row] = np.where(rated[n_known:], np.nan, off_new + vec_new @ w)
        pred_known[row] = np.where(rated[:n_known], np.nan, off_known + vec_known @ w)
    truth = r_all[test_r]
    full_new = np.full_like(truth, np.nan)
    full_new[:, test_f] = pred_new
    full_known = np.full_like(truth, np.nan)
    full_known[:, train_f] = pred_known
    return {"new": per_rater_metrics(truth, full_new), "known": per_rater_metrics(truth, full_known),
            "ratings_per_new_face": counts_new.tolist(), "new_face_share": float(counts_new.sum()) / (
                len(test_r) * (per_rater // batch) * batch)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--arrivals", nargs="+", type=int, default=[100, 20],
                        help="held-out raters arriving per fold pair (each run separately)")
    parser.add_argument("--per-rater", type=int, default=10, help="ratings each arriving rater gives")
    parser.add_argument("--batch", type=int, default=5, help="faces the queue returns per request")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    provide_detector(FaceDetector.from_settings)  # used only where the landmark cache misses
    _, inputs, _ = protocol_inputs(args.data / "frl_london", progress=False)
    n_raters, n_faces = inputs.ratings.shape
    rng = np.random.default_rng(args.seed)
    rater_fold, face_fold = rng.permutation(n_raters) % DEFAULT_FOLDS, rng.permutation(n_faces) % DEFAULT_FOLDS
    results: dict = {"per_rater": args.per_rater, "batch": args.batch, "seed": args.seed, "runs": {}}
    start = time.time()
    pairs = [(rf, ff) for rf in range(DEFAULT_FOLDS) for ff in range(DEFAULT_FOLDS)]
    for arrivals in args.arrivals:
        per_policy: dict[str, list[dict]] = {p: [] for p in POLICIES}
        for rf, ff in tqdm(pairs, desc=f"{arrivals} arrivals per pair", unit="pair"):
            train_r, train_f = np.flatnonzero(rater_fold != rf), np.flatnonzero(face_fold != ff)
            test_f = np.flatnonzero(face_fold == ff)
            test_r = np.random.default_rng([args.seed, rf, ff]).permutation(np.flatnonzero(rater_fold == rf))
            for policy in POLICIES:
                per_policy[policy].append(simulate_pair(inputs, train_r, test_r[:arrivals], train_f, test_f, policy,
                                                        args.per_rater, args.batch, args.seed))
        summary = {}
        for policy, runs in per_policy.items():
            counts = np.concatenate([r["ratings_per_new_face"] for r in runs])
            summary[policy] = {
                "new_faces_hot_or_not": float(np.mean([r["new"]["hot_or_not_acc"] for r in runs])),
                "new_faces_pearson": float(np.mean([r["new"]["pearson"] for r in runs])),
                "known_faces_hot_or_not": float(np.mean([r["known"]["hot_or_not_acc"] for r in runs])),
                "known_faces_pearson": float(np.mean([r["known"]["pearson"] for r in runs])),
                "slots_on_new_faces": float(np.mean([r["new_face_share"] for r in runs])),
                "ratings_per_new_face_median": float(np.median(counts)),
                "new_faces_never_rated": float(np.mean(counts == 0)),
            }
        results["runs"][str(arrivals)] = summary
    results["seconds"] = round(time.time() - start, 1)
    out = REPO / ".howhot" / "results" / "rate_queue.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nFRL London, {DEFAULT_FOLDS}x{DEFAULT_FOLDS} fold pairs, {args.per_rater} ratings per arriving rater in "
          f"batches of {args.batch} ({results['seconds']} s). Hot-or-not / Pearson per arrived rater.\n")
    print("| arrivals per pair | policy | new faces (later viewers) | known faces (the rater) | slots on new faces | "
          "ratings per new face (median) | new faces never rated |")
    print("|---|---|---|---|---|---|---|")
    for arrivals, summary in results["runs"].items():
        for policy, s in summary.items():
            print(f"| {arrivals} | {policy} | {s['new_faces_hot_or_not']:.3f} / {s['new_faces_pearson']:.3f} | "
                  f"{s['known_faces_hot_or_not']:.3f} / {s['known_faces_pearson']:.3f} | "
                  f"{s['slots_on_new_faces']:.0%} | {s['ratings_per_new_face_median']:.0f} | "
                  f"{s['new_faces_never_rated']:.0%} |")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
