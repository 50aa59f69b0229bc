"""Validation of the adaptive optimizers' hyperparameters (one-line ValueErrors naming the
owner and the argument, as the check_* helpers of optimizer.py)."""

from __future__ import annotations

from typing import Any

from .optimizer import check_momentum, check_real


def _where(owner: str) -> str:
    return f"{owner}: " if owner else ""


def check_nonnegative(name: str, value: Any, owner: str = "") -> float:
    """``value`` as a finite float >= 0 (eps, ...)."""
    out = check_real(name, value, owner)
    if out < 0.0:
        raise ValueError(f"{_where(owner)}{name} must be >= 0, got {value!r}")
    return out


def check_flag(name: str, value: Any, owner: str = "") -> bool:
    """``value`` as a bool: True or False only (not 0/1, not a string)."""
    if not isinstance(value, bool):
        raise ValueError(f"{_where(owner)}{name} must be True or False, got {value!r}")
    return value


def check_betas(betas: Any, owner: str = "") -> tuple[float, float]:
    """``betas`` as a pair of floats, each in [0, 1) (a tuple or list of two real numbers)."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"{_where(owner)}betas must be a pair (beta1, beta2), got {betas!r}")
    return (check_momentum("betas[0]", betas[0], owner), check_momentum("betas[1]", betas[1], owner))
