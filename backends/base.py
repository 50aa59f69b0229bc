"""The Backend interface every adapter implements."""

from __future__ import annotations

import contextlib
from typing import Any

import array_api_compat
import numpy as np


class BackendUnavailableError(RuntimeError):
    """A backend was asked for that cannot run here; the message says why and how to fix it."""

    __module__ = "nnx"


def dtype_name(dtype: Any) -> str:
    """Library-independent name of a dtype: ``"float32"`` for np.float32, torch.float32, ..."""
    return str(dtype).rsplit(".", 1)[-1]


class Backend:
    """One array library on one device.

    Attributes
    ----------
    name : str
        The adapter's name (``"numpy"``, ``"torch"``, ``"jax"``, ...; see
        ``nnx.backends.KNOWN_BACKENDS``).
    xp : module
        The array-api-compat namespace of the library (what math code uses).
    device : object
        The library's device object new arrays are created on.
    note : str
        How this backend was chosen (filled in by ``"auto"``).
    """

    name: str = "?"
    #: Arrays live in host memory (NumPy, array-api-strict, torch on the CPU). Loaders
    #: convert batches on the host for these and on the device for the others, so only
    #: the compact uint8 pixels cross the bus.
    is_host: bool = True
    #: The library allocates and launches on the calling thread's *current* device (CuPy),
    #: so nnx runs every operation on a model inside :meth:`activate`. False where arrays
    #: follow their inputs and ``device=`` is honoured (NumPy, PyTorch, array-api-strict).
    uses_current_device: bool = False
    #: Arrays can be written in place: ``x[key] = v`` works and ``x += v`` keeps the
    #: object. False for JAX, whose arrays are immutable; :meth:`set_at` and
    #: :meth:`add_at` then return new arrays, and nnx rebinds what it updates
    #: (:mod:`nnx._inplace`).
    mutable_arrays: bool = True
    #: The library runs element-wise work on one core, so nnx splits a convolutional
    #: batch across threads itself (:mod:`nnx.parallel`): NumPy. Libraries that thread
    #: their own operations leave this False.
    threads_split_batches: bool = False

    def __init__(self, xp: Any, device: Any) -> None:
        self.xp = xp
        self.device = device
        self.note = ""

    # -- identity ---------------------------------------------------------
    def owns(self, x: Any) -> bool:
        """True when ``x`` is an array of this backend's library (any device)."""
        raise NotImplementedError

    def device_of(self, x: Any) -> Any:
        return array_api_compat.device(x)

    def same_place(self, x: Any) -> bool:
        """True when ``x`` belongs to this library and lives on this backend's device."""
        return self.owns(x) and str(self.device_of(x)) == str(self.device)

    # -- updates ----------------------------------------------------------
    @staticmethod
    def set_at(x: Any, key: Any, value: Any) -> Any:
        """``x[key] = value``, returning the updated array (``x`` itself here)."""
        x[key] = value
        return x

    @staticmethod
    def add_at(x: Any, key: Any, value: Any) -> Any:
        """``x[key] += value``, returning the updated array (``x`` itself here)."""
        x[key] += value
        return x

    # -- transfer ---------------------------------------------------------
    def from_numpy(self, a: np.ndarray) -> Any:
        """Copy (or wrap) a host NumPy array onto this backend's device."""
        raise NotImplementedError

    def to_numpy(self, x: Any) -> np.ndarray:
        """A host NumPy array with the values of ``x`` (an array of this library)."""
        raise NotImplementedError

    def asarray(self, x: Any, dtype: str | None = None) -> Any:
        """``x`` (an array of any supported library, or a Python/NumPy value) on this backend.

        Arrays already on this backend's library and device are returned as they are
        (cast when ``dtype`` differs); anything else goes through host memory.
        """
        if self.same_place(x):
            out = x
        else:
            from .registry import to_numpy

            out = self.from_numpy(np.asarray(to_numpy(x)))
        if dtype is not None and dtype_name(out.dtype) != dtype:
            out = self.xp.astype(out, self.dtype(dtype))
        return out

    def dtype(self, name: str) -> Any:
        """The library's dtype object for a name such as ``"float32"``."""
        return getattr(self.xp, name)

    def activate(self) -> Any:
        """A context manager that makes this backend's device the thread's current one for
        a block (``use_backend``, and every forward, backward, step, evaluation and batch
        conversion on a model of this backend); a no-op for libraries without a current
        device."""
        return contextlib.nullcontext()

    def device_uid(self) -> str:
        """What identifies this backend's device across processes on one machine (a GPU's
        PCI bus id; the device's name for host libraries): two ranks with the same uid on
        one host share the device."""
        return str(self.device)

    def make_current(self) -> None:
        """Make this backend's device the thread's current one (``set_backend``)."""

    def synchronize(self) -> None:
        """Wait until all queued work on the device has finished (for timing)."""

    def versions(self) -> dict[str, str]:
        return {}

    def __repr__(self) -> str:
        return f"Backend(name={self.name!r}, device={str(self.device)!r})"
