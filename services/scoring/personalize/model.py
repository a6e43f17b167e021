"""The personalisation bundle the scoring service loads: item regression, rater prior, scales, version.

``fit_personal_model`` trains it from a ratings matrix and the faces' visual features; ``PersonalModel`` then
answers the service's questions: a rater's personal score for a face (from its features — the paper's cold-start
setting — and, once other visitors have rated it, from their ratings too: ``item``), the state after a new rating,
and which faces to ask next.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from services.scoring.personalize.item import ItemState, item_posterior, observations_from_ratings
from services.scoring.personalize.mf import DEFAULT_RANK, DEFAULT_REG, BiasedMF, fit_biased_mf
from services.scoring.personalize.picker import pick_informative, pick_queue
from services.scoring.personalize.prior import RaterPrior, encode_demographics, fit_rater_prior
from services.scoring.personalize.rater import RaterState
from services.scoring.personalize.visual import RidgeMap, fit_ridge_loo

MIN_RATINGS_FOR_PERSONAL = 5  # below this many ratings (and without demographics) the global score is shown
# a face's visitors' score is shown once this many visitors have rated it: fewer would mostly repeat its pixels'
# prediction under the visitors' name, and one or two ratings would let the owner read off how they were rated
MIN_RATINGS_FOR_CROWD = 5
HOT_OFFSET_SD = 0.798  # E[z | z > 0] for a standard normal: "hot" ≈ 0.8 rating-sd above the mean, "not" below
DISPLAY_MIN, DISPLAY_MAX = 1.0, 10.0  # personal scores are shown on the same 1–10 scale as the global score


@dataclass(frozen=True)
class PersonalScore:
    """A score on 1–10 and where it came from: 'personal', 'demographic_prior' or 'global' (fallback)."""

    score: float
    source: str
    n_ratings: int


@dataclass
class PersonalModel:
    """Everything needed to personalise for raters and faces the model never saw."""

    version: str
    scale_min: float
    scale_max: float
    mu: float
    rating_sd: float
    noise_var: float
    item_map: RidgeMap  # features → [b_i, q_1..q_K]
    prior: RaterPrior
    min_ratings: int = MIN_RATINGS_FOR_PERSONAL
    blocks: list[str] = field(default_factory=list)  # feature blocks, in order, that make a face's feature vector
    global_score_weight: float = 0.0  # > 0: the global beauty score is appended as the last feature column
    crowd_min_ratings: int = MIN_RATINGS_FOR_CROWD  # an operator setting, not part of the bundle
    # display = display_offset + display_slope · rating (clipped to 1–10); slope 0: the rating range stretched onto 1–10
    display_slope: float = 0.0
    display_offset: float = 0.0

    def face_vector(self, blocks: Mapping[str, np.ndarray], global_score: float | None = None) -> np.ndarray:
        """One face's feature vector [D] from its blocks (each [D_b] or [1, D_b]) and, if used, the global score."""
        parts = [np.asarray(blocks[name], dtype=np.float64).reshape(-1) for name in self.blocks]
        if self.global_score_weight > 0:
            if global_score is None:
                raise ValueError("this personal model needs the global beauty score as a feature")
            parts.append(np.array([float(global_score)]))
        return np.concatenate(parts)

    @property
    def dim(self) -> int:
        """Rater vector size K + 1 (factors and bias)."""
        return int(self.item_map.weight.shape[1])

    def item_params(
        self, features: np.ndarray, items: Sequence[ItemState | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(offset μ + b_i [N], item vector [q_i, 1] [N, K + 1]) for faces given their feature vectors [N, D].

        ``items`` (one per face, None = never rated) turns the pixels' prediction into the posterior given the
        ratings each face has received (``item.item_posterior``); a face without ratings keeps the prediction."""
        out = self.item_map(features)
        rated = [s if s is not None and s.model_version == self.version and s.n_ratings else None for s in items or ()]
        if any(rated):
            dim = out.shape[1]
            ztz = np.stack([np.zeros((dim, dim)) if s is None else s.ztz for s in rated])
            ztt = np.stack([np.zeros(dim) if s is None else s.ztt for s in rated])
            out = item_posterior(out, self.item_map.residual_var, ztz, ztt, self.noise_var)
        return self.mu + out[:, 0], np.hstack([out[:, 1:], np.ones((len(out), 1))])

    def new_item_state(self, face: str) -> ItemState:
        return ItemState.new(face, self.version, self.dim, (self.mu, self.rating_sd))

    def current_item(self, item: ItemState | None, face: str) -> ItemState:
        """The face's state for this model: as stored, new, or — if stored for another model version, whose latent
        space differs — replayed from its ratings with the population's average rater weights. The face keeps what
        visitors thought of it overall (its bias); its taste factors relearn from the ratings that follow. Ratings
        stored on another model's scale (another dataset's range or μ) are moved onto this one's by their standard
        score, so a "hot" stays above this model's μ."""
        if item is None:
            return self.new_item_state(face)
        if item.model_version == self.version:
            return item
        ratings = np.asarray(item.ratings, dtype=np.float64)
        if item.rating_scale is not None:  # states from before the scale was kept: taken as they are
            old_mu, old_sd = item.rating_scale
            ratings = self.mu + (ratings - old_mu) / old_sd * self.rating_sd
        weights = np.tile(self.prior.population_mean, (len(ratings), 1))
        ztz, ztt = observations_from_ratings(weights, ratings, self.mu)
        return ItemState(face, self.version, ztz, ztt, list(item.raters), [float(r) for r in ratings],
                         (self.mu, self.rating_sd))

    def add_item_rating(self, item: ItemState, rater_weights: np.ndarray, rating: float, rater_id: str) -> ItemState:
        """The face's state after one more rating (model scale) by a rater whose weights were ``rater_weights``."""
        return item.with_rating(rater_id, rater_weights, rating, self.mu)

    def _demo(self, state: RaterState) -> np.ndarray | None:
        d = state.demographics
        if not d or not self.prior.uses_demographics:
            return None
        return encode_demographics(d.get("sex"), d.get("age"), d.get("preference"))

    def rater_weights(self, state: RaterState) -> np.ndarray:
        """The rater's current [p_u, b_u]: the posterior mean given the prior and their ratings."""
        demo = self._demo(state)
        return state.weights(self.prior.mean(demo), self.prior.precision_for(demo), self.noise_var)

    def predict_ratings(self, state: RaterState, features: np.ndarray,
                        items: Sequence[ItemState | None] | None = None) -> np.ndarray:
        """Predicted ratings on the model's own scale for faces [N, D] (no fallback: used by evaluation)."""
        offset, vectors = self.item_params(features, items)
        return offset + vectors @ self.rater_weights(state)

    def _display_line(self) -> tuple[float, float]:
        """(slope, offset) of the model scale → 1–10 line: the bundle's fitted map, else the range stretched."""
        if self.display_slope > 0:
            return self.display_slope, self.display_offset
        slope = (DISPLAY_MAX - DISPLAY_MIN) / (self.scale_max - self.scale_min)
        return slope, DISPLAY_MIN - slope * self.scale_min

    def to_display(self, rating: np.ndarray | float) -> np.ndarray:
        """Model scale → 1–10 on the global score's own scale (``fit_display_map``), so that a personal or visitors'
        score reads against the global score shown beside it."""
        slope, offset = self._display_line()
        return np.clip(offset + slope * np.asarray(rating, dtype=np.float64), DISPLAY_MIN, DISPLAY_MAX)

    def to_model_scale(self, scale: str, rating: float) -> float:
        """A RatingSubmitted rating on the model's scale: '1to10' through the display line (the scale visitors see),
        'hot_or_not' as μ ± 0.8 sd."""
        if scale == "hot_or_not":
            return self.mu + (HOT_OFFSET_SD if rating > 0 else -HOT_OFFSET_SD) * self.rating_sd
        if scale == "1to10":
            slope, offset = self._display_line()
            return float(np.clip((float(rating) - offset) / slope, self.scale_min, self.scale_max))
        raise ValueError(f"unknown rating scale {scale!r}")

    def new_state(self, rater_id: str, demographics: dict | None = None) -> RaterState:
        return RaterState.new(rater_id, self.version, self.dim, demographics)

    def add_rating(self, state: RaterState, face: str, features: np.ndarray, rating: float,
                   scale: str = "1to10", item: ItemState | None = None) -> RaterState:
        """The state after one more rating (a RatingSubmitted event). This adds unconditionally: the ratings
        consumer, its caller, drops a rater's second rating of the same face (the first one counts). ``item``: the
        face's ratings so far, so a well-known face enters the rater's fit with its learned vector."""
        offset, vectors = self.item_params(np.atleast_2d(features), [item])
        return state.with_rating(face, vectors[0], float(offset[0]), self.to_model_scale(scale, rating))

    def personal_score(self, state: RaterState, features: np.ndarray, global_score: float,
                       item: ItemState | None = None) -> PersonalScore:
        """Personal 1–10 score for one face; the global score until the rater has ``min_ratings`` ratings, unless
        demographics give a prior. ``item``: the ratings the face has received from other raters, if any."""
        if state.model_version != self.version:
            raise ValueError(f"rater state is for model {state.model_version!r}, not {self.version!r}: replay it")
        if state.n_ratings < self.min_ratings and self._demo(state) is None:
            return PersonalScore(float(global_score), "global", state.n_ratings)
        source = "personal" if state.n_ratings >= self.min_ratings else "demographic_prior"
        rating = float(self.predict_ratings(state, np.atleast_2d(features), [item])[0])
        return PersonalScore(float(self.to_display(rating)), source, state.n_ratings)

    def crowd_score(self, features: np.ndarray, item: ItemState) -> float | None:
        """What the visitors who rated this face think of it, on 1–10: the rating an average rater would give,
        from the face's warm vector (its pixels' prediction updated by every rating it received). None until
        ``crowd_min_ratings`` visitors have rated it. Why show it: after 20 ratings this predicts a new viewer's
        hot-or-not at 0.701 on FRL London, against 0.646 for the pixels alone and 0.628 for the global score
        (benchmarks/results/personalize.md)."""
        if item.model_version != self.version or item.n_ratings < max(1, self.crowd_min_ratings):
            return None
        offset, vectors = self.item_params(np.atleast_2d(features), [item])
        return float(self.to_display(offset[0] + vectors[0] @ self.prior.population_mean))

    def pick_faces(self, state: RaterState, candidate_features: np.ndarray, n: int,
                   exclude: np.ndarray | None = None, items: Sequence[ItemState | None] | None = None) -> list[int]:
        """Indices of the ``n`` candidate faces whose ratings would pin this rater down fastest (``items``: what
        other visitors' ratings taught about each candidate)."""
        demo = self._demo(state)
        _, vectors = self.item_params(candidate_features, items)
        return pick_informative(state.posterior_precision(self.prior.precision_for(demo), self.noise_var),
                                vectors, n, self.noise_var, exclude)

    def next_faces(self, state: RaterState, candidate_features: np.ndarray, n: int,
                   items: Sequence[ItemState | None]) -> list[int]:
        """The rate-others queue (``picker.pick_queue``): the faces most informative for this rater, alternating with
        the least-rated faces. Why share the slots: a face's first 20 ratings lift every later viewer's prediction
        of it (FRL k = 10: 0.663 → 0.709), while the picker is worth about 0.004 to the rater
        (benchmarks/results/personalize.md, rate_queue.md)."""
        demo = self._demo(state)
        _, vectors = self.item_params(candidate_features, items)
        counts = np.array([0 if item is None else item.n_ratings for item in items])
        return pick_queue(state.posterior_precision(self.prior.precision_for(demo), self.noise_var), vectors, counts,
                          n, self.noise_var)

    def save(self, path: Path) -> None:
        arrays = {
            "item_mean": self.item_map.mean, "item_scale": self.item_map.scale, "item_weight": self.item_map.weight,
            "item_bias": self.item_map.bias, "prior_weight": self.prior.weight, "prior_precision": self.prior.precision,
            "prior_population_mean": self.prior.population_mean,
            "prior_precision_no_demo": self.prior.precision_no_demo, "item_residual_var": self.item_map.residual_var,
        }
        meta = {"version": self.version, "scale_min": self.scale_min, "scale_max": self.scale_max, "mu": self.mu,
                "rating_sd": self.rating_sd, "noise_var": self.noise_var, "min_ratings": self.min_ratings,
                "item_alpha": self.item_map.alpha, "item_loo_mse": self.item_map.loo_mse, "blocks": self.blocks,
                "global_score_weight": self.global_score_weight, "display_slope": self.display_slope,
                "display_offset": self.display_offset}
        np.savez_compressed(path, meta=np.array(json.dumps(meta)),
                            **{k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()})

    @classmethod
    def load(cls, path: Path) -> PersonalModel:
        with np.load(path, allow_pickle=False) as d:
            meta = json.loads(str(d["meta"]))
            a = {k: d[k].astype(np.float64) for k in d.files if k != "meta"}
        item_map = RidgeMap(a["item_mean"], a["item_scale"], a["item_weight"], a["item_bias"], meta["item_alpha"],
                            meta["item_loo_mse"], a.get("item_residual_var"))
        prior = RaterPrior(a["prior_weight"], a["prior_precision"], a["prior_population_mean"],
                           a["prior_precision_no_demo"])
        return cls(meta["version"], meta["scale_min"], meta["scale_max"], meta["mu"], meta["rating_sd"],
                   meta["noise_var"], item_map, prior, meta["min_ratings"], list(meta.get("blocks", [])),
                   float(meta.get("global_score_weight", 0.0)), display_slope=float(meta.get("display_slope", 0.0)),
                   display_offset=float(meta.get("display_offset", 0.0)))


def fit_personal_model(
    ratings: np.ndarray,
    item_features: np.ndarray,
    scale: tuple[float, float],
    demographics: np.ndarray | None = None,
    rank: int = DEFAULT_RANK,
    reg: float = DEFAULT_REG,
    name: str = "personal",
    column_weights: np.ndarray | None = None,
) -> tuple[PersonalModel, BiasedMF]:
    """MF on the [U, I] ratings (NaN = missing), ridge from features to items, prior from rater vectors.

    Returns the model and the fitted MF (evaluation uses the training faces' MF item vectors for revealed ratings).
    """
    mask = ~np.isnan(ratings)
    mf = fit_biased_mf(ratings, rank=rank, reg=reg)
    residual = (mf.predict() - np.nan_to_num(ratings))[mask]
    noise_var = float(np.mean(residual**2))
    item_map = fit_ridge_loo(item_features, np.hstack([mf.item_bias[:, None], mf.item_factors]),
                             column_weights=column_weights)
    rater_vectors = np.hstack([mf.rater_factors, mf.rater_bias[:, None]])
    prior = fit_rater_prior(rater_vectors, demographics)
    digest = hashlib.sha256(np.ascontiguousarray(item_map.weight, dtype=np.float32).tobytes()).hexdigest()[:12]
    model = PersonalModel(f"{name}-r{rank}-{digest}", scale[0], scale[1], mf.mu, float(np.nanstd(ratings)), noise_var,
                          item_map, prior)
    return model, mf


def fit_display_map(face_means: np.ndarray, global_scores: np.ndarray) -> tuple[float, float]:
    """(slope, offset) putting the model's rating scale on the global score's scale, fitted on the same faces.

    Why: the personal model learns its raters' scale (FRL London: 1–7, an average face about 3.0) while the global
    score is a MEBeauty-style 1–10 (an average face about 6). Stretching 1–7 onto 1–10 would show an average face
    as 4.0 beside a global 6.1, as if every viewer found everyone plain. Matching the two distributions' mean and
    spread over the faces (not a regression, which would shrink the spread by their correlation) makes an average
    rater's view of a face read like a global score."""
    face_means = np.asarray(face_means, dtype=np.float64)
    global_scores = np.asarray(global_scores, dtype=np.float64)
    slope = float(global_scores.std() / face_means.std())
    return slope, float(global_scores.mean() - slope * face_means.mean())
