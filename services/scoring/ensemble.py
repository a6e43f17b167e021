"""Combining the members into one age distribution and one P(female), with a learned calibration.

Why not a plain average: the members disagree systematically (the WRN pulls every age towards 31–41 and is weak on
children; the CC0 net saturates at 80), so a naive mean is worse than the best member (PEERS.md lesson 2). Instead:

1. every member's age distribution is moved onto the common 0..100 grid (``align_to_grid``: each class's mass is
   split linearly between the two neighbouring integer ages, which keeps the expectation exact, so 81 CC0 classes
   with class 0 = 0.25 years and 101 WRN classes share one axis);
2. each member's age axis is calibrated by an affine map t → a + b·t fitted on labelled data (``pushforward``
   re-bins the distribution, so its expectation becomes exactly a + b·E[t] and its spread scales with b);
3. the calibrated distributions are mixed with non-negative weights that sum to one; the weights depend on the age
   region of a first estimate (children, adults, older people), because the members' strengths differ by region;
4. the age is the DEX expectation of the mixture; the mixture widened by a Gaussian of ``spread_sd`` +
   ``spread_per_year`` · age years (fitted per profile so that its quantiles are calibrated on true ages) gives the
   uncertainty (its standard deviation), the reported age range (its 10 % / 90 % quantiles: a central 80 %
   interval) and the distribution the minors rule reads;
5. P(female) is the weighted mean of the members' P(female).

``fit_ensemble`` learns 2–3 from member outputs and true ages, ``benchmarks/age_fit_spread.py`` the width of 4; the
result is small JSON under ``services/scoring/calibration/<profile>.json`` and is loaded by default. The
``commercial-safe`` profile uses only members whose model card allows commercial use.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import ndtr

from services.scoring.members import MemberOutput
from services.scoring.models.registry import PRETRAINED_CONFIGS, TRAINED_HEAD_CONVERTERS

MAX_AGE = 100  # the common grid is 0..100 (the WRN's range; CC0's 0..80 embeds into it)
AGE_GRID = np.arange(MAX_AGE + 1, dtype=np.float64)
RANGE_QUANTILES = (0.10, 0.90)  # central 80 % interval as the reported age range
DEFAULT_REGION_EDGES = (20.0, 45.0)  # children/young, adults, older: where the members' errors differ most
CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"
PROFILES = ("default", "commercial-safe")
IRLS_ITERATIONS = 8  # reweighted least squares towards the median (MAE) fit converges in a handful of steps
IRLS_FLOOR = 1.0  # years: residuals below this count as 1 year so a few perfect fits do not dominate
MIN_REGION_SAMPLES = 30  # fewer labelled faces than this in a region: reuse the global weights there
GENDER_WEIGHT_STEPS = 21  # grid over the two-member weight (0, 0.05, …, 1)


def profile_members(profile: str) -> list[str]:
    """Members a profile may use: all registered ones, or only those whose card allows commercial use."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {PROFILES}")
    return [n for n, cfg in PRETRAINED_CONFIGS.items() if profile == "default" or cfg.commercial_use]


