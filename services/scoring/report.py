"""HTML report of an age evaluation: the worst faces per group beside truth and every prediction, plus two charts.

Why worst-per-group: a global MAE hides who the system fails (children, older people, one skin tone); looking at
the faces behind the largest errors shows whether it is the model, the crop (a wrong face, a bad alignment) or the
label. Everything is embedded (thumbnails as base64 JPEG, charts as base64 PNG), so the page is one file that can be
opened anywhere. It shows research-data faces: keep it off public websites (../shared/data/README.md).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from services.scoring.evaluation.metrics import AGE_BANDS
from services.scoring.evaluation.plots import bar_chart, line_chart

WORST_PER_GROUP = 6  # enough to see a pattern, few enough to scan a page
THUMB_SIZE = 128  # px: the 256-px chip halved, still shows wrinkles and hair
JPEG_QUALITY = 85
AGE_BIN = 5  # years per point of the error-by-age curve
MIN_BIN_FACES = 3  # fewer faces than this in a bin: leave the point out (too noisy to read)

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:24px} h2{font-size:20px;margin-top:32px;border-bottom:1px solid #ccc} h3{font-size:16px;margin:18px 0 6px}
table.summary{border-collapse:collapse;margin:8px 0} table.summary td,table.summary th{border:1px solid #ccc;
padding:4px 10px;text-align:right} table.summary th{background:#f4f4f4} table.summary td:first-child{text-align:left}
.cards{display:flex;flex-wrap:wrap;gap:10px} .card{border:1px solid #ddd;border-radius:6px;padding:6px;width:330px;
display:flex;gap:8px;background:#fafafa} .card img{width:128px;height:128px;border-radius:4px}
.card .txt{font-size:12px;line-height:1.35;min-width:0;overflow-wrap:anywhere}
.err{color:#b00020;font-weight:600} .warn{color:#8a5a00}
.note{color:#555;font-size:13px} img.chart{max-width:100%;border:1px solid #eee}
"""


