"""Cached rows → every member's ``MemberOutput`` (backbones and DEX heads) → the calibrated ensemble's answer.

Why from the cache: the heads read the backbones' cached features, and the ensemble only needs the members'
probabilities, so refitting a calibration or re-scoring a data set costs milliseconds instead of a network pass.
The flip setting follows the calibration: a flipped member's probabilities are the mean over the crop and its mirror
(when the cache holds a mirror; the WRN's is not cached, see ``extract.FLIPPED_MEMBERS``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from services.scoring.members import MemberOutput
from services.scoring.models.registry import PRETRAINED_CONFIGS, pretrained_config
from services.scoring.training.heads import AGE_VALUES, HeadEnsemble

Rows = Sequence[Mapping[str, np.ndarray]]


def stacked(rows: Rows, key: str) -> np.ndarray | None:
    """[N, ...] array of one cached key (None when the rows lack it)."""
    if not rows or key not in rows[0]:
        return None
    return np.stack([np.asarray(r[key], dtype=np.float64) for r in rows])


def _flip_mean(rows: Rows, key: str, flip: bool) -> np.ndarray | None:
    value = stacked(rows, key)
    mirrored = stacked(rows, f"{key}_flip") if flip else None
    return value if mirrored is None or value is None else (value + mirrored) / 2


def head_features(rows: Rows, backbone: str, pooling: str, mirrored: bool = False,
                  with_probs: bool = False) -> np.ndarray | None:
    """The cached features a head reads: pooled map [+ log P(age) of the backbone] (mirrored view if asked)."""
    from services.scoring.training.heads import log_probs_feature

    suffix = "_flip" if mirrored else ""
    pooled = stacked(rows, f"{backbone}.feat_{pooling}{suffix}")
    if pooled is None or not with_probs:
        return pooled
    probs = stacked(rows, f"{backbone}.age_probs{suffix}")
    return None if probs is None else np.concatenate([pooled, log_probs_feature(probs)], axis=1)


def head_output(name: str, ensemble: HeadEnsemble, rows: Rows, flip: bool) -> MemberOutput:
    """A head member's distribution from cached features (mean over the mirror's too when flipped)."""
    from services.scoring.training.fit_heads import predict_probs

    spec = ensemble.spec
    probs = predict_probs(ensemble, head_features(rows, spec.backbone, spec.pooling, with_probs=spec.with_probs))
    mirrored = head_features(rows, spec.backbone, spec.pooling, True, spec.with_probs) if flip else None
    if mirrored is not None:
        probs = (probs + predict_probs(ensemble, mirrored)) / 2
    return MemberOutput(name, pretrained_config(name).version if name in PRETRAINED_CONFIGS else "trial",
                        AGE_VALUES, probs, None)


def embedding_head_output(name: str, rows: Rows, flip: bool) -> MemberOutput:
    """The embedding gender member's P(female) from the rows' cached embeddings (``extract.extract_embedder``):
    the committed head's logistic regression, averaged over face and mirror when flipped (as ``run_member`` does)."""
    import torch

    from services.scoring.evaluation.extract import EMBEDDING_KEY
    from services.scoring.training.member import committed_head_path

    cfg = pretrained_config(name)
    state = torch.load(committed_head_path(cfg.member), map_location="cpu", weights_only=True)
    weight, bias = state["weight"].double().numpy().reshape(-1), float(state["bias"].double().reshape(-1)[0])
    emb = stacked(rows, EMBEDDING_KEY)
    if emb is None:
        raise KeyError(f"{name} needs the rows' {EMBEDDING_KEY} (services.scoring.evaluation.extract_embedder)")

    def p_female(x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(x @ weight + bias)))

    probs = p_female(emb)
    mirrored = stacked(rows, f"{EMBEDDING_KEY}_flip") if flip else None
    if mirrored is not None:
        probs = (probs + p_female(mirrored)) / 2
    return MemberOutput(name, cfg.version, None, None, probs)


EMBEDDER_KINDS = {"embedding_head": "embedding", "arcface_head": "arcface"}  # converter → extract.EMBEDDERS kind


