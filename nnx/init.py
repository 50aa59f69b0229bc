"""Weight initialisers, drawn on the host from the seeded generator (``nnx.manual_seed``).

Values are drawn in float64 with NumPy's PCG64, cast to the requested dtype
and then moved to the backend, so a seed gives bit-identical initial arrays
on every backend and device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from . import backends as _backends
from .backends import Backend

INITS = ("kaiming_uniform", "kaiming_normal", "xavier_uniform")


def _to_backend(values: Any, dtype: str, backend: Backend) -> Any:
    return backend.from_numpy(values.astype(dtype))


def uniform(shape: Sequence[int], bound: float, dtype: str, backend: Backend) -> Any:
    """U(−bound, bound) of the given shape."""
    values = _backends.host_generator().uniform(-bound, bound, size=tuple(shape))
    return _to_backend(values, dtype, backend)


def weight(shape: Sequence[int], fan_in: int, fan_out: int, init: str, dtype: str,
           backend: Backend) -> Any:
    """A weight array by name of initialiser.

    - ``kaiming_uniform`` (PyTorch's Linear/Conv2d default, a=√5): U(±1/√fan_in)
    - ``kaiming_normal`` (He, for ReLU): N(0, 2/fan_in)
    - ``xavier_uniform`` (Glorot): U(±√(6/(fan_in+fan_out)))
    """
    if init == "kaiming_uniform":
        return uniform(shape, 1.0 / math.sqrt(fan_in), dtype, backend)
    if init == "kaiming_normal":
        values = _backends.host_generator().normal(0.0, math.sqrt(2.0 / fan_in), size=tuple(shape))
        return _to_backend(values, dtype, backend)
    if init == "xavier_uniform":
        return uniform(shape, math.sqrt(6.0 / (fan_in + fan_out)), dtype, backend)
    raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")


def bias(size: int, fan_in: int, dtype: str, backend: Backend) -> Any:
    """U(±1/√fan_in), PyTorch's bias default."""
    return uniform((size,), 1.0 / math.sqrt(fan_in), dtype, backend)
