"""The bf16 decision: CUDA always, CPU only with native bf16, and the "auto" | "bf16" | "fp32" setting on top."""

from __future__ import annotations

import pytest
import torch

from libs.common import precision
from libs.common.precision import bf16_worthwhile, cpu_has_native_bf16, resolve_autocast_dtype


class _Ops:
    """Stands in for ``torch.ops.mkldnn`` with or without the bf16 probe."""

    def __init__(self, probe: object = None) -> None:
        if probe is not None:
            self._is_mkldnn_bf16_supported = probe


def _fake_mkldnn(monkeypatch: pytest.MonkeyPatch, probe: object = None) -> None:
    monkeypatch.setattr(precision.torch.ops, "mkldnn", _Ops(probe))


def test_cpu_with_native_bf16_uses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_mkldnn(monkeypatch, lambda: True)
    assert cpu_has_native_bf16() and bf16_worthwhile("cpu") and bf16_worthwhile(torch.device("cpu"))
    assert resolve_autocast_dtype("auto", "cpu") == torch.bfloat16


def test_cpu_without_native_bf16_stays_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_mkldnn(monkeypatch, lambda: False)
    assert not bf16_worthwhile("cpu")
    assert resolve_autocast_dtype("auto", "cpu") is None
    assert resolve_autocast_dtype("bf16", "cpu") == torch.bfloat16  # an explicit choice is obeyed


def test_torch_without_the_probe_counts_as_no_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_mkldnn(monkeypatch)
    assert not cpu_has_native_bf16() and resolve_autocast_dtype("auto", "cpu") is None


def test_a_probe_that_cannot_answer_counts_as_no_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> bool:
        raise RuntimeError("torch built without oneDNN")

    _fake_mkldnn(monkeypatch, broken)
    assert not cpu_has_native_bf16()


def test_cuda_always_uses_bf16_and_never_asks_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_mkldnn(monkeypatch, lambda: False)
    assert bf16_worthwhile("cuda") and bf16_worthwhile(torch.device("cuda", 0))
    assert resolve_autocast_dtype("auto", "cuda:0") == torch.bfloat16


def test_fp32_always_disables_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_mkldnn(monkeypatch, lambda: True)
    assert resolve_autocast_dtype("fp32", "cpu") is None and resolve_autocast_dtype("fp32", "cuda") is None


def test_other_devices_stay_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_mkldnn(monkeypatch, lambda: True)
    assert not bf16_worthwhile("meta")


@pytest.mark.parametrize("value", ["fp16", "BF16", ""])
def test_unknown_precision_is_rejected(value: str) -> None:
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_autocast_dtype(value, "cpu")


def test_the_real_probe_answers_a_bool() -> None:
    assert isinstance(cpu_has_native_bf16(), bool)


@pytest.mark.parametrize(("native", "expected"), [(True, torch.bfloat16), (False, None)])
def test_scorer_runs_the_wrn_in_bf16_only_where_the_cpu_has_it(
    monkeypatch: pytest.MonkeyPatch, native: bool, expected: torch.dtype | None
) -> None:
    """A CPU without native bf16 must not get the (emulated, slower) bf16 WRN; the small CC0 nets stay fp32 anyway."""
    from libs.common.settings import Settings
    from services.scoring import scorer as scorer_module
    from services.scoring.models import fetch

    fetch(Settings().models_dir, progress=False)
    _fake_mkldnn(monkeypatch, lambda: native)
    scorer = scorer_module.FaceScorer(device="cpu", warmup=False)
    wrn = [name for name in scorer.autocast if name in scorer_module.CPU_BF16_MEMBERS]
    assert wrn and all(scorer.autocast[name] is expected for name in wrn)
    assert all(dtype is None for name, dtype in scorer.autocast.items() if name not in wrn)
