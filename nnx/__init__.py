"""nnx: explicit forward/backward neural networks on the Python Array API.

One code path trains on NumPy (CPU), CuPy (CUDA), PyTorch tensors and
array-api-strict; pick the library with :func:`set_backend`.
"""

from . import lr_scheduler, models, optim
from .backend import (
    asarray,
    available_backends,
    get_backend,
    set_backend,
    synchronize,
    to_numpy,
    use_backend,
)
from .backends import Backend, BackendUnavailableError, manual_seed
from .checkpoint import load, load_model, save
from .layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU, ZeroPad2d
from .loss import CrossEntropyLoss, MultiCrossEntropyLoss
from .module import Module, Parameter, Sequential, backend_of
from .trainer import Trainer, TrainingDiverged

__version__ = "0.1.0"

_SUBMODULES = ("checkpoint", "data", "distributed", "parallel", "plot", "testing")


def __getattr__(name: str):
    """``nnx.data``, ``nnx.testing``, ... without importing them at ``import nnx``."""
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'nnx' has no attribute {name!r}")

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "Conv2d",
    "CrossEntropyLoss",
    "Flatten",
    "Linear",
    "MaxPool2d",
    "Module",
    "MultiCrossEntropyLoss",
    "Parameter",
    "ReLU",
    "Trainer",
    "TrainingDiverged",
    "Sequential",
    "ZeroPad2d",
    "asarray",
    "available_backends",
    "backend_of",
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
