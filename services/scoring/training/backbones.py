"""Backbones a DEX head can sit on: which registry member provides the weights and which layer the head reads.

Why a table: the CLI's ``--backbone`` names, the feature cache (``evaluation.extract.FEATURE_LAYERS``) and the
registered head members must agree on the layer and pooling, or a head trained on one map is fed another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class Backbone:
    """One backbone: its registry member (weights + crop geometry), hooked layer and that layer's channel count."""

    key: str  # CLI name
    member: str | None  # registry member providing pretrained weights and preprocessing; None: trained from scratch
    layer: str
    relu: bool
    channels: int
    licence: str
    commercial_use: bool
    classifier: str | None = None  # its own age classifier on the mean-pooled ``layer`` (a head can start as it)


BACKBONES: dict[str, Backbone] = {
    b.key: b
    for b in (
        Backbone("wrn16_8", "wrn16_8_imdbwiki", "bn", True, 512,
                 "IMDB-WIKI-trained WRN: academic research only", False),
        Backbone("agegender_cc0", "agegender_cc0_age", "blocks.4", False, 256, "CC0-1.0 backbone", True,
                 classifier="fc"),
        Backbone("vgg16", None, "features", False, 512, "VGG-16 from scratch (no ImageNet weights offline)", True),
    )
}


def backbone(key: str) -> Backbone:
    """The backbone named ``key`` (KeyError listing the known ones)."""
    try:
        return BACKBONES[key]
    except KeyError:
        raise KeyError(f"unknown backbone {key!r}; known: {sorted(BACKBONES)}") from None


def backbone_constructor(key: str) -> Callable[[], nn.Module]:
    """The untrained network of a backbone (pretrained weights are loaded by the caller)."""
    b = backbone(key)
    if b.member is None:
        from services.scoring.training.vgg16 import vgg16_features

        return vgg16_features
    from services.scoring.models.registry import pretrained_config

    return pretrained_config(b.member).constructor
