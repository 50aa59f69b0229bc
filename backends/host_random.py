"""Seeded random numbers drawn on the host.

Initial weights and shuffles come from one NumPy Generator (PCG64) and are
then moved to the backend, so the same seed gives bit-identical initial
models on every backend and device.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_generator = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Reset the host generator behind weight initialisation and shuffling."""
    global _generator
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"manual_seed: seed must be a non-negative integer, got {seed!r}")
    _generator = np.random.default_rng(int(seed))


def host_generator() -> np.random.Generator:
    """The current host generator (shared by all nnx initialisers)."""
    return _generator


def get_rng_state() -> dict[str, Any]:
    """The generator's state as plain JSON-able data (for checkpoints)."""
    state = _generator.bit_generator.state
    return {
        "bit_generator": state["bit_generator"],
        "state": {k: int(v) for k, v in state["state"].items()},
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore a state taken with :func:`get_rng_state`."""
    if state.get("bit_generator") != "PCG64":
        raise ValueError(f"set_rng_state: expected a PCG64 state, got {state.get('bit_generator')!r}")
    _generator.bit_generator.state = state
