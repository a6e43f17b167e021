"""The cold-start evaluation protocol on synthetic data, and the data-set loaders (skipped without ../shared/data)."""

from pathlib import Path

import numpy as np
import pytest

from services.scoring.personalize.protocol import ProtocolInputs, per_rater_metrics, run_protocol

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def test_personal_model_beats_global_when_raters_disagree() -> None:
    rng = np.random.default_rng(0)
    n_raters, n_faces = 150, 40
    taste = rng.choice([-1.0, 1.0], n_raters)  # two camps that like opposite faces
    style = rng.normal(size=n_faces)
    quality = rng.normal(0, 0.5, n_faces)
    ratings = 4 + quality[None, :] + 1.2 * taste[:, None] * style[None, :] + rng.normal(0, 0.3, (n_raters, n_faces))
    features = np.stack([style, quality], axis=1) + rng.normal(0, 0.05, (n_faces, 2))
    res = run_protocol(ProtocolInputs(ratings, features, (1.0, 7.0)), ks=(0, 5), n_folds=3, rank=2, reg=1.0)
    m = res["methods"]
    assert m["personal_no_demo"]["5"]["pearson"] > m["global_visual"]["5"]["pearson"] + 0.3
    assert m["personal_no_demo"]["5"]["hot_or_not_acc"] > 0.75 > m["global_visual"]["5"]["hot_or_not_acc"]
    assert m["oracle"]["0"]["pearson"] < 0.5  # the crowd mean is useless when camps cancel out
    assert np.isnan(m["rater_mean"]["5"]["pearson"])  # a constant has no correlation
    assert res["evaluated_raters"] == n_raters


def test_warm_faces_learn_what_pixels_miss() -> None:
    """Faces whose quality the features cannot see: cold predictions are poor, a few other raters' ratings fix them."""
    rng = np.random.default_rng(1)
    n_raters, n_faces = 200, 40
    quality = rng.normal(0, 1.0, n_faces)  # invisible in the features
    ratings = 4 + quality[None, :] + rng.normal(0, 0.8, (n_raters, n_faces))
    features = rng.normal(size=(n_faces, 3))
    res = run_protocol(ProtocolInputs(ratings, features, (1.0, 7.0)), ks=(0, 5), n_folds=3, rank=2, reg=1.0,
                       warm=(3, 30))
    m = res["methods"]
    assert res["warm"] == [3, 30]
    assert m["global_visual"]["5"]["pearson"] < 0.2  # the pixels know nothing
    assert m["personal_warm_3"]["5"]["pearson"] > m["personal_no_demo"]["5"]["pearson"] + 0.3
    assert m["personal_warm_30"]["5"]["pearson"] > m["personal_warm_3"]["5"]["pearson"]
    assert m["global_warm_30"]["0"]["pearson"] > m["oracle"]["0"]["pearson"] - 0.05  # 30 ratings ≈ the crowd


def test_hot_or_not_metric_is_rater_relative() -> None:
    truth = np.array([[1.0, 2.0, 6.0, 7.0], [3.0, 3.5, 4.0, 5.0]])
    pred = truth * 10 + 100  # any increasing map is perfect
    out = per_rater_metrics(truth, pred, min_group=3)
    assert out["hot_or_not_acc"] == 1.0 and out["pearson"] == pytest.approx(1.0)


@pytest.mark.data
def test_mebeauty_duplicates_never_straddle_splits() -> None:
    if not (DATA / "mebeauty").exists():
        pytest.skip(f"needs the shared data sets at {DATA} (absent)")
    from services.scoring.beauty.dataset import load_mebeauty, read_duplicate_groups

    labels = load_mebeauty(DATA / "mebeauty")
    assert len(set(labels.files)) == len(labels.files)
    kept = set(labels.files)
    for group in read_duplicate_groups(DATA / "mebeauty" / "exact_duplicate_images.txt"):
        assert sum(name in kept for name in group) == 1  # one representative per byte-identical group
    assert (labels.split == "test").sum() >= 500


def test_csv_files_saved_by_a_spreadsheet_with_a_byte_order_mark_load(tmp_path: Path) -> None:
    """Excel's "CSV UTF-8" starts each file with a BOM, which used to become part of the first column's name."""
    from services.scoring.beauty.evaluate import mebeauty_files
    from services.scoring.personalize.data import load_ratings

    bom = "utf-8-sig"
    (tmp_path / "labels.csv").write_text("file,score\r\na.jpg,3\r\nb.jpg,5\r\n", encoding=bom)
    (tmp_path / "ratings_long.csv").write_text("rater_id,image,rating\r\nr1,a.jpg,2\r\nr1,b.jpg,6\r\n"
                                               "r2,b.jpg,4\r\n", encoding=bom)
    (tmp_path / "raters.csv").write_text("rater_id,rater_sex,rater_age,rater_sexpref\r\nr1,F,30,M\r\n", encoding=bom)
    data = load_ratings(tmp_path)
    assert data.faces == ["a.jpg", "b.jpg"] and data.raters == ["r1", "r2"]
    np.testing.assert_array_equal(data.ratings, [[2.0, 6.0], [np.nan, 4.0]])
    assert data.demographics is not None
    assert mebeauty_files(tmp_path) == ["a.jpg", "b.jpg"]
