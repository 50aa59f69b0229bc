"""CuPy on a CUDA GPU."""

from __future__ import annotations

import importlib.util
from typing import Any

import array_api_compat
import numpy as np

from .base import Backend, BackendUnavailableError

INSTALL_HINT = (
    "pip install 'nnx-array[cuda12]' for CUDA 12 or 'nnx-array[cuda13]' for CUDA 13"
)


def probe() -> str | None:
    """None when CuPy imports and a CUDA device answers, else the reason.

    Cheap when CuPy is absent (a spec lookup); never lets a driver error escape.
    """
    if importlib.util.find_spec("cupy") is None:
        return f"CuPy is not installed; {INSTALL_HINT}"
    try:
        import cupy
    except Exception as exc:
        return f"importing cupy failed: {type(exc).__name__}: {exc}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError, missing driver library, ...
        return f"no CUDA device answers (CUDA driver said: {exc})"
    if count < 1:
        return "no CUDA device found"
    return None


class CupyBackend(Backend):
    name = "cupy"
    is_host = False

    def __init__(self, device: Any = None) -> None:
        reason = probe()
        if reason:
            raise BackendUnavailableError(
                f"Backend 'cupy' is unavailable: {reason}. "
                "Use nnx.set_backend('auto') to fall back to NumPy on machines without a GPU."
            )
        import array_api_compat.cupy as xp_cupy
        import cupy

        self._cupy = cupy
        count = cupy.cuda.runtime.getDeviceCount()
        if device is None:
            index = cupy.cuda.runtime.getDevice()
        elif isinstance(device, cupy.cuda.Device):
            index = device.id
        elif isinstance(device, int) and not isinstance(device, bool):
            index = device
        else:
            text = str(device).strip().lower()
            tail = text.split(":", 1)[1] if text.startswith(("cuda:", "gpu:")) else text
            if text in ("cuda", "gpu"):
                index = 0
            elif tail.isdigit():
                index = int(tail)
            else:
                raise BackendUnavailableError(
                    f"cupy backend: device {device!r} is not a GPU index; use 0, 1, ... or 'cuda:1'"
                )
        if not 0 <= index < count:
            raise BackendUnavailableError(
                f"cupy backend: CUDA device {index} does not exist; this machine has {count}."
            )
        super().__init__(xp_cupy, cupy.cuda.Device(index))

    def activate(self) -> Any:
        """CuPy launches kernels on the thread's current device: make it this one."""
        return self.device

    def make_current(self) -> None:
        self.device.use()

    def owns(self, x: Any) -> bool:
        return array_api_compat.is_cupy_array(x)

    def same_place(self, x: Any) -> bool:
        return self.owns(x) and x.device.id == self.device.id

    def from_numpy(self, a: np.ndarray) -> Any:
        with self.device:
            return self._cupy.asarray(a)

    def to_numpy(self, x: Any) -> np.ndarray:
        return x.get()

    def synchronize(self) -> None:
        self.device.synchronize()

    def versions(self) -> dict[str, str]:
        cupy = self._cupy
        props = cupy.cuda.runtime.getDeviceProperties(self.device.id)
        name = props["name"]
        return {
            "cupy": cupy.__version__,
            "cuda_runtime": str(cupy.cuda.runtime.runtimeGetVersion()),
            "cuda_driver": str(cupy.cuda.runtime.driverGetVersion()),
            "gpu": name.decode() if isinstance(name, bytes) else str(name),
        }


def create(device: Any = None) -> CupyBackend:
    return CupyBackend(device)
