"""DEX head training: a step lowers the loss, bootstrap heads train, weights round-trip (tiny synthetic data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from services.scoring.training.fit_heads import ages_to_classes, predict_probs, train_heads, train_step
from services.scoring.training.heads import DexHead, HeadSpec, expected_age, load_heads, save_heads

FEATURES = 16


@pytest.fixture(autouse=True)
def one_thread() -> object:
    """Tiny tensors: thread start-up and contention on shared CPUs cost more than the maths; restore afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _data(n: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ages = rng.uniform(1, 90, n)
    x = rng.normal(size=(n, FEATURES)).astype(np.float32)
    x[:, 0] = ages / 10 + rng.normal(0, 0.1, n)  # one informative feature
    return x, ages


def _spec(members: int = 2) -> HeadSpec:
    return HeadSpec(backbone="agegender_cc0_age", layer="blocks.4", relu=False, pooling="gap",
                    in_features=FEATURES, members=members)


def test_one_training_step_reduces_the_loss() -> None:
    torch.manual_seed(0)
    x, ages = _data()
    head = DexHead(FEATURES)
    head.set_standardization(x)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(ages_to_classes(ages))
    before = train_step(head, optimizer, xt, yt, noise=0.0)
    head.eval()
    with torch.no_grad():
        after = float(torch.nn.functional.cross_entropy(head(xt), yt))
    assert after < before


def test_bootstrap_heads_learn_an_informative_feature() -> None:
    x, ages = _data(300)
    result = train_heads(x, ages, _spec(), epochs=15)
    assert len(result.best_epoch) == 2 and all(len(c) == 15 for c in result.oob_mae)
    x_test, ages_test = _data(100, seed=1)
    pred = expected_age(predict_probs(result.ensemble, x_test))
    assert np.mean(np.abs(pred - ages_test)) < np.mean(np.abs(ages_test - ages_test.mean()))


def test_heads_save_and_load_round_trip(tmp_path: Path) -> None:
    x, ages = _data()
    result = train_heads(x, ages, _spec(), epochs=2)
    save_heads(tmp_path / "h.pt", result.ensemble, {"note": "test"})
    loaded, extra = load_heads(tmp_path / "h.pt")
    assert extra == {"note": "test"} and loaded.spec == result.ensemble.spec
    np.testing.assert_allclose(predict_probs(loaded, x), predict_probs(result.ensemble, x), atol=2e-3)  # fp16 file


def test_full_network_step_reduces_the_loss_on_a_tiny_batch() -> None:
    from services.scoring.training.full import age_label_distribution, build_member, full_step

    torch.manual_seed(0)
    model = build_member("agegender_cc0", models_dir=None, pretrained=False)
    x = torch.rand(4, 3, 64, 64)
    target = age_label_distribution(np.array([3.0, 20.0, 45.0, 70.0]))
    teacher = torch.softmax(torch.randn(4, 101), dim=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before = full_step(model, optimizer, x, target, teacher, distill=0.5)
    after = full_step(model, optimizer, x, target, teacher, distill=0.5)
    assert after < before


def test_age_labels_are_unit_mass_and_narrow_for_children() -> None:
    from services.scoring.training.full import age_label_distribution

    labels = age_label_distribution(np.array([2.0, 60.0]))
    torch.testing.assert_close(labels.sum(dim=1), torch.ones(2))
    mean = labels @ torch.arange(101.0)
    spread = ((torch.arange(101.0)[None] - mean[:, None]) ** 2 * labels).sum(dim=1).sqrt()
    assert abs(float(mean[0]) - 2.0) < 0.05 and float(spread[0]) < 1.0 < 4.0 < float(spread[1])


def test_head_started_from_the_published_classifier_reproduces_it_below_its_last_class() -> None:
    """Grid ages 0..79 take the published rows one to one; the last class's mass spreads over the ages past it."""
    from services.scoring.training.full import init_head_from_classifier
    from services.scoring.training.heads import DexHead

    torch.manual_seed(0)
    classifier = torch.nn.Linear(8, 81)
    values = [0.25, *range(1, 81)]
    head = DexHead(8)
    init_head_from_classifier(head, classifier, values)
    x = torch.randn(5, 8)
    with torch.no_grad():
        published, ours = torch.softmax(classifier(x), 1), torch.softmax(head(x), 1)
    torch.testing.assert_close(ours[:, :80], published[:, :80])
    torch.testing.assert_close(ours[:, 80:].sum(1), published[:, 80])
    torch.testing.assert_close(ours[:, 80:], ours[:, 80:81].expand(-1, 21))


def test_full_members_save_and_load_round_trip(tmp_path: Path) -> None:
    from services.scoring.training.full import build_member, load_full_member, save_full_member

    torch.manual_seed(0)
    model = build_member("agegender_cc0", models_dir=None, pretrained=False).eval()
    save_full_member(tmp_path / "m.pt", model, "agegender_cc0", {"bag": [0, 2]})
    loaded, extra = load_full_member(tmp_path / "m.pt")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=2e-3, rtol=0)  # fp16 file
    assert extra == {"bag": [0, 2], "backbone": "agegender_cc0"}


def test_augmentation_keeps_shape_and_changes_pixels() -> None:
    from services.scoring.training.augment import augment_crop

    crop = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    out = augment_crop(crop, np.random.default_rng(1))
    assert out.shape == crop.shape and out.dtype == np.uint8 and not np.array_equal(out, crop)


@pytest.mark.parametrize("pooling", ["gap", "grid"])
def test_head_member_matches_cached_feature_path(pooling: str) -> None:
    """The production member (backbone + hook + pooling + heads) equals heads applied to the extracted features."""
    from services.scoring.evaluation.extract import FEATURE_LAYERS
    from services.scoring.models.dlib_age_resnet import dlib_age_resnet
    from services.scoring.training.heads import HeadEnsemble
    from services.scoring.training.member import DexHeadMember

    torch.manual_seed(0)
    backbone = dlib_age_resnet().eval()
    width = 256 if pooling == "gap" else 1024
    spec = HeadSpec(backbone="agegender_cc0_age", layer=FEATURE_LAYERS["agegender_cc0_age"][0], relu=False,
                    pooling=pooling, in_features=width)
    member = DexHeadMember(backbone, HeadEnsemble(spec).eval()).eval()
    x = torch.rand(2, 3, 64, 64)
    captured = {}
    handle = backbone.blocks[4].register_forward_hook(lambda _m, _i, out: captured.setdefault("map", out))
    with torch.no_grad():
        probs = member(x)
    handle.remove()
    fmap = captured["map"]
    feats = fmap.mean(dim=(2, 3)) if pooling == "gap" else torch.nn.functional.adaptive_avg_pool2d(fmap, 2).flatten(1)
    with torch.no_grad():
        torch.testing.assert_close(probs, member.heads(feats))
    torch.testing.assert_close(probs.sum(1), torch.ones(2))


def test_training_is_repeatable_whatever_ran_before() -> None:
    """The heads' initial weights come from the seed, not from the global RNG state other code left behind."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 8)).astype(np.float32)
    ages = rng.uniform(5, 80, 120)
    spec = HeadSpec("agegender_cc0_age", "blocks.4", relu=False, pooling="gap", in_features=8, members=2)
    first = predict_probs(train_heads(x, ages, spec, epochs=2).ensemble, x)
    torch.rand(1000)  # another model's random initialisation, say
    second = predict_probs(train_heads(x, ages, spec, epochs=2).ensemble, x)
    np.testing.assert_array_equal(first, second)