def _thumbnail(record: dict[str, Any]) -> str:
    """The chip the members saw (re-cut from the image and the cached landmarks) as a base64 JPEG data URL."""
    from libs.common.alignment import align_face
    from libs.common.images import load_image_file as load_image

    try:
        chip = align_face(load_image(Path(record["path"])), np.asarray(record["landmarks"], np.float32)).chip
    except (OSError, ValueError) as exc:  # a moved or unreadable image must not break the whole report
        return f"missing:{exc}"
    buffer = BytesIO()
    Image.fromarray(chip).resize((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS).save(
        buffer, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _png(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _card(record: dict[str, Any]) -> str:
    thumb = _thumbnail(record)
    image = (f'<img src="{thumb}" alt="face">' if thumb.startswith("data:")
             else '<div class="warn">image unavailable</div>')
    err = record["age"] - record["true_age"]
    members = "".join(f"<br>{html.escape(n)}: {a:.1f}" for n, a in record["members"].items())
    gender = ""
    if record.get("true_female") is not None:
        truth = "F" if record["true_female"] > 0.5 else "M"
        gender = f"<br>gender {truth}, P(F) {record['p_female']:.2f}"
    flags = "" if record.get("detected", True) else '<br><span class="warn">no face found: fallback chip</span>'
    return (f'<div class="card">{image}<div class="txt"><b>{html.escape(record["file"])}</b>'
            f'<br>true {record["true_age"]:.0f} → <b>{record["age"]:.1f}</b> '
            f'<span class="err">({err:+.1f})</span><br>80% range {record["age_low"]:.0f}–{record["age_high"]:.0f}'
            f'{members}{gender}{flags}</div></div>')


def _groups(records: Sequence[dict[str, Any]]) -> list[tuple[str, list[tuple[str, list[dict[str, Any]]]]]]:
    """(kind, [(group, records)]) for age band, race and gender, in a stable order."""
    kinds: list[tuple[str, list[tuple[str, list[dict[str, Any]]]]]] = []
    bands = [(b[0], [r for r in records if r["band"] == b[0]]) for b in AGE_BANDS]
    kinds.append(("age band", [(g, rs) for g, rs in bands if rs]))
    races = sorted({r["race"] for r in records if r.get("race")})
    if races:
        kinds.append(("race", [(g, [r for r in records if r.get("race") == g]) for g in races]))
    if any(r.get("true_female") is not None for r in records):
        kinds.append(("gender", [(g, [r for r in records if r.get("true_female") is not None
                                       and (r["true_female"] > 0.5) == (g == "female")]) for g in ("female", "male")]))
    return kinds


def error_by_age_png(records: Sequence[dict[str, Any]]) -> bytes:
    """Line chart: MAE per AGE_BIN-year bin of true age, for the ensemble and each member."""
    true = np.array([r["true_age"] for r in records])
    bins = np.arange(0, max(true.max(), AGE_BIN) + AGE_BIN, AGE_BIN)
    centres, series = [], {"ensemble": []}
    members = list(records[0]["members"])
    for m in members:
        series[m] = []
    for low in bins[:-1]:
        rows = [r for r in records if low <= r["true_age"] < low + AGE_BIN]
        centres.append(float(low))
        for name in series:
            pred = [r["age"] if name == "ensemble" else r["members"][name] for r in rows]
            value = float(np.mean(np.abs(np.array(pred) - np.array([r["true_age"] for r in rows])))) \
                if len(rows) >= MIN_BIN_FACES else float("nan")
            series[name].append(value)
    return line_chart(f"MAE by true age ({AGE_BIN}-year bins, < {MIN_BIN_FACES} faces left out)",
                      "true age (bin start, years)", "years", centres, series)


def band_png(summary: dict[str, Any]) -> bytes:
    """Grouped bars: MAE per age band for the ensemble and each member."""
    bands = list(summary["by_band"])
    series = {"ensemble": [summary["by_band"][b]["mae"] for b in bands]}
    for m in summary["member_mae"]:
        series[m] = [summary["by_band"][b].get("member_mae", {}).get(m, float("nan")) for b in bands]
    return bar_chart("MAE per age band", "years", bands, series, [summary["by_band"][b]["n"] for b in bands])


def _summary_table(summary: dict[str, Any]) -> str:
    members = list(summary["member_mae"])
    head = "".join(f"<th>{html.escape(m)}</th>" for m in members)
    rows = [f"<tr><td>all</td><td>{summary['n']}</td><td><b>{summary['mae']:.2f}</b></td>"
            + "".join(f"<td>{summary['member_mae'][m]:.2f}</td>" for m in members) + "</tr>"]
    for band, entry in summary["by_band"].items():
        per = entry.get("member_mae", {})
        rows.append(f"<tr><td>{band}</td><td>{entry['n']}</td><td><b>{entry['mae']:.2f}</b></td>"
                    + "".join(f"<td>{per.get(m, float('nan')):.2f}</td>" for m in members) + "</tr>")
    return (f'<table class="summary"><tr><th>group</th><th>n</th><th>ensemble</th>{head}</tr>'
            + "".join(rows) + "</table>")


def render_report(summary: dict[str, Any], records: Sequence[dict[str, Any]]) -> str:
    """The whole page as an HTML string."""
    facts = [f"images {summary['images']}, scored {summary['n']}, failures (no face) {summary['failures']}, "
             f"fallback chips {summary['fallbacks']}"]
    if "mae_with_fallback" in summary:
        facts.append(f"MAE incl. fallback chips {summary['mae_with_fallback']:.2f}")
    if "gender_accuracy" in summary:
        facts.append(f"gender accuracy {summary['gender_accuracy']:.3f}")
    if "eps_error" in summary:
        facts.append(f"ε-error {summary['eps_error']:.3f}")
    scored = [r for r in records if r.get("detected", True) or summary["mode"] == "aligned"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Howhot age evaluation</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Age evaluation — {html.escape(Path(summary['dataset']).name)}</h1>",
        f"<p class='note'>target <b>{html.escape(summary['target'])}</b>, mode <b>{summary['mode']}</b>, portion "
        f"<b>{summary['portion']}</b>, profile <b>{summary['profile']}</b>; calibration: "
        f"{html.escape(summary.get('calibration_fitted_on', ''))}</p>",
        f"<p>{'; '.join(facts)}</p>",
        "<p class='note'>Research data: do not publish these faces. MAE in years; members' ages are their own "
        "(uncalibrated) DEX expectations.</p>",
        "<h2>Summary</h2>", _summary_table(summary),
        "<h2>Charts</h2>",
        f"<img class='chart' alt='MAE per age band' src='{_png(band_png(summary))}'><br>",
        f"<img class='chart' alt='MAE by age' src='{_png(error_by_age_png(scored or list(records)))}'>",
        f"<h2>Worst predictions per group (top {WORST_PER_GROUP} by |error|)</h2>",
    ]
    for kind, groups in _groups(scored or list(records)):
        parts.append(f"<h3>by {kind}</h3>")
        for group, rows in groups:
            worst = sorted(rows, key=lambda r: -abs(r["age"] - r["true_age"]))[:WORST_PER_GROUP]
            group_mae = float(np.mean([abs(r["age"] - r["true_age"]) for r in rows]))
            parts.append(f"<h3>{html.escape(str(group))} — n {len(rows)}, MAE {group_mae:.2f}</h3>"
                         f"<div class='cards'>{''.join(_card(r) for r in worst)}</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out_dir: Path, summary: dict[str, Any], records: Sequence[dict[str, Any]]) -> Path:
    """Write ``out_dir/index.html`` (self-contained) and the two charts as PNG files beside it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "mae_by_band.png").write_bytes(band_png(summary))
    scored = [r for r in records if r.get("detected", True) or summary["mode"] == "aligned"] or list(records)
    (out_dir / "mae_by_age.png").write_bytes(error_by_age_png(scored))
    page = out_dir / "index.html"
    page.write_text(render_report(summary, records))
    return page
