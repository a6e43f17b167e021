"""The `howhot` command: config masking, analyze on a real photo (JSON for machines)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from libs.cli.main import main


def test_config_prints_the_effective_settings_with_secrets_masked(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOWHOT_CLICKHOUSE_PASSWORD", "hunter2")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert doc["clickhouse"]["password"] == "********" and "hunter2" not in out


def test_an_invalid_setting_is_reported_naming_the_variable(capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOWHOT_UPLOAD_RETENTION_DAYS", "0")
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("howhot: ") and "HOWHOT_UPLOAD_RETENTION_DAYS" in err and "Traceback" not in err


def test_analyze_reports_faces_and_scores_as_json(capsys, tmp_path: Path, astronaut_jpeg: bytes) -> None:
    from libs.common.settings import Settings
    from services.face.models.convert_tf_graph import fetch as fetch_face
    from services.scoring.models.registry import fetch as fetch_scoring

    fetch_face(Settings().models_dir, progress=False)
    fetch_scoring(Settings().models_dir, progress=False)
    photo = tmp_path / "astronaut.jpg"
    photo.write_bytes(astronaut_jpeg)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    assert main(["analyze", str(photo), str(broken), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results[0]["faces"]) == 1 and results[0]["faces"][0]["gender"] == "female"
    assert "error" in results[1]
