"""The active backend: ``set_backend``, ``get_backend``, ``use_backend``; device scopes.

``set_backend`` changes the process-wide default; ``use_backend`` overrides it
for the current thread or asyncio context only (a ``contextvars.ContextVar``),
so threads that use different backends do not see each other's choice.

:func:`device_scope` is how nnx keeps arrays on a model's device whatever the thread's
current device is: every forward (``Module.__call__``), backward (``Sequential``), training
step and fit (``Trainer``), evaluation and batch conversion (``DataLoader``) runs inside
the scope of its arrays' device. It costs a dictionary lookup on host libraries.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
from collections.abc import Iterator
from typing import Any

from . import backends as _backends
from .backends import Backend, BackendUnavailableError

logger = logging.getLogger("nnx")  # its stderr handler is set up in nnx/__init__.py

_default_lock = threading.Lock()
_default: Backend | None = None
_default_spec: tuple[str, Any] = (os.environ.get("NNX_BACKEND", "").strip() or "numpy", None)
_scoped: contextvars.ContextVar[Backend | None] = contextvars.ContextVar("nnx_backend", default=None)


def _create(name: str, device: Any) -> Backend:
    if not isinstance(name, str):
        raise TypeError(f"backend name must be a string, got {type(name).__name__}")
    backend = _backends.create_backend(name.strip().lower(), device)
    if backend.note:
        logger.info("nnx: %s", backend.note)
    return backend


def set_backend(name: str, device: Any = None) -> Backend:
    """Make ``name`` the process-wide default backend and return it.

    ``name`` is one of ``nnx.backends.KNOWN_BACKENDS`` (``"numpy"``,
    ``"array_api_strict"``, ``"torch"``, ``"cupy"``, ``"jax"``) or ``"auto"`` (CuPy when a
    CUDA device answers, else NumPy; it logs which).
    Raises :class:`BackendUnavailableError` with the reason and the fix when the
    backend cannot run here; only ``"auto"`` falls back.
    """
    global _default
    try:
        backend = _create(name, device)
    except (BackendUnavailableError, ValueError) as exc:
        raise exc.with_traceback(None) from None  # the reason, not our internal frames
    backend.make_current()
    with _default_lock:
        _default = backend
    return backend


def get_backend() -> Backend:
    """The backend in force here: the innermost ``use_backend``, else the default."""
    global _default
    scoped = _scoped.get()
    if scoped is not None:
        return scoped
    if _default is None:
        with _default_lock:
            if _default is None:
                name, device = _default_spec
                try:
                    _default = _create(name, device)
                except (BackendUnavailableError, ValueError) as exc:
                    raise BackendUnavailableError(f"NNX_BACKEND={name!r}: {exc}") from None
                _default.make_current()
    return _default


@contextlib.contextmanager
def use_backend(name: str | Backend, device: Any = None) -> Iterator[Backend]:
    """Use a backend inside a ``with`` block, for this thread/context only."""
    try:
        backend = name if isinstance(name, Backend) else _create(name, device)
    except (BackendUnavailableError, ValueError) as exc:
        raise exc.with_traceback(None) from None
    token = _scoped.set(backend)
    try:
        with backend.activate():
            yield backend
    finally:
        _scoped.reset(token)


_NO_SCOPE = contextlib.nullcontext()  # reusable and reentrant
_SCOPED_CLASS: dict[type, type[Backend] | None] = {}  # array type -> its adapter class


def device_scope(x: Any) -> contextlib.AbstractContextManager[Any]:
    """A context manager that makes array ``x``'s device the thread's current device
    (:meth:`Backend.activate`) for libraries that allocate and launch on the current device
    (CuPy: ``Backend.uses_current_device``); a shared no-op for the others and for
    non-arrays. Cheap: the adapter class is looked up once per array type."""
    kind = type(x)
    try:
        cls = _SCOPED_CLASS[kind]
    except KeyError:
        try:
            cls = type(_backends.backend_for(x))
        except (TypeError, BackendUnavailableError, ValueError):
            cls = None  # not an array of a known library: nothing to make current
        _SCOPED_CLASS[kind] = cls
    if cls is None or not cls.uses_current_device:
        return _NO_SCOPE
    return _backends.backend_for(x).activate()


def available_backends() -> list[str]:
    """Names of the backends usable on this machine, without changing any state."""
    return _backends.available_backends()


def resolve_backend(backend: str | Backend | None, device: Any = None) -> Backend:
    """A Backend from a name, a Backend, or None (the active one)."""
    if backend is None:
        return get_backend()
    if isinstance(backend, Backend):
        return backend
    return _create(backend, device)


def to_numpy(x: Any) -> Any:
    """A host NumPy array with the values of ``x`` (an array of any backend, or a
    Parameter or Buffer: its ``.data``).

    Like ``np.asarray``, it may share memory with ``x`` when ``x`` already lives in host
    memory (a NumPy array, a CPU torch tensor); copy it before writing into it."""
    from .module import Buffer, Parameter

    if isinstance(x, (Parameter, Buffer)):
        x = x.data
    return _backends.to_numpy(x)


def asarray(x: Any, backend: str | Backend | None = None, dtype: str | None = None) -> Any:
    """``x`` (NumPy data or an array of any backend) as an array of ``backend``
    (default: the active one) on that backend's device.

    Like ``np.asarray``, an array already on that backend and device is returned as it
    is, and host arrays may be shared rather than copied."""
    return _backends.asarray(x, resolve_backend(backend), dtype=dtype)


def synchronize(backend: str | Backend | None = None) -> None:
    """Block until the active (or given) backend's device has finished its work."""
    resolve_backend(backend).synchronize()


def manual_seed(seed: int) -> None:
    """Seed nnx's random numbers: the host generator behind initial weights and shuffles,
    and the device generator behind dropout masks (:mod:`nnx.philox`)."""
    from . import philox

    _backends.manual_seed(seed)
    philox.seed(int(seed))
