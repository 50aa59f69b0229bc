"""JAX, eagerly, on any device ``jax.devices()`` lists (CPU, GPU or TPU).

JAX arrays are immutable: ``x[i] = v`` raises and ``x += v`` rebinds the name to a new
array. This adapter declares ``mutable_arrays = False``; nnx's in-place helpers
(:mod:`nnx._inplace`) then return new arrays (``x.at[key].set(v)``) and optimizers and
layers rebind what they update.

Creating the backend turns on ``jax_enable_x64`` for the process: nnx computes in the
dtype it is asked for, float64 included, and JAX silently makes float64 arrays float32
without it. Arrays created with an explicit dtype are unaffected.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

import numpy as np

from .base import Backend, BackendUnavailableError

NAME = "jax"
INSTALL_HINT = "pip install 'nnx-array[jax]' (or pip install jax)"


def _import() -> tuple[Any, str | None]:
    """(the jax module, None) when JAX imports, else (None, the reason)."""
    if "jax" not in sys.modules and importlib.util.find_spec("jax") is None:
        return None, f"JAX is not installed; {INSTALL_HINT}"
    try:
        import jax
        import jax.numpy  # noqa: F401  (the Array API namespace the math will use)
    except Exception as exc:  # noqa: BLE001 - a broken install must not crash the probe
        return None, f"importing jax failed: {type(exc).__name__}: {exc}"
    return jax, None


def _device(jax: Any, device: Any) -> Any:
    """The ``jax.Device`` that ``device`` names: None (JAX's default), a Device, an index
    into ``jax.devices()``, or ``"cpu"``, ``"gpu"``, ``"cuda:1"``, ``"tpu:0"``, ``"cpu:0"``."""
    if device is None:
        return jax.devices()[0]
    if isinstance(device, int) and not isinstance(device, bool):
        devices, index = jax.devices(), device
    elif hasattr(device, "platform") and hasattr(device, "id"):
        return device
    else:
        text = str(device).strip().lower()
        platform, _, tail = text.partition(":")
        if platform.isdigit() and not tail:
            devices, index = jax.devices(), int(platform)
        else:
            platform = {"cuda": "gpu", "rocm": "gpu"}.get(platform, platform)
            if not tail.isdigit() and tail:
                raise BackendUnavailableError(
                    f"jax backend: device {device!r} is not understood; use 'cpu', 'gpu', "
                    "'gpu:1', 'tpu:0' or an index into jax.devices()")
            try:
                devices = jax.devices(platform)
            except RuntimeError as exc:
                raise BackendUnavailableError(
                    f"jax backend: no {platform!r} device here ({exc}); "
                    f"JAX has {', '.join(str(d) for d in jax.devices())}") from None
            index = int(tail) if tail else 0
    if not 0 <= index < len(devices):
        raise BackendUnavailableError(
            f"jax backend: device {device!r} does not exist; JAX has "
            f"{', '.join(str(d) for d in devices)}")
    return devices[index]


def probe(device: Any = None) -> str | None:
    """None when JAX imports (and has ``device`` when given), else the reason it cannot."""
    jax, reason = _import()
    if reason is not None:
        return reason
    if device is not None:
        try:
            _device(jax, device)
        except BackendUnavailableError as exc:
            return str(exc)
    return None


def device_count() -> int:
    """How many accelerators (GPUs, TPUs) JAX sees; 0 without JAX or without any."""
    jax, reason = _import()
    if reason is not None:
        return 0
    try:
        return sum(1 for d in jax.devices() if d.platform != "cpu")
    except Exception:  # noqa: BLE001 - a broken plugin counts as no device
        return 0


def owns(x: Any) -> bool:
    """True for a JAX array (cheap when JAX was never imported)."""
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, jax.Array)


def to_numpy(x: Any) -> np.ndarray:
    """The values of JAX array ``x`` in host memory (waits for them; read-only)."""
    return np.asarray(x)


class JaxBackend(Backend):
    """JAX arrays, computed eagerly, on one device of ``jax.devices()``."""

    name = NAME
    mutable_arrays = False

    def __init__(self, device: Any = None) -> None:
        jax, reason = _import()
        if reason is not None:
            raise BackendUnavailableError(f"Backend 'jax' is unavailable: {reason}.")
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)
        self._jax = jax
        dev = _device(jax, device)
        super().__init__(jnp, dev)
        self.is_host = dev.platform == "cpu"

    @staticmethod
    def set_at(x: Any, key: Any, value: Any) -> Any:
        """A new array: ``x`` with ``x[key]`` replaced by ``value``."""
        return x.at[key].set(value)

    @staticmethod
    def add_at(x: Any, key: Any, value: Any) -> Any:
        """A new array: ``x`` with ``value`` added to ``x[key]``."""
        return x.at[key].add(value)

    def owns(self, x: Any) -> bool:
        return owns(x)

    def device_of(self, x: Any) -> Any:
        return x.device

    def same_place(self, x: Any) -> bool:
        return owns(x) and x.device == self.device

    def from_numpy(self, a: np.ndarray) -> Any:
        return self._jax.device_put(np.asarray(a), self.device)

    def to_numpy(self, x: Any) -> np.ndarray:
        return to_numpy(x)

    def synchronize(self) -> None:
        """Wait for JAX's pending effects (``jax.effects_barrier``). JAX has no device-wide
        barrier for plain computations; reading a result (``to_numpy``) waits for it, which
        is how nnx's training loop and benchmarks see finished work."""
        self._jax.effects_barrier()

    def versions(self) -> dict[str, str]:
        out = {"jax": self._jax.__version__, "device": str(self.device)}
        kind = getattr(self.device, "device_kind", None)
        if kind and self.device.platform != "cpu":
            out["gpu" if self.device.platform == "gpu" else self.device.platform] = str(kind)
        return out


def create(device: Any = None) -> JaxBackend:
    return JaxBackend(device)