def _split_mass(positions: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Put mass ``probs[n, k]`` at real ``positions[n, k]`` onto the integer grid 0..100 by linear splitting."""
    pos = np.clip(positions, 0.0, MAX_AGE)
    low = np.floor(pos).astype(np.int64)
    high = np.minimum(low + 1, MAX_AGE)
    frac = pos - low
    out = np.zeros((probs.shape[0], MAX_AGE + 1))
    rows = np.repeat(np.arange(probs.shape[0])[:, None], probs.shape[1], axis=1)
    np.add.at(out, (rows, low), probs * (1.0 - frac))
    np.add.at(out, (rows, high), probs * frac)
    return out


def align_to_grid(age_probs: np.ndarray, age_values: Sequence[float]) -> np.ndarray:
    """[N, K] probabilities over ``age_values`` → [N, 101] over ages 0..100, expectation preserved."""
    probs = np.asarray(age_probs, dtype=np.float64)
    positions = np.broadcast_to(np.asarray(age_values, dtype=np.float64), probs.shape)
    return _split_mass(positions, probs)


def pushforward(grid_probs: np.ndarray, offset: float, scale: float) -> np.ndarray:
    """The distribution of a + b·t for t ~ ``grid_probs`` (0..100), re-binned on 0..100 (clipped at the ends)."""
    positions = np.broadcast_to(offset + scale * AGE_GRID, grid_probs.shape)
    return _split_mass(positions, grid_probs)


WIDEN_CHUNK = 256  # rows per kernel stack in ``widen`` ([rows, 101, 102] float64 ≈ 21 MB)


def widen(grid_probs: np.ndarray, sd: float | np.ndarray) -> np.ndarray:
    """Each distribution convolved with a Gaussian of ``sd`` years (one value, or one per row), cut at the grid's
    ends (bin k is [k−½, k+½]).

    Mass stays within 0..100 (renormalised per source age), so near 0 the widened distribution leans upwards: that
    is why the reported age is the expectation *before* widening.
    """
    sds = np.broadcast_to(np.asarray(sd, dtype=np.float64), (len(grid_probs),))
    if not np.all(np.isfinite(sds)) or np.any(sds < 0):
        raise ValueError(f"spread must be a finite number of years >= 0, got {sd}")
    if not np.any(sds > 0):
        return grid_probs
    edges = (np.arange(MAX_AGE + 2) - 0.5)[None, :] - AGE_GRID[:, None]  # [source age, bin edge]
    out = np.array(grid_probs, dtype=np.float64)
    rows = np.flatnonzero(sds > 0)
    for start in range(0, len(rows), WIDEN_CHUNK):
        chunk = rows[start:start + WIDEN_CHUNK]
        kernel = np.diff(ndtr(edges[None] / sds[chunk, None, None]), axis=2)  # [rows, source age, target age]
        kernel /= kernel.sum(axis=2, keepdims=True)
        out[chunk] = np.einsum("ns,nst->nt", out[chunk], kernel)
    return out


def spread_years(constant: float, per_year: float, age: np.ndarray) -> np.ndarray:
    """A profile's widening per face: a constant plus a share of the age (errors grow with age)."""
    return constant + per_year * np.asarray(age, dtype=np.float64)


def age_range(wide_probs: np.ndarray, age: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The reported range: the 10 % / 90 % quantiles of the widened distribution, stretched to hold ``age``.

    A strongly two-humped mixture (members far apart) can put its expectation outside those quantiles, and a range
    that excludes the age shown with it reads as a bug.
    """
    low, high = RANGE_QUANTILES
    return np.minimum(quantile(wide_probs, low), age), np.maximum(quantile(wide_probs, high), age)


def expectation(grid_probs: np.ndarray) -> np.ndarray:
    """DEX expectation Σ age·p on the 0..100 grid."""
    return grid_probs @ AGE_GRID


def spread(grid_probs: np.ndarray) -> np.ndarray:
    """Standard deviation of each distribution on the grid (the age uncertainty)."""
    mean = expectation(grid_probs)
    return np.sqrt(np.maximum(grid_probs @ AGE_GRID**2 - mean**2, 0.0))


def quantile(grid_probs: np.ndarray, q: float) -> np.ndarray:
    """The q-quantile of each distribution, interpolated within the integer bins (bin k covers [k−½, k+½])."""
    cdf = np.cumsum(grid_probs, axis=1)
    out = np.empty(len(grid_probs))
    for i, row in enumerate(cdf):
        k = int(np.searchsorted(row, q))
        k = min(k, MAX_AGE)
        before = row[k - 1] if k > 0 else 0.0
        mass = row[k] - before
        within = (q - before) / mass if mass > 0 else 0.5
        out[i] = np.clip(k - 0.5 + within, 0.0, MAX_AGE)
    return out


@dataclass
class EnsembleCalibration:
    """Per-member affine age calibration, region-dependent age weights and gender weights of one profile."""

    profile: str
    age_affine: dict[str, tuple[float, float]]  # member → (offset a, scale b): calibrated age = a + b·age
    region_edges: list[float]  # boundaries on the first (global-weight) estimate
    age_weights: list[dict[str, float]]  # len(region_edges) + 1 regions; a global fallback is weights[...] averaged
    global_age_weights: dict[str, float]
    gender_weights: dict[str, float]
    flip_members: list[str] = field(default_factory=list)  # members run with flip test-time augmentation
    fitted_on: str = "uncalibrated defaults"
    metrics: dict[str, Any] = field(default_factory=dict)
    spread_sd: float = 0.0  # years; Gaussian widening of the distribution behind the range, the std and the minors rule
    spread_per_year: float = 0.0  # extra widening per year of the face's age (sd = spread_sd + this · age)

    @property
    def age_members(self) -> list[str]:
        return list(self.global_age_weights)

    @property
    def members(self) -> list[str]:
        return sorted(set(self.global_age_weights) | set(self.gender_weights))

    @classmethod
    def uncalibrated(cls, profile: str = "default") -> EnsembleCalibration:
        """Identity calibration with equal weights: what runs when no fitted file exists (not recommended).

        Trained heads (DEX heads, the embedding gender member) are left out: they only make sense with weights
        fitted beside the members they extend.
        """
        members = [n for n in profile_members(profile)
                   if PRETRAINED_CONFIGS[n].converter not in TRAINED_HEAD_CONVERTERS]
        age = [n for n in members if "age" in PRETRAINED_CONFIGS[n].task]
        gender = [n for n in members if "gender" in PRETRAINED_CONFIGS[n].task]
        equal_age = {n: 1.0 / len(age) for n in age}
        return cls(profile=profile, age_affine={n: (0.0, 1.0) for n in age}, region_edges=[],
                   age_weights=[dict(equal_age)], global_age_weights=equal_age,
                   gender_weights={n: 1.0 / len(gender) for n in gender}, flip_members=list(members))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    def save(self, path: Path) -> None:
        path.write_text(self.to_json() + "\n")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnsembleCalibration:
        data = dict(data)
        data["age_affine"] = {k: (float(v[0]), float(v[1])) for k, v in data["age_affine"].items()}
        return cls(**data)

    @classmethod
    def load(cls, path: Path) -> EnsembleCalibration:
        return cls.from_dict(json.loads(Path(path).read_text()))


def load_calibration(profile: str = "default", directory: Path = CALIBRATION_DIR) -> EnsembleCalibration:
    """The fitted calibration of ``profile`` shipped in the repo, or the uncalibrated fallback if there is none."""
    path = Path(directory) / f"{profile}.json"
    return EnsembleCalibration.load(path) if path.exists() else EnsembleCalibration.uncalibrated(profile)


@dataclass
class EnsembleOutput:
    """Arrays for N faces: the combined distribution and its summaries, plus per-member ages and P(female)."""

    age_probs: np.ndarray  # [N, 101] widened by the profile's spread (what range, std and the minors rule read)
    age: np.ndarray
    age_std: np.ndarray
    age_low: np.ndarray
    age_high: np.ndarray
    p_female: np.ndarray
    member_age: dict[str, np.ndarray]  # each member's own (uncalibrated) DEX expectation
    member_p_female: dict[str, np.ndarray]


def calibrated_member_grids(outputs: Mapping[str, MemberOutput], cal: EnsembleCalibration) -> dict[str, np.ndarray]:
    """Each age member's distribution on 0..100 after its affine calibration."""
    grids = {}
    for name in cal.age_members:
        out = outputs[name]
        offset, scale = cal.age_affine.get(name, (0.0, 1.0))
        grids[name] = pushforward(align_to_grid(out.age_probs, out.age_values), offset, scale)
    return grids


def _mix(grids: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    total = sum(weights.values())
    return sum(grids[n] * (w / total) for n, w in weights.items() if w > 0)


def combined_age_probs(outputs: Mapping[str, MemberOutput], cal: EnsembleCalibration) -> np.ndarray:
    """[N, 101] the ensemble's age mixture before widening (only the age members' outputs are read)."""
    grids = calibrated_member_grids(outputs, cal)
    first = _mix(grids, cal.global_age_weights)
    mixed = first.copy()
    if cal.region_edges:
        region = np.searchsorted(np.asarray(cal.region_edges), expectation(first), side="right")
        for r, weights in enumerate(cal.age_weights):
            rows = region == r
            if rows.any():
                mixed[rows] = _mix({n: g[rows] for n, g in grids.items()}, weights)
    return mixed


def combine(outputs: Mapping[str, MemberOutput], cal: EnsembleCalibration) -> EnsembleOutput:
    """The ensemble's answer for a batch, given every member's outputs for it."""
    mixed = combined_age_probs(outputs, cal)
    age = expectation(mixed)
    wide = widen(mixed, spread_years(cal.spread_sd, cal.spread_per_year, age))
    gender_total = sum(cal.gender_weights.values())
    p_female = sum(outputs[n].p_female * (w / gender_total) for n, w in cal.gender_weights.items())
    low, high = age_range(wide, age)
    return EnsembleOutput(
        age_probs=wide, age=age, age_std=spread(wide), age_low=low, age_high=high,
        p_female=np.asarray(p_female, dtype=np.float64),
        member_age={n: o.expected_age for n, o in outputs.items() if o.age_probs is not None},
        member_p_female={n: o.p_female for n, o in outputs.items() if o.p_female is not None},
    )


# --- fitting ----------------------------------------------------------------------------------------------------


def _irls(design: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-absolute-deviation linear fit by iteratively reweighted least squares (MAE is what we report)."""
    coef = np.linalg.lstsq(design, target, rcond=None)[0]
    for _ in range(IRLS_ITERATIONS):
        w = 1.0 / np.maximum(np.abs(target - design @ coef), IRLS_FLOOR)
        sw = np.sqrt(w)
        coef = np.linalg.lstsq(design * sw[:, None], target * sw, rcond=None)[0]
    return coef


def _simplex_weights(columns: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to one minimising the (IRLS-approximated) absolute error of columns @ w."""
    from scipy.optimize import nnls

    k = columns.shape[1]
    sample_w = np.ones(len(target))
    weights = np.full(k, 1.0 / k)
    penalty = 1e3 * np.sqrt(len(target))  # a heavy extra row enforces Σw = 1 inside NNLS
    for _ in range(IRLS_ITERATIONS):
        sw = np.sqrt(sample_w)
        design = np.vstack([columns * sw[:, None], penalty * np.ones((1, k))])
        rhs = np.concatenate([target * sw, [penalty]])
        weights = nnls(design, rhs)[0]
        weights = weights / weights.sum() if weights.sum() > 0 else np.full(k, 1.0 / k)
        sample_w = 1.0 / np.maximum(np.abs(target - columns @ weights), IRLS_FLOOR)
    return weights


def fit_ensemble(
    member_outputs: Mapping[str, MemberOutput],
    true_ages: np.ndarray,
    true_female: np.ndarray | None = None,
    profile: str = "default",
    region_edges: Sequence[float] = DEFAULT_REGION_EDGES,
    flip_members: Sequence[str] | None = None,
    fitted_on: str = "",
    affine_members: Sequence[str] | None = None,
    trial_members: Sequence[str] = (),
) -> EnsembleCalibration:
    """Fit per-member affine age maps, region weights and gender weights on labelled member outputs.

    ``affine_members`` limits the affine calibration to those members (others keep the identity map): a member that
    is already unbiased gains nothing from a map fitted on one data set and can lose on another. ``trial_members``
    admits members no profile registers yet (experiments: benchmarks/age_finetune_cpu.py).
    """
    allowed = set(profile_members(profile)) | set(trial_members)
    ages = np.asarray(true_ages, dtype=np.float64)
    age_members = [n for n, o in member_outputs.items() if n in allowed and o.age_probs is not None]
    gender_members = [n for n, o in member_outputs.items() if n in allowed and o.p_female is not None]
    affine: dict[str, tuple[float, float]] = {}
    calibrated: dict[str, np.ndarray] = {}
    for name in age_members:
        raw = member_outputs[name].expected_age
        offset, scale = 0.0, 1.0
        if affine_members is None or name in affine_members:
            offset, scale = _irls(np.column_stack([np.ones_like(raw), raw]), ages)
        affine[name] = (float(offset), float(scale))
        calibrated[name] = offset + scale * raw
    columns = np.column_stack([calibrated[n] for n in age_members])
    global_w = dict(zip(age_members, map(float, _simplex_weights(columns, ages)), strict=True))
    first = columns @ np.array([global_w[n] for n in age_members])
    region = np.searchsorted(np.asarray(region_edges, dtype=float), first, side="right")
    region_w = []
    for r in range(len(region_edges) + 1):
        rows = region == r
        if rows.sum() < MIN_REGION_SAMPLES:
            region_w.append(dict(global_w))
        else:
            region_w.append(dict(zip(age_members, map(float, _simplex_weights(columns[rows], ages[rows])),
                                     strict=True)))
    gender_w = {n: 1.0 / len(gender_members) for n in gender_members}
    if true_female is not None and len(gender_members) == 2:
        labels = np.asarray(true_female, dtype=np.float64)
        known = ~np.isnan(labels)
        p = [np.clip(member_outputs[n].p_female[known], 1e-6, 1 - 1e-6) for n in gender_members]
        y = labels[known]

        def log_loss(w: float) -> float:
            q = w * p[0] + (1 - w) * p[1]
            return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))

        best = min(np.linspace(0.0, 1.0, GENDER_WEIGHT_STEPS), key=log_loss)
        gender_w = {gender_members[0]: float(best), gender_members[1]: float(1 - best)}
    members = sorted(set(age_members) | set(gender_members))
    return EnsembleCalibration(
        profile=profile, age_affine=affine, region_edges=[float(e) for e in region_edges], age_weights=region_w,
        global_age_weights=global_w, gender_weights=gender_w,
        flip_members=list(flip_members) if flip_members is not None else members, fitted_on=fitted_on,
    )
