"""The face-detector registry: a pretrained-config table (which doubles as the model card) and one constructor.

timm style: ``create_detector_model(name, models_dir)`` is the only entry point; preprocessing (mean/std, channel
order, input padding) and the anchor layout are read from the config, never hard-coded by callers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from libs.common.modelcard import ModelCard
from services.face.models.mobilenetv2 import KERAS_BN_EPS, MobileNetV2Features
from services.face.models.resnet50 import ResNet50Features
from services.face.models.retinaface import TORCH_BN_EPS, RetinaFace
from services.face.postprocess import PriorConfig

WEIGHTS_ENV = "HOWHOT_RETINAFACE_WEIGHTS"  # a local copy of ternaus' ResNet-50 weights (.pth or the published .zip)
KERAS_FPN_BN_EPS = 1.001e-5  # retinaface-tf2 builds its FPN/SSH BatchNormalization layers with epsilon=1.001e-5
IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)  # albumentations.Normalize defaults, as used by ternaus, in 0-255 units
IMAGENET_STD_255 = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class DetectorConfig:
    """Everything needed to build, feed and describe one detector; ``card()`` turns it into a ModelCard."""

    name: str
    architecture: str
    backbone: str
    fpn_channels: int
    source: str
    licence: str
    commercial_use: bool
    mean: tuple[float, float, float]  # subtracted from RGB in 0-255
    std: tuple[float, float, float]
    priors: PriorConfig = field(default_factory=PriorConfig)
    input_multiple: int = 32  # inputs are zero-padded bottom/right to a multiple of the coarsest stride
    url: str = ""
    notes: str = ""
    expected_accuracy: dict[str, Any] = field(default_factory=dict)

    def card(self, sha256: str = "") -> ModelCard:
        """The model card for these weights (``sha256`` of the converted file)."""
        return ModelCard(
            name=self.name,
            task="face-detection",
            architecture=self.architecture,
            source=self.source,
            licence=self.licence,
            commercial_use=self.commercial_use,
            preprocessing={
                "channel_order": "RGB",
                "input_range": "0-255 float32",
                "mean": list(self.mean),
                "std": list(self.std),
                "pad_to_multiple": self.input_multiple,
                "pad_value": 0,
                "min_sizes": [list(s) for s in self.priors.min_sizes],
                "steps": list(self.priors.steps),
                "variances": list(self.priors.variances),
                "clip": self.priors.clip,
            },
            expected_accuracy=dict(self.expected_accuracy),
            notes=self.notes,
            sha256=sha256,
        )


PRETRAINED_CFGS: dict[str, DetectorConfig] = {
    "retinaface_mobilenetv2": DetectorConfig(
        name="retinaface_mobilenetv2",
        architecture="RetinaFace (MobileNetV2 x1.0, FPN-64, SSH)",
        backbone="mobilenetv2",
        fpn_channels=64,
        source="retinaface==1.1.1 (PyPI) retinaface/src/frozen_graph.pb (peteryuX/retinaface-tf2, WIDER FACE)",
        licence="MIT (package and training code); trained on WIDER FACE, whose images are for non-commercial research",
        commercial_use=False,
        mean=(127.5, 127.5, 127.5),  # the graph computes x / 127.5 - 1
        std=(127.5, 127.5, 127.5),
        notes="Converted from the TF frozen graph without TensorFlow (services.face.models.convert_tf_graph); "
        "matched against the original graph run in TensorFlow (tests/data/face_retinaface_tf_reference.json).",
        expected_accuracy={  # benchmarks/results/face_detection.md; threshold 0.9, one-person photos
            "fgnet_detection_rate": 1.0,  # 1002/1002
            "utkface_detection_rate": 1.0,  # 1000/1000 seeded sample (full-set figure in the results file)
            "port_vs_tensorflow_max_px": 0.001,  # boxes/landmarks vs the original graph, 7 images
        },
    ),
    "retinaface_resnet50": DetectorConfig(
        name="retinaface_resnet50",
        architecture="RetinaFace (ResNet-50, FPN-256, SSH)",
        backbone="resnet50",
        fpn_channels=256,
        source="ternaus/retinaface (retinaface-pytorch 0.0.8) resnet50_2020-07-20",
        licence="MIT (code and weights); trained on WIDER FACE, whose images are for non-commercial research",
        commercial_use=False,
        mean=IMAGENET_MEAN_255,
        std=IMAGENET_STD_255,
        url="https://github.com/ternaus/retinaface/releases/download/0.01/retinaface_resnet50_2020-07-20-f168fae3c.zip",
        notes=f"Weights are not redistributed: set {WEIGHTS_ENV} to a local copy, or be online for the first load.",
    ),
}


def list_detector_models() -> list[str]:
    """Names accepted by ``create_detector_model``."""
    return sorted(PRETRAINED_CFGS)


def build_network(cfg: DetectorConfig) -> RetinaFace:
    """The randomly initialised network for a config (eval mode)."""
    if cfg.backbone == "mobilenetv2":
        model = RetinaFace(MobileNetV2Features(KERAS_BN_EPS), cfg.fpn_channels, fpn_eps=KERAS_FPN_BN_EPS)
    elif cfg.backbone == "resnet50":
        model = RetinaFace(ResNet50Features(), cfg.fpn_channels, fpn_eps=TORCH_BN_EPS)
    else:
        raise ValueError(f"unknown backbone {cfg.backbone!r}")
    return model.eval()


def _resnet50_state_dict(cfg: DetectorConfig, models_dir: Path) -> dict[str, torch.Tensor]:
    """ternaus' weights from $HOWHOT_RETINAFACE_WEIGHTS, or downloaded once into the model cache."""
    local = os.environ.get(WEIGHTS_ENV)
    if local:
        path = Path(local)
        if not path.exists():
            raise FileNotFoundError(f"{WEIGHTS_ENV}={local} does not exist")
        if path.suffix == ".zip":
            return torch.hub.load_state_dict_from_url(
                path.resolve().as_uri(), model_dir=str(models_dir / "_downloads"), map_location="cpu", progress=False
            )
        return torch.load(path, map_location="cpu", weights_only=True)
    try:
        return torch.hub.load_state_dict_from_url(
            cfg.url, model_dir=str(models_dir / "_downloads"), map_location="cpu", progress=True
        )
    except Exception as exc:
        raise RuntimeError(
            f"{cfg.name}: could not download {cfg.url} ({exc}); download it elsewhere and set {WEIGHTS_ENV} to the file"
        ) from exc


