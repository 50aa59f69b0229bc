"""NumPy on the host CPU."""

from __future__ import annotations

from typing import Any

import array_api_compat
import array_api_compat.numpy as xp_numpy
import numpy as np

from .base import Backend, BackendUnavailableError

NAME = "numpy"


def probe(device: Any = None) -> str | None:
    """None: NumPy is always there (a bad ``device`` is reported when the backend is made)."""
    return None


def owns(x: Any) -> bool:
    return array_api_compat.is_numpy_array(x)


def to_numpy(x: Any) -> np.ndarray:
    return np.asarray(x)


class NumpyBackend(Backend):
    """NumPy arrays in host memory (device ``"cpu"``)."""

    name = NAME
    threads_split_batches = True

    def __init__(self, device: Any = None) -> None:
        if device not in (None, "cpu"):
            raise BackendUnavailableError(
                f"numpy backend: device {device!r} does not exist; NumPy has only 'cpu'."
            )
        super().__init__(xp_numpy, "cpu")

    def owns(self, x: Any) -> bool:
        return owns(x)

    def device_of(self, x: Any) -> Any:
        return "cpu"

    def from_numpy(self, a: np.ndarray) -> Any:
        return a

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def versions(self) -> dict[str, str]:
        return {"numpy": np.__version__}


def create(device: Any = None) -> NumpyBackend:
    return NumpyBackend(device)
