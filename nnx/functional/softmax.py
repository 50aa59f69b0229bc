"""Numerically stable softmax and log-softmax along the last axis."""

from __future__ import annotations

from typing import Any


def log_softmax(xp: Any, z: Any) -> Any:
    """log softmax(z) = (z − max z) − log Σ exp(z − max z); finite for logits of ±1e4."""
    shifted = z - xp.max(z, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def softmax(xp: Any, z: Any) -> Any:
    """softmax(z)_i = exp(z_i − max z) / Σ_j exp(z_j − max z)."""
    e = xp.exp(z - xp.max(z, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)