def embedder_kinds(members: Sequence[str]) -> list[str]:
    """The embedders whose cached features ``members`` read (``extract.extract_embedder`` adds them to the rows)."""
    converters = {PRETRAINED_CONFIGS[n].converter for n in members if n in PRETRAINED_CONFIGS}
    return sorted(kind for converter, kind in EMBEDDER_KINDS.items() if converter in converters)


IMAGE_DIGEST_KEY = "image_digest"  # a row's image identity (arcface_age.image_digest), added by ``howhot eval age``


def arcface_head_output(name: str, rows: Rows) -> MemberOutput:
    """The ArcFace age member's distribution from the rows' cached map features (face and mirror already averaged,
    as the member itself averages them): its committed heads. A row whose image the heads trained on (its
    ``IMAGE_DIGEST_KEY`` among the head file's out-of-sample records) gets the distribution recorded for it at
    training time by heads that never saw it."""
    from services.scoring.evaluation.extract import ARCFACE_KEY
    from services.scoring.models.arcface_age import out_of_sample_probs
    from services.scoring.training.fit_heads import predict_probs
    from services.scoring.training.heads import load_heads
    from services.scoring.training.member import committed_head_path

    features = stacked(rows, ARCFACE_KEY)
    if features is None:
        raise KeyError(f"{name} needs the rows' {ARCFACE_KEY} (services.scoring.evaluation.extract_embedder)")
    ensemble, extra = load_heads(committed_head_path(pretrained_config(name).member))
    probs = predict_probs(ensemble, features)
    recorded = out_of_sample_probs(extra)
    for i, row in enumerate(rows):
        held_out = recorded.get(str(row.get(IMAGE_DIGEST_KEY, "")))
        if held_out is not None:
            probs[i] = held_out
    return MemberOutput(name, pretrained_config(name).version, AGE_VALUES, probs, None)


def member_outputs(
    rows: Rows,
    members: Sequence[str],
    flip_members: Sequence[str],
    heads: Mapping[str, HeadEnsemble] | None = None,
) -> dict[str, MemberOutput]:
    """``MemberOutput`` per member; names in ``heads`` are computed from features, the rest read from the cache."""
    heads = heads or {}
    flips = set(flip_members)
    outputs = {}
    for name in members:
        if name in heads:
            outputs[name] = head_output(name, heads[name], rows, name in flips)
            continue
        cfg = pretrained_config(name)
        if cfg.converter == "embedding_head":
            outputs[name] = embedding_head_output(name, rows, name in flips)
            continue
        if cfg.converter == "arcface_head":
            outputs[name] = arcface_head_output(name, rows)
            continue
        probs = _flip_mean(rows, f"{name}.age_probs", name in flips)
        p_female = _flip_mean(rows, f"{name}.p_female", name in flips)
        if probs is not None:
            probs = probs / probs.sum(axis=1, keepdims=True)
        values = np.asarray(cfg.age_values, dtype=np.float64) if cfg.age_values else None
        outputs[name] = MemberOutput(name, cfg.version, values, probs, p_female)
    return outputs


@dataclass
class Predictions:
    """The ensemble's and each member's answers for N faces."""

    age: np.ndarray
    age_low: np.ndarray
    age_high: np.ndarray
    p_female: np.ndarray
    member_age: dict[str, np.ndarray]
    member_p_female: dict[str, np.ndarray]


def predict(rows: Rows, calibration: object, heads: Mapping[str, HeadEnsemble] | None = None) -> Predictions:
    """The calibrated ensemble over cached rows (``calibration`` is an ``EnsembleCalibration``)."""
    from services.scoring.ensemble import combine

    outputs = member_outputs(rows, calibration.members, calibration.flip_members, heads)  # type: ignore[attr-defined]
    result = combine(outputs, calibration)  # type: ignore[arg-type]
    return Predictions(result.age, result.age_low, result.age_high, result.p_female, dict(result.member_age),
                       dict(result.member_p_female))


def registered_heads(names: Sequence[str]) -> dict[str, HeadEnsemble]:
    """Head ensembles of the registered DEX-head members among ``names`` (loaded from their committed files)."""
    from services.scoring.training.heads import load_heads
    from services.scoring.training.member import committed_head_path

    out = {}
    for name in names:
        cfg = PRETRAINED_CONFIGS.get(name)
        if cfg is not None and cfg.converter == "dex_head":
            out[name] = load_heads(committed_head_path(cfg.member))[0]
    return out
