"""Keras HDF5 (yu4u WRN-16-8, Keras 2.0.6 layout) → PyTorch ``state_dict``, read with h5py only (no TensorFlow).

Keras names layers by creation order (conv2d_1 … conv2d_16, batch_normalization_1 … _13, dense_1 = gender,
dense_2 = age); ``WideResNetAgeGender`` registers its modules in the same order, so the mapping is positional and
checked shape by shape. Conv kernels go HWIO → OIHW; dense kernels are used as-is (transposed to out×in) because the
PyTorch model flattens NHWC like Keras did.
"""

from __future__ import annotations

import io
import re

import h5py
import numpy as np
import torch
from torch import nn

_LAYER_NUMBER = re.compile(r"_(\d+)$")


def _ordered_layers(weights_group: h5py.Group, prefix: str) -> list[h5py.Group]:
    names = [n for n in weights_group if n.startswith(prefix)]
    names.sort(key=lambda n: int(_LAYER_NUMBER.search(n).group(1)))  # type: ignore[union-attr]
    return [weights_group[n][n] for n in names]


def _dataset(group: h5py.Group, stem: str) -> np.ndarray:
    matches = [k for k in group if k.startswith(stem)]
    if len(matches) != 1:
        raise KeyError(f"{group.name}: expected one dataset named {stem}*, found {matches}")
    return np.asarray(group[matches[0]], dtype=np.float32)


def keras_wrn_state_dict(hdf5_bytes: bytes, model: nn.Module) -> dict[str, torch.Tensor]:
    """Map the HDF5 weights onto ``model``'s parameters/buffers (convs, BNs, dense heads in creation order)."""
    with h5py.File(io.BytesIO(hdf5_bytes), "r") as h5:
        root = h5.get("model_weights", h5)
        convs = _ordered_layers(root, "conv2d_")
        norms = _ordered_layers(root, "batch_normalization_")
        denses = _ordered_layers(root, "dense_")
        torch_convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        torch_norms = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
        torch_denses = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        if (len(convs), len(norms), len(denses)) != (len(torch_convs), len(torch_norms), len(torch_denses)):
            raise ValueError("the HDF5 file does not have the WRN-16-8 layer counts")
        state: dict[str, torch.Tensor] = {}
        for group, (name, module) in zip(convs, torch_convs, strict=True):
            kernel = torch.from_numpy(_dataset(group, "kernel").transpose(3, 2, 0, 1).copy())
            _check(name, kernel, module.weight)
            state[f"{name}.weight"] = kernel
        for group, (name, module) in zip(norms, torch_norms, strict=True):
            for keras, ours in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                                ("moving_variance", "running_var")):
                value = torch.from_numpy(_dataset(group, keras))
                _check(f"{name}.{ours}", value, getattr(module, ours))
                state[f"{name}.{ours}"] = value
            state[f"{name}.num_batches_tracked"] = torch.tensor(0)
        for group, (name, module) in zip(denses, torch_denses, strict=True):
            kernel = torch.from_numpy(_dataset(group, "kernel").T.copy())
            _check(name, kernel, module.weight)
            state[f"{name}.weight"] = kernel
    return state


def _check(name: str, value: torch.Tensor, target: torch.Tensor) -> None:
    if tuple(value.shape) != tuple(target.shape):
        raise ValueError(f"{name}: Keras shape {tuple(value.shape)} does not fit {tuple(target.shape)}")
