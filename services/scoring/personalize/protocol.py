"""The cold-start evaluation protocol, on arrays (no files): reveal k ratings of a rater, predict the rest from pixels.

Raters and faces are both split into folds and every (rater fold, face fold) pair is one experiment: the model (MF,
visual regression, prior) is fitted on the OTHER raters' ratings of the OTHER faces; each held-out rater reveals k of
their ratings of training faces (random, nested: the first k of one permutation), and their ratings of the held-out
faces are predicted. So a predicted face was never seen by the visual regression and a predicted rater never by the
MF: both are cold-start, as in production. Over all pairs every (rater, face) rating is predicted exactly once.

Metrics per (rater, face fold) — one fitted model per group — averaged over the folds, then over raters: Pearson r,
and hot-or-not accuracy — a rating is "hot" when above the rater's own mean rating, a prediction when above the mean
of the predictions in its group (scale-free, so every method is judged the same way; a constant predictor says "not"
everywhere). The oracle is also reported pooled over all of a rater's faces (the issue's 0.714 on FRL).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.scoring.personalize.item import ItemState, observations_from_ratings
from services.scoring.personalize.knn import visual_knn_predict
from services.scoring.personalize.mf import DEFAULT_RANK, DEFAULT_REG, BiasedMF
from services.scoring.personalize.model import PersonalModel, fit_personal_model
from services.scoring.personalize.picker import pick_informative
from services.scoring.personalize.prior import fit_rater_prior
from services.scoring.personalize.rater import fit_rater_closed_form

DEFAULT_FOLDS = 5  # 80 % of faces/raters train each experiment (82 faces on FRL)
PICKER_KS = (5, 10)  # the picker variant is evaluated at these k only (it costs k matrix inversions per rater)
MIN_EXTRA_RATINGS = 10  # a rater is evaluated only with ≥ max(ks) + this many ratings (something left to predict)
MIN_GROUP = 5  # a (rater, face fold) group needs this many predicted ratings for a meaningful correlation


@dataclass(frozen=True)
class ProtocolInputs:
    """Arrays the protocol needs; ``features`` rows follow ``ratings`` columns."""

    ratings: np.ndarray  # [U, I], NaN = missing
    features: np.ndarray  # [I, D]
    scale: tuple[float, float]
    demographics: np.ndarray | None = None  # [U, Ddemo]
    global_scores: np.ndarray | None = None  # [I] an external global model's scores (e.g. the MEBeauty head)
    column_weights: np.ndarray | None = None  # for the visual regression (see visual.fit_ridge_loo)


def per_rater_metrics(
    truth: np.ndarray, pred: np.ndarray, groups: np.ndarray | None = None, min_group: int = MIN_GROUP,
) -> dict[str, float]:
    """Mean per-rater Pearson r and hot-or-not accuracy over the raters' observed & predicted cells.

    ``groups`` [I] (the face fold of each column) makes the metrics per (rater, group) and then averages the groups:
    each group's predictions come from ONE fitted model, so fold-to-fold offsets of a refitted model (a different
    μ, a rotated latent space) never count as errors. Truth "hot" is always relative to the rater's mean over all
    their ratings; predicted "hot" to the mean of the predictions being judged.
    """
    groups = np.zeros(truth.shape[1], dtype=int) if groups is None else np.asarray(groups)
    rs, accs = [], []
    for t_row, p_row in zip(truth, pred, strict=True):
        observed = ~np.isnan(t_row)
        if not observed.any():
            continue
        threshold = t_row[observed].mean()
        r_groups, a_groups = [], []
        for g in np.unique(groups):
            ok = observed & ~np.isnan(p_row) & (groups == g)
            if ok.sum() < min_group:
                continue
            t, p = t_row[ok], p_row[ok]
            a_groups.append(float(np.mean((t > threshold) == (p > p.mean() + 1e-9))))
            r_groups.append(float(np.corrcoef(t, p)[0, 1]) if np.ptp(t) > 0 and np.ptp(p) > 1e-9 else np.nan)
        if a_groups:
            accs.append(float(np.mean(a_groups)))
            rs.append(float(np.nanmean(r_groups)) if np.isfinite(r_groups).any() else np.nan)
    rs_arr = np.array(rs)
    return {"pearson": float(np.nanmean(rs_arr)) if np.isfinite(rs_arr).any() else float("nan"),
            "hot_or_not_acc": float(np.mean(accs)) if accs else float("nan"), "raters": len(accs),
            "pearson_undefined_share": float(np.mean(~np.isfinite(rs_arr))) if len(rs_arr) else float("nan")}


def _warm_item_params(
    model: PersonalModel, mf: BiasedMF, r_all: np.ndarray, features: np.ndarray, train_r: np.ndarray,
    test_f: np.ndarray, warm: Sequence[int], seed: int,
) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Per m: (offsets, item vectors) of the held-out faces after m ratings each by training raters."""
    out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    if not warm:
        return out
    rater_w = np.hstack([mf.rater_factors, mf.rater_bias[:, None]])
    orders = []
    for face in test_f:
        raters = np.where(~np.isnan(r_all[train_r, face]))[0]
        orders.append(np.random.default_rng([seed, 1, int(face)]).permutation(raters))
    for m in warm:
        items = []
        for face, order in zip(test_f, orders, strict=True):
            chosen = order[:m]
            ratings = r_all[train_r[chosen], face]
            ztz, ztt = observations_from_ratings(rater_w[chosen], ratings, mf.mu)
            items.append(ItemState(str(face), model.version, ztz, ztt, [str(r) for r in train_r[chosen]],
                                   ratings.tolist()))
        out[m] = model.item_params(features[test_f], items)
    return out