def load_pretrained(model: nn.Module, cfg: DetectorConfig, models_dir: Path) -> None:
    """Load the config's weights into ``model`` (strictly: every key and shape must match)."""
    if cfg.name == "retinaface_mobilenetv2":
        from services.face.models.convert_tf_graph import fetch, weights_path  # local: avoids an import cycle

        fetch(models_dir, progress=False)
        state = torch.load(weights_path(models_dir), map_location="cpu", weights_only=True)
    else:
        state = _resnet50_state_dict(cfg, models_dir)
        state = {k.removeprefix("module.").removeprefix("model."): v for k, v in state.items()}
    model.load_state_dict(state, strict=True)


def create_detector_model(name: str, models_dir: Path | None = None, pretrained: bool = True) -> RetinaFace:
    """Build a registered detector, with its weights loaded unless ``pretrained=False``.

    The config is attached as ``model.pretrained_cfg`` (timm's convention) so callers derive preprocessing from it.
    """
    if name not in PRETRAINED_CFGS:
        raise KeyError(f"unknown face detector {name!r}; known: {list_detector_models()}")
    cfg = PRETRAINED_CFGS[name]
    model = build_network(cfg)
    if pretrained:
        if models_dir is None:
            from libs.common.settings import Settings

            models_dir = Settings().models_dir
        load_pretrained(model, cfg, Path(models_dir))
    model.pretrained_cfg = cfg  # type: ignore[assignment]
    return model.eval()
