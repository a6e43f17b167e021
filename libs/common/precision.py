"""Whether a network should run under bf16 autocast on a given device.

bf16 halves the memory traffic and doubles the arithmetic rate only where the hardware has native bf16 units: every
CUDA GPU we deploy on, and CPUs with AVX512-BF16 / AMX (oneDNN reports them). On other CPUs oneDNN emulates bf16 and
the network gets *slower* than fp32, so "auto" must ask the hardware rather than assume.
"""

from __future__ import annotations

from typing import Literal

import torch

Precision = Literal["auto", "bf16", "fp32"]
PRECISIONS: tuple[Precision, ...] = ("auto", "bf16", "fp32")


def cpu_has_native_bf16() -> bool:
    """True when oneDNN runs bf16 kernels natively on this CPU (False when torch was built without that probe)."""
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if probe is None:
        return False
    try:
        return bool(probe())
    except RuntimeError:  # a torch build without oneDNN registers the name but cannot answer
        return False


def bf16_worthwhile(device: torch.device | str) -> bool:
    """bf16 autocast pays off on CUDA and on CPUs with native bf16; elsewhere fp32 is faster."""
    kind = torch.device(device).type
    if kind == "cuda":
        return True
    return kind == "cpu" and cpu_has_native_bf16()


def resolve_autocast_dtype(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype for a ``precision`` setting: ``bf16`` forces it, ``fp32`` disables it (None), ``auto``
    follows ``bf16_worthwhile``. Unknown values raise so a typo in the environment is not silently fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" or (precision == "auto" and bf16_worthwhile(device)):
        return torch.bfloat16
    return None


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` → the first CUDA device when there is one, else the CPU (``HOWHOT_MODELS_DEVICE``, every model)."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
