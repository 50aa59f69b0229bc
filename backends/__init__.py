"""Adapters from nnx to each array library (installed as ``nnx.backends``).

Everything the Python Array API standard lacks lives here: choosing and
probing a library, moving arrays between libraries and devices, device
synchronisation, and host-side seeded random numbers.  The math in ``nnx``
only ever sees the array-api-compat namespace of its inputs.
"""

from __future__ import annotations

from .base import Backend, BackendUnavailableError, dtype_name
from .host_random import get_rng_state, host_generator, manual_seed, set_rng_state
from .registry import (
    KNOWN_BACKENDS,
    array_library,
    asarray,
    available_backends,
    backend_for,
    create_backend,
    device_count,
    probe,
    to_numpy,
)

__all__ = [
    "Backend",
    "BackendUnavailableError",
    "KNOWN_BACKENDS",
    "array_library",
    "asarray",
    "available_backends",
    "backend_for",
    "create_backend",
    "device_count",
    "dtype_name",
    "get_rng_state",
    "host_generator",
    "manual_seed",
    "probe",
    "set_rng_state",
    "to_numpy",
]
