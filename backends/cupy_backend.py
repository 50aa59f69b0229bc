"""CuPy on a CUDA GPU.

CuPy allocates and launches kernels on the calling thread's *current* device, and
array-api-compat's CuPy namespace ignores ``device=`` in ``zeros``/``full``/``arange``
(multi-device CuPy needs the global current device). So this backend declares
``uses_current_device``, and nnx runs each operation on a model inside
:meth:`CupyBackend.activate` (``with cupy.cuda.Device(i)``): arrays land on the model's
GPU whatever the thread's current device is.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from typing import Any

import array_api_compat
import numpy as np

from .base import Backend, BackendUnavailableError

NAME = "cupy"
INSTALL_HINT = (
    "pip install 'nnx-array[cuda12]' for CUDA 12 or 'nnx-array[cuda13]' for CUDA 13"
)
#: What CuPy needs to compile its kernels, by the CUDA major version it was built for.
RUNTIME_HINT = (
    "CuPy compiles its kernels at run time and needs the CUDA runtime libraries (NVRTC, "
    "cuBLAS): pip install 'cupy-cuda{major}x[ctk]' (or 'nnx-array[cuda{major}]'), or install "
    "the CUDA Toolkit {major}"
)


def _describe(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line, at most ``limit`` characters of the message."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _import() -> tuple[Any, str | None]:
    """(the cupy module, None) when CuPy imports and a CUDA device answers, else (None, reason).

    Cheap when CuPy is absent (a spec lookup); never lets an import or driver error escape.
    """
    if "cupy" not in sys.modules and importlib.util.find_spec("cupy") is None:
        return None, f"CuPy is not installed; {INSTALL_HINT}"
    try:
        import cupy
    except Exception as exc:  # noqa: BLE001 - a broken install must not crash the probe
        return None, f"importing cupy failed: {_describe(exc)}"
    try:
        import array_api_compat.cupy  # noqa: F401  (what the backend's math will use)
    except Exception as exc:  # noqa: BLE001
        return None, f"importing array_api_compat.cupy failed: {_describe(exc)}"
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # noqa: BLE001 - CUDARuntimeError, missing driver library, ...
        return None, f"no CUDA device answers (CUDA driver said: {_describe(exc)})"
    if count < 1:
        return None, "no CUDA device found"
    return cupy, None


def device_index(cupy: Any, device: Any) -> int:
    """The GPU index ``device`` names (None: the thread's current device; an int; a
    ``cupy.cuda.Device``; ``"cuda"``, ``"cuda:1"``, ``"gpu:1"``, ``"1"``).

    Raises BackendUnavailableError for a name that is not a GPU or a GPU that does not exist.
    """
    count = int(cupy.cuda.runtime.getDeviceCount())
    if device is None:
        index = int(cupy.cuda.runtime.getDevice())
    elif isinstance(device, cupy.cuda.Device):
        index = int(device.id)
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
                f"cupy backend: device {device!r} is not a GPU index; use 0, 1, ... or 'cuda:1'")
    if not 0 <= index < count:
        raise BackendUnavailableError(
            f"cupy backend: CUDA device {index} does not exist; this machine has {count}.")
    return index


def _cuda_major(cupy: Any) -> str:
    try:
        return str(int(cupy.cuda.runtime.runtimeGetVersion()) // 1000)
    except Exception:  # noqa: BLE001
        return "12"


@functools.cache
def _kernel_check(cupy: Any, index: int) -> str | None:
    """None when GPU ``index`` compiles and runs a small elementwise kernel (NVRTC) and a
    matrix product (cuBLAS) with the right results, else the precise reason.

    Cached per CuPy module and device: a failure is not retried within the process.
    """
    step = "selecting the device"
    try:
        with cupy.cuda.Device(index):
            step = "copying 4 numbers to the GPU"
            x = cupy.asarray(np.arange(4, dtype=np.float32))
            step = "compiling a kernel with NVRTC and running it"
            kernel = cupy.ElementwiseKernel("float32 x", "float32 y", "y = 2 * x + 1",
                                            "nnx_probe")
            y = kernel(x)
            step = "reading the result back"
            got = np.asarray(cupy.asnumpy(y)).tolist()
            if got != [1.0, 3.0, 5.0, 7.0]:
                return (f"CuPy ran a test kernel on GPU {index} but it returned {got} instead of "
                        "[1.0, 3.0, 5.0, 7.0]")
            step = "a matrix product (cuBLAS)"
            m = cupy.reshape(x, (2, 2))
            prod = np.asarray(cupy.asnumpy(m @ m)).tolist()
            if prod != [[2.0, 3.0], [6.0, 11.0]]:
                return f"CuPy's matrix product on GPU {index} returned {prod} instead of [[2, 3], [6, 11]]"
    except Exception as exc:  # noqa: BLE001 - every failure becomes a reason
        hint = RUNTIME_HINT.format(major=_cuda_major(cupy)) if "compil" in step or "cuBLAS" in step \
            else "check the driver with nvidia-smi"
        return f"CuPy sees GPU {index} but failed at {step} ({_describe(exc)}); {hint}"
    return None


def clear_probe_cache() -> None:
    """Forget the cached kernel checks (tests, or after installing the CUDA libraries)."""
    _kernel_check.cache_clear()


def probe(device: Any = None) -> str | None:
    """None when CuPy imports, a CUDA device answers and it compiles, runs and reads back a
    tiny kernel (on ``device``, default the current one), else the reason it cannot."""
    cupy, reason = _import()
    if reason is not None:
        return reason
    try:
        index = device_index(cupy, device)
    except BackendUnavailableError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001
        return f"no CUDA device answers (CUDA driver said: {_describe(exc)})"
    return _kernel_check(cupy, index)


def device_count() -> int:
    """How many GPUs CuPy sees (0 without CuPy or a driver); creates no CUDA context."""
    cupy, reason = _import()
    if reason is not None:
        return 0
    return int(cupy.cuda.runtime.getDeviceCount())


def pci_bus_id(cupy: Any, index: int) -> str:
    """The PCI bus id of GPU ``index`` (``"0000:3B:00.0"``): the same GPU has the same id in
    every process, whatever CUDA_VISIBLE_DEVICES renumbers; ``"cuda:<index>"`` if unknown."""
    try:
        return str(cupy.cuda.Device(index).pci_bus_id).upper()
    except Exception:  # noqa: BLE001
        return f"cuda:{index}"


def owns(x: Any) -> bool:
    return array_api_compat.is_cupy_array(x)


def to_numpy(x: Any) -> np.ndarray:
    """The values of CuPy array ``x`` copied to host memory."""
    return x.get()


class CupyBackend(Backend):
    """CuPy on one GPU; every operation on its arrays runs with that GPU current."""

    name = NAME
    is_host = False
    uses_current_device = True

    def __init__(self, device: Any = None) -> None:
        cupy, reason = _import()
        if reason is None:
            try:
                index = device_index(cupy, device)  # BackendUnavailableError for a bad device
            except BackendUnavailableError:
                raise
            except Exception as exc:  # noqa: BLE001 - a driver error while asking
                reason = f"no CUDA device answers (CUDA driver said: {_describe(exc)})"
            else:
                reason = _kernel_check(cupy, index)
        if reason is not None:
            raise BackendUnavailableError(
                f"Backend 'cupy' is unavailable: {reason}. "
                "Use nnx.set_backend('auto') to fall back to NumPy on machines without a GPU."
            )
        import array_api_compat.cupy as xp_cupy

        self._cupy = cupy
        super().__init__(xp_cupy, cupy.cuda.Device(index))

    def activate(self) -> Any:
        """``with cupy.cuda.Device(i)``: CuPy allocates and launches on the current device."""
        return self.device

    def make_current(self) -> None:
        self.device.use()

    def device_uid(self) -> str:
        return pci_bus_id(self._cupy, self.device.id)

    def owns(self, x: Any) -> bool:
        return owns(x)

    def same_place(self, x: Any) -> bool:
        return self.owns(x) and x.device.id == self.device.id

    def from_numpy(self, a: np.ndarray) -> Any:
        with self.device:
            return self._cupy.asarray(a)

    def to_numpy(self, x: Any) -> np.ndarray:
        return to_numpy(x)

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
            "pci_bus_id": self.device_uid(),
        }


def create(device: Any = None) -> CupyBackend:
    return CupyBackend(device)