def run_protocol(
    inputs: ProtocolInputs,
    ks: Sequence[int] = (0, 5, 10, 20),
    n_folds: int = DEFAULT_FOLDS,
    eval_raters: np.ndarray | None = None,
    rank: int = DEFAULT_RANK,
    reg: float = DEFAULT_REG,
    seed: int = 0,
    progress: bool = False,
    warm: Sequence[int] = (),
) -> dict:
    """Predictions of every method for every evaluated (rater, face), then metrics per method and k.

    ``warm`` (e.g. 5, 20, 100) adds "warm face" variants: each predicted face first receives m ratings from TRAINING
    raters (random, nested across m), folded into its item vector by ``item.item_posterior`` with the training MF's
    rater weights — how the service learns a face from the visitors who rate it. The predicted rater's own ratings
    of that face are never among them."""
    from tqdm import tqdm

    r_all = inputs.ratings
    n_raters, n_faces = r_all.shape
    observed = ~np.isnan(r_all)
    rng = np.random.default_rng(seed)
    rater_fold = rng.permutation(n_raters) % n_folds
    face_fold = rng.permutation(n_faces) % n_folds
    counts = observed.sum(axis=1)
    evaluated = counts >= max(ks) + MIN_EXTRA_RATINGS
    if eval_raters is not None:
        evaluated &= np.isin(np.arange(n_raters), eval_raters)
    xs = (inputs.features - inputs.features.mean(0)) / np.maximum(inputs.features.std(0), 1e-6)
    col_sum, col_n = np.nansum(r_all, axis=0), observed.sum(axis=0)
    rater_mean = np.nanmean(np.where(observed, r_all, np.nan), axis=1)
    methods = ["oracle", "global_visual", "rater_mean", "visual_knn", "personal_no_demo"]
    if inputs.demographics is not None:
        methods.append("personal_demo_prior")
    if inputs.global_scores is not None:
        methods.append("global_head")
    preds = {(m, k): np.full_like(r_all, np.nan) for m in methods for k in ks}
    for k in PICKER_KS:
        if k in ks:
            preds[("personal_picked", k)] = np.full_like(r_all, np.nan)
    for m in warm:
        for k in ks:
            preds[(f"global_warm_{m}", k)] = np.full_like(r_all, np.nan)
            preds[(f"crowd_warm_{m}", k)] = np.full_like(r_all, np.nan)
            preds[(f"personal_warm_{m}", k)] = np.full_like(r_all, np.nan)
    pairs = [(rf, ff) for rf in range(n_folds) for ff in range(n_folds)]
    for rf, ff in tqdm(pairs, desc="folds", unit="fit", disable=not progress):
        train_r, test_r = np.where(rater_fold != rf)[0], np.where((rater_fold == rf) & evaluated)[0]
        train_f, test_f = np.where(face_fold != ff)[0], np.where(face_fold == ff)[0]
        if not len(test_r):
            continue
        demo_train = None if inputs.demographics is None else inputs.demographics[train_r]
        model, mf = fit_personal_model(r_all[np.ix_(train_r, train_f)], inputs.features[train_f], inputs.scale,
                                       demo_train, rank=rank, reg=reg, column_weights=inputs.column_weights)
        prior_pop = fit_rater_prior(np.hstack([mf.rater_factors, mf.rater_bias[:, None]]))
        off_te, vec_te = model.item_params(inputs.features[test_f])
        off_tr, vec_tr = mf.mu + mf.item_bias, mf.item_vectors()
        warm_params = _warm_item_params(model, mf, r_all, inputs.features, train_r, test_f, warm, seed)
        for u in test_r:
            truth_te = r_all[u, test_f]
            rated_te = ~np.isnan(truth_te)
            if not rated_te.any():
                continue
            cols = test_f[rated_te]
            oracle = (col_sum[cols] - r_all[u, cols]) / np.maximum(col_n[cols] - 1, 1)
            # one reveal order per rater over ALL faces, filtered to this fold's training faces: the k revealed
            # ratings overlap across face folds, so fold-to-fold noise in the rater fit stays small
            order_all = np.random.default_rng([seed, int(u)]).permutation(n_faces)
            position = np.full(n_faces, -1)
            position[train_f] = np.arange(len(train_f))
            order = position[order_all]
            order = order[(order >= 0) & observed[u, train_f[np.maximum(order, 0)]]]
            demo = None if inputs.demographics is None else inputs.demographics[u]
            for k in ks:
                rev = order[:k]
                y_rev = r_all[u, train_f[rev]]
                resid = y_rev - off_tr[rev]
                out = {"oracle": oracle, "global_visual": off_te[rated_te]}
                w = fit_rater_closed_form(vec_tr[rev], resid, prior_pop.population_mean, prior_pop.precision_no_demo,
                                          model.noise_var)
                out["personal_no_demo"] = off_te[rated_te] + vec_te[rated_te] @ w
                if demo is not None:
                    w = fit_rater_closed_form(vec_tr[rev], resid, model.prior.mean(demo),
                                              model.prior.precision_for(demo), model.noise_var)
                    out["personal_demo_prior"] = off_te[rated_te] + vec_te[rated_te] @ w
                for m, (off_w, vec_w) in warm_params.items():  # w: with the demographic prior when there is one
                    out[f"global_warm_{m}"] = off_w[rated_te]
                    # the visitors' score as served (PersonalModel.crowd_score): an average rater's prediction
                    out[f"crowd_warm_{m}"] = off_w[rated_te] + vec_w[rated_te] @ prior_pop.population_mean
                    out[f"personal_warm_{m}"] = off_w[rated_te] + vec_w[rated_te] @ w
                # constant per rater across folds (their true mean): no spurious fold-to-fold correlation
                out["rater_mean"] = np.full(len(cols), rater_mean[u])
                out["visual_knn"] = (visual_knn_predict(xs[train_f[rev]], y_rev, xs[cols]) if k
                                     else off_te[rated_te])
                if inputs.global_scores is not None:
                    out["global_head"] = inputs.global_scores[cols]
                if ("personal_picked", k) in preds:
                    prior_mean = model.prior.mean(demo) if demo is not None else prior_pop.population_mean
                    prior_prec = (model.prior.precision_for(demo) if demo is not None
                                  else prior_pop.precision_no_demo)
                    exclude = ~observed[u, train_f]
                    picks = np.array(pick_informative(prior_prec, vec_tr, k, model.noise_var, exclude), dtype=int)
                    w = fit_rater_closed_form(vec_tr[picks], r_all[u, train_f[picks]] - off_tr[picks], prior_mean,
                                              prior_prec, model.noise_var)
                    out["personal_picked"] = off_te[rated_te] + vec_te[rated_te] @ w
                for method, values in out.items():
                    preds[(method, k)][u, cols] = values
    truth = np.where(evaluated[:, None], r_all, np.nan)
    results: dict = {"ks": list(ks), "warm": list(warm), "folds": n_folds, "rank": rank, "reg": reg,
                     "evaluated_raters": int(evaluated.sum()), "methods": {}}
    for (method, k), pred in preds.items():
        results["methods"].setdefault(method, {})[str(k)] = per_rater_metrics(truth, pred, face_fold)
    results["oracle_pooled_over_all_faces"] = per_rater_metrics(truth, preds[("oracle", ks[0])])
    return results
