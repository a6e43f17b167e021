"""MEBeauty labels: the rater-adjusted training target (synthetic ratings, no data set needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.scoring.beauty.dataset import rater_adjusted_scores


def _write(path: Path, rows: list[tuple[str, str, float]]) -> Path:
    path.write_text("rater_id,image,rating\n" + "".join(f"{r},{i},{v}\n" for r, i, v in rows))
    return path


def test_a_lenient_raters_offset_is_removed(tmp_path: Path) -> None:
    """Face a is seen only by a lenient rater, face b only by a harsh one: raw means invert their order."""
    rng = np.random.default_rng(0)
    truth = {"a.jpg": 6.0, "b.jpg": 6.5, "c.jpg": 5.0, "d.jpg": 7.0}
    offsets = {"lenient": 1.5, "harsh": -1.5, "fair": 0.0}
    seen = {"a.jpg": ["lenient"], "b.jpg": ["harsh"], "c.jpg": list(offsets), "d.jpg": list(offsets)}
    rows = [(rater, face, truth[face] + offsets[rater] + rng.normal(0, 0.05))
            for face, raters in seen.items() for rater in raters for _ in range(20)]
    files = list(truth)
    adjusted = rater_adjusted_scores(_write(tmp_path / "r.csv", rows), files, {f: f for f in files},
                                     np.ones(4, bool))
    raw = {f: np.mean([v for _, i, v in rows if i == f]) for f in files}
    assert raw["b.jpg"] < raw["a.jpg"] and adjusted[1] > adjusted[0]  # plain means invert a and b; adjusted do not
    np.testing.assert_allclose(adjusted, list(truth.values()), atol=0.3)


def test_held_out_faces_get_no_score_and_do_not_shape_others(tmp_path: Path) -> None:
    rows = [("r1", "a.jpg", 5.0), ("r1", "b.jpg", 7.0), ("r2", "b.jpg", 6.0), ("r1", "copy.jpg", 9.0)]
    files = ["a.jpg", "b.jpg"]
    alias = {"a.jpg": "a.jpg", "b.jpg": "b.jpg", "copy.jpg": "b.jpg"}  # a merged duplicate rates as its face
    use = np.array([True, False])
    adjusted = rater_adjusted_scores(_write(tmp_path / "r.csv", rows), files, alias, use)
    assert np.isnan(adjusted[1])
    assert adjusted[0] == 5.0  # only face a's own rating was in the fit: nothing to adjust against
