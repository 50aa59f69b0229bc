"""Finding, creating and probing backends, and moving arrays between them."""

from __future__ import annotations

import importlib
from typing import Any

import array_api_compat
import numpy as np

from .base import Backend

KNOWN_BACKENDS = ("numpy", "cupy", "torch", "array_api_strict")

_MODULES = {
    "numpy": "numpy_backend",
    "cupy": "cupy_backend",
    "torch": "torch_backend",
    "array_api_strict": "strict_backend",
}


def _adapter(name: str) -> Any:
    return importlib.import_module(f".{_MODULES[name]}", __package__)


def probe(name: str, device: Any = None) -> str | None:
    """None when backend ``name`` can be used here (on ``device`` when given), else the
    reason it cannot. CuPy's probe compiles and runs a tiny kernel once per device."""
    if name not in _MODULES:
        raise ValueError(_unknown(name))
    if name == "numpy":
        return None
    return _adapter(name).probe(device)


def device_count(name: str) -> int:
    """How many accelerators backend ``name``'s library sees here (0 for host libraries,
    or when it is not installed); cheap, and creates no device context."""
    if name not in _MODULES:
        raise ValueError(_unknown(name))
    counter = getattr(_adapter(name), "device_count", None)
    return 0 if counter is None else int(counter())


def available_backends() -> list[str]:
    """Names of the backends usable on this machine (changes no state)."""
    return [name for name in KNOWN_BACKENDS if probe(name) is None]


def _unknown(name: str) -> str:
    return f"unknown backend {name!r}; choose one of {', '.join(KNOWN_BACKENDS)} or 'auto'"


def create_backend(name: str, device: Any = None) -> Backend:
    """A Backend for ``name`` (``"auto"``: CuPy when a GPU answers, else NumPy).

    Raises BackendUnavailableError saying why when the backend cannot be used.
    """
    if name == "auto":
        reason = probe("cupy", device)
        if reason is None:
            backend = _adapter("cupy").create(device)
            backend.note = "auto: chose cupy (a CUDA device answered)"
        else:
            backend = _adapter("numpy").create(None)
            backend.note = f"auto: chose numpy ({reason})"
        return backend
    if name not in _MODULES:
        raise ValueError(_unknown(name))
    return _adapter(name).create(device)


_PLACES: dict[tuple[str, str], Backend] = {}


def backend_for(x: Any) -> Backend:
    """The Backend (library and device) that array ``x`` lives on, one object per place."""
    lib = array_library(x)
    dev = array_api_compat.device(x)
    key = (lib, str(dev))
    backend = _PLACES.get(key)
    if backend is None:
        backend = _PLACES[key] = create_backend(lib, dev)
    return backend


def array_library(x: Any) -> str:
    """The backend name whose library ``x`` belongs to; TypeError for non-arrays."""
    if array_api_compat.is_numpy_array(x):
        return "numpy"
    if array_api_compat.is_cupy_array(x):
        return "cupy"
    if array_api_compat.is_torch_array(x):
        return "torch"
    if hasattr(x, "__array_namespace__"):
        ns = array_api_compat.array_namespace(x)
        if array_api_compat.is_array_api_strict_namespace(ns):
            return "array_api_strict"
    raise TypeError(f"expected an array of {', '.join(KNOWN_BACKENDS)}, got {type(x).__name__}")


def to_numpy(x: Any) -> np.ndarray:
    """A host NumPy array holding the values of ``x`` (an array of any backend, or a scalar)."""
    if isinstance(x, (int, float, bool, list, tuple, np.generic, np.ndarray)):
        return np.asarray(x)
    lib = array_library(x)
    if lib == "numpy":
        return np.asarray(x)
    if lib == "cupy":
        return x.get()
    if lib == "torch":
        return x.detach().cpu().numpy()
    return _adapter("array_api_strict").StrictBackend(None).to_numpy(x)


def asarray(x: Any, backend: Backend, dtype: str | None = None, copy: bool = False) -> Any:
    """``x`` as an array of ``backend`` on its device; ``copy=True`` never shares memory."""
    out = backend.asarray(x, dtype=dtype)
    if copy:
        out = backend.xp.asarray(out, copy=True)
    return out
