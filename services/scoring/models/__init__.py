"""Scoring members, timm style: one module per architecture, a registry of pretrained configs, converters.

Public entry points: ``create_model(name, models_dir)``, ``list_models()``, ``pretrained_config(name)`` and
``fetch(models_dir)`` (downloads and converts every registered member once; ``howhot models fetch`` calls it).
"""

from services.scoring.models.registry import (
    PRETRAINED_CONFIGS,
    PretrainedConfig,
    create_model,
    fetch,
    list_models,
    pretrained_config,
)

__all__ = ["PRETRAINED_CONFIGS", "PretrainedConfig", "create_model", "fetch", "list_models", "pretrained_config"]
