"""The HTML report and the text summary render from three fake evaluated faces (no networks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from libs.common.chips import ARCFACE_TEMPLATE_112
from services.scoring.eval_age import format_table
from services.scoring.evaluation.metrics import summarize
from services.scoring.report import write_report


def _fake(tmp_path: Path) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(0)
    records = []
    for i, (true, pred) in enumerate([(8.0, 14.0), (35.0, 33.0), (66.0, 52.0)]):
        path = tmp_path / f"face{i}.png"
        Image.fromarray(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)).save(path)
        records.append({"file": path.name, "path": str(path), "true_age": true, "true_female": float(i % 2),
                        "race": "White", "band": "", "age": pred, "age_low": pred - 5, "age_high": pred + 5,
                        "p_female": 0.3, "members": {"m1": pred + 1, "m2": pred - 2}, "detected": i != 2,
                        "landmarks": ARCFACE_TEMPLATE_112.tolist()})
    from services.scoring.evaluation.metrics import age_band

    for r in records:
        r["band"] = age_band(r["true_age"])
    true = np.array([r["true_age"] for r in records])
    pred = np.array([r["age"] for r in records])
    summary = summarize(true, pred, {"m1": pred + 1, "m2": pred - 2}, np.full(3, 0.3), np.array([0.0, 1.0, 0.0]),
                        None, ["0", "0", "0"])
    summary.update(dataset=str(tmp_path), target="age", mode="aligned", portion="all", profile="default",
                   calibration_fitted_on="test", images=3, failures=0, fallbacks=1, gender_member_accuracy={},
                   beats_every_member=False, ms_per_face={"detect_align": 1.0, "members": 2.0})
    return summary, records


def test_report_embeds_thumbnails_and_charts(tmp_path: Path) -> None:
    summary, records = _fake(tmp_path)
    page = write_report(tmp_path / "report", summary, records)
    text = page.read_text()
    assert text.count("data:image/jpeg;base64,") >= 3  # every face shown at least once (band, race, gender groups)
    assert text.count("data:image/png;base64,") == 2
    assert "no face found" in text and "+6.0" in text and "-14.0" in text
    for chart in ("mae_by_band.png", "mae_by_age.png"):
        with Image.open(page.parent / chart) as image:
            assert image.size[0] > 500


def test_text_summary_lists_every_band_and_member(tmp_path: Path) -> None:
    summary, _ = _fake(tmp_path)
    table = format_table(summary)
    for needle in ("0-12", "20-39", "60+", "m1", "m2", "beats every member: NO"):
        assert needle in table
