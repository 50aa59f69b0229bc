"""nnx: explicit forward/backward neural networks on the Python Array API.

One code path trains on NumPy (CPU), CuPy (CUDA), PyTorch tensors and
array-api-strict; pick the library with :func:`set_backend`.

The names below are imported on first use (PEP 562), so ``import nnx`` and the
``nnx`` command start in milliseconds and a Ctrl-C at start-up reaches the
command's own handler instead of interrupting a long chain of imports.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_logger = logging.getLogger("nnx")
if not _logger.handlers:
    # nnx says which backend "auto" chose (and the like) on stderr by default;
    # logging.getLogger("nnx").setLevel(logging.WARNING) silences it.
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    _logger.addHandler(_handler)
    _logger.setLevel(logging.INFO)
    _logger.propagate = False

#: public name -> the submodule that defines it
_NAMES = {
    "asarray": "backend", "available_backends": "backend", "get_backend": "backend",
    "set_backend": "backend", "synchronize": "backend", "to_numpy": "backend",
    "use_backend": "backend",
    "Backend": "backends", "BackendUnavailableError": "backends", "manual_seed": "backend",
    "load": "checkpoint", "load_model": "checkpoint", "save": "checkpoint",
    "BatchNorm1d": "layers", "BatchNorm2d": "layers", "Dropout": "layers",
    "AvgPool2d": "layers", "AdaptiveAvgPool2d": "layers", "Residual": "layers",
    "LeakyReLU": "layers", "Sigmoid": "layers", "Tanh": "layers", "GELU": "layers",
    "Conv2d": "layers", "Flatten": "layers", "Linear": "layers", "MaxPool2d": "layers",
    "ReLU": "layers", "ZeroPad2d": "layers",
    "CrossEntropyLoss": "loss", "MultiCrossEntropyLoss": "loss",
    "Buffer": "module", "Module": "module", "Parameter": "module", "Sequential": "module",
    "backend_of": "module",
    "clip_grad_norm_": "optim", "clip_grad_value_": "optim", "export_onnx": "onnx_export",
    "Trainer": "trainer", "TrainingDiverged": "trainer", "TrainingInterrupted": "trainer",
    "evaluate": "trainer",
}
_SUBMODULES = ("backend", "backends", "checkpoint", "data", "datasets", "distributed",
               "functional", "init", "interop", "layers", "loss", "lr_scheduler", "models",
               "module", "onnx_export", "optim", "parallel", "philox", "plot", "predict",
               "testing", "trainer")


def __getattr__(name: str) -> Any:
    """``nnx.Linear``, ``nnx.optim``, ... imported when first asked for."""
    if name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'nnx' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES) | set(_SUBMODULES))


if TYPE_CHECKING:  # what static tools see
    from . import lr_scheduler, models, optim
    from .backend import (
        asarray,
        available_backends,
        get_backend,
        manual_seed,
        set_backend,
        synchronize,
        to_numpy,
        use_backend,
    )
    from .backends import Backend, BackendUnavailableError
    from .checkpoint import load, load_model, save
    from .layers import (
        GELU,
        AdaptiveAvgPool2d,
        AvgPool2d,
        BatchNorm1d,
        BatchNorm2d,
        Conv2d,
        Dropout,
        Flatten,
        LeakyReLU,
        Linear,
        MaxPool2d,
        ReLU,
        Residual,
        Sigmoid,
        Tanh,
        ZeroPad2d,
    )
    from .loss import CrossEntropyLoss, MultiCrossEntropyLoss
    from .module import Buffer, Module, Parameter, Sequential, backend_of
    from .onnx_export import export_onnx
    from .optim import clip_grad_norm_, clip_grad_value_
    from .trainer import Trainer, TrainingDiverged, TrainingInterrupted, evaluate

__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "Backend",
    "BackendUnavailableError",
    "BatchNorm1d",
    "BatchNorm2d",
    "Buffer",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "GELU",
    "LeakyReLU",
    "Linear",
    "MaxPool2d",
    "Module",
    "MultiCrossEntropyLoss",
    "Parameter",
    "ReLU",
    "Residual",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "Trainer",
    "TrainingDiverged",
    "TrainingInterrupted",
    "ZeroPad2d",
    "asarray",
    "available_backends",
    "backend_of",
    "clip_grad_norm_",
    "clip_grad_value_",
    "evaluate",
    "export_onnx",
    "get_backend",
    "load",
    "load_model",
    "lr_scheduler",
    "manual_seed",
    "models",
    "optim",
    "save",
    "set_backend",
    "synchronize",
    "to_numpy",
    "use_backend",
]
