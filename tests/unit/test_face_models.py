"""Every registered detector builds, runs on tiny inputs, and keeps the published state-dict layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from services.face.models.registry import PRETRAINED_CFGS, WEIGHTS_ENV, create_detector_model, list_detector_models
from services.face.models.retinaface import fuse_batchnorm
from services.face.postprocess import prior_boxes


@pytest.mark.parametrize("name", list_detector_models())
@pytest.mark.parametrize(("height", "width"), [(64, 96), (128, 128)])
def test_outputs_match_prior_count(name: str, height: int, width: int) -> None:
    model = create_detector_model(name, pretrained=False)
    with torch.inference_mode():
        deltas, logits, landmarks = model(torch.randn(2, 3, height, width))
    priors = prior_boxes(height, width, PRETRAINED_CFGS[name].priors)
    assert deltas.shape == (2, len(priors), 4)
    assert logits.shape == (2, len(priors), 2)
    assert landmarks.shape == (2, len(priors), 10)


@pytest.mark.parametrize("name", list_detector_models())
def test_fused_model_matches_unfused(name: str) -> None:
    torch.manual_seed(0)
    model = create_detector_model(name, pretrained=False)
    for module in model.modules():  # non-trivial BN statistics, so folding is actually exercised
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        expected = model(x)
        fused = fuse_batchnorm(model)(x)
    for a, b in zip(expected, fused, strict=True):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3)


def _ternaus_resnet50_keys() -> dict[str, tuple[int, ...]]:
    """Key → shape of ternaus/retinaface's published resnet50_2020-07-20 state dict, derived from its source
    (torchvision resnet50 under IntermediateLayerGetter as ``body``, FPN/SSH of Pytorch_Retinaface, out 256)."""
    keys: dict[str, tuple[int, ...]] = {}

    def conv_bn(prefix: str, conv: str, bn: str, out_ch: int, in_ch: int, k: int) -> None:
        keys[f"{prefix}{conv}.weight"] = (out_ch, in_ch, k, k)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}{bn}.{stat}"] = (out_ch,)
        keys[f"{prefix}{bn}.num_batches_tracked"] = ()

    conv_bn("body.", "conv1", "bn1", 64, 3, 7)
    in_ch = 64
    for layer, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512), strict=True), start=1):
        for block in range(blocks):
            prefix = f"body.layer{layer}.{block}."
            conv_bn(prefix, "conv1", "bn1", width, in_ch, 1)
            conv_bn(prefix, "conv2", "bn2", width, width, 3)
            conv_bn(prefix, "conv3", "bn3", width * 4, width, 1)
            if block == 0:
                conv_bn(prefix, "downsample.0", "downsample.1", width * 4, in_ch, 1)
            in_ch = width * 4
    for name, cin in (("output1", 512), ("output2", 1024), ("output3", 2048)):
        conv_bn("fpn.", f"{name}.0", f"{name}.1", 256, cin, 1)
    for name in ("merge1", "merge2"):
        conv_bn("fpn.", f"{name}.0", f"{name}.1", 256, 256, 3)
    for ssh in ("ssh1", "ssh2", "ssh3"):
        conv_bn(f"{ssh}.", "conv3X3.0", "conv3X3.1", 128, 256, 3)
        conv_bn(f"{ssh}.", "conv5X5_1.0", "conv5X5_1.1", 64, 256, 3)
        conv_bn(f"{ssh}.", "conv5X5_2.0", "conv5X5_2.1", 64, 64, 3)
        conv_bn(f"{ssh}.", "conv7X7_2.0", "conv7X7_2.1", 64, 64, 3)
        conv_bn(f"{ssh}.", "conv7x7_3.0", "conv7x7_3.1", 64, 64, 3)
    for head, values in (("ClassHead", 2), ("BboxHead", 4), ("LandmarkHead", 10)):
        for level in range(3):
            keys[f"{head}.{level}.conv1x1.weight"] = (2 * values, 256, 1, 1)
            keys[f"{head}.{level}.conv1x1.bias"] = (2 * values,)
    return keys


def test_resnet50_state_dict_matches_ternaus_layout() -> None:
    state = create_detector_model("retinaface_resnet50", pretrained=False).state_dict()
    expected = _ternaus_resnet50_keys()
    assert set(state) == set(expected)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected


def test_resnet50_loads_weights_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = create_detector_model("retinaface_resnet50", pretrained=False)
    torch.nn.init.constant_(source.ClassHead[0].conv1x1.bias, 0.25)
    path = tmp_path / "ternaus.pth"
    torch.save(source.state_dict(), path)
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    loaded = create_detector_model("retinaface_resnet50", models_dir=tmp_path)
    assert torch.equal(loaded.ClassHead[0].conv1x1.bias, torch.full((4,), 0.25))


def test_resnet50_missing_weights_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "nope.pth"))
    with pytest.raises(FileNotFoundError, match=WEIGHTS_ENV):
        create_detector_model("retinaface_resnet50", models_dir=tmp_path)


def test_unknown_model_name() -> None:
    with pytest.raises(KeyError, match="retinaface_mobilenetv2"):
        create_detector_model("nope", pretrained=False)
