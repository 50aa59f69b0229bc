"""Finding, creating and probing backends, and moving arrays between them."""

from __future__ import annotations

import importlib
from typing import Any

import array_api_compat
import numpy as np

from .base import Backend

#: The adapter modules, one per array library, in the order nnx lists and tries them.
#: Each declares ``NAME``, ``probe(device)``, ``owns(x)``, ``to_numpy(x)`` and
#: ``create(device)`` (and ``device_count()`` for accelerator libraries); everything
#: else here (the backend list, ownership, host transfer, the CLI's and nnx.testing's
#: lists) is built from those declarations. A new library is one file and one entry.
ADAPTER_MODULES = ("numpy_backend", "strict_backend", "torch_backend", "cupy_backend",
                   "jax_backend")

_ADAPTERS: dict[str, Any] = {}
for _module in ADAPTER_MODULES:
    _adapter_module = importlib.import_module(f".{_module}", __package__)
    _ADAPTERS[_adapter_module.NAME] = _adapter_module
del _module, _adapter_module

#: Every backend name nnx knows, in :data:`ADAPTER_MODULES` order.
KNOWN_BACKENDS = tuple(_ADAPTERS)
_OWNERS = tuple(_ADAPTERS.values())


def _adapter(name: str) -> Any:
    return _ADAPTERS[name]


def probe(name: str, device: Any = None) -> str | None:
    """None when backend ``name`` can be used here (on ``device`` when given), else the
    reason it cannot. CuPy's probe compiles and runs a tiny kernel once per device."""
    if name not in _ADAPTERS:
        raise ValueError(_unknown(name))
    return _adapter(name).probe(device)


def device_count(name: str) -> int:
    """How many accelerators backend ``name``'s library sees here (0 for host libraries,
    or when it is not installed); cheap, and creates no device context."""
    if name not in _ADAPTERS:
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
    if name not in _ADAPTERS:
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


def _owner(x: Any) -> Any:
    """The adapter module whose library array ``x`` belongs to, or None."""
    for adapter in _OWNERS:
        if adapter.owns(x):
            return adapter
    return None


def array_library(x: Any) -> str:
    """The backend name whose library ``x`` belongs to; TypeError for non-arrays."""
    adapter = _owner(x)
    if adapter is None:
        raise TypeError(f"expected an array of {', '.join(KNOWN_BACKENDS)}, got {type(x).__name__}")
    return adapter.NAME


def to_numpy(x: Any) -> np.ndarray:
    """A host NumPy array holding the values of ``x`` (an array of any backend, or a scalar)."""
    if isinstance(x, (int, float, bool, list, tuple, np.generic, np.ndarray)):
        return np.asarray(x)
    adapter = _owner(x)
    if adapter is None:
        raise TypeError(f"expected an array of {', '.join(KNOWN_BACKENDS)}, got {type(x).__name__}")
    return adapter.to_numpy(x)


def asarray(x: Any, backend: Backend, dtype: str | None = None, copy: bool = False) -> Any:
    """``x`` as an array of ``backend`` on its device; ``copy=True`` never shares memory."""
    out = backend.asarray(x, dtype=dtype)
    if copy:
        out = backend.xp.asarray(out, copy=True)
    return out
