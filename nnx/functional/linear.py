"""Affine map Y = XW + b (W stored as (in_dim, out_dim), as in the course report)."""

from __future__ import annotations

from typing import Any


def linear_forward(xp: Any, x: Any, weight: Any, bias: Any | None) -> Any:
    """Y = X W + b for X (B, in), W (in, out), b (out,) -> Y (B, out)."""
    out = x @ weight
    if bias is not None:
        out += bias
    return out


def linear_backward(xp: Any, grad: Any, x: Any, weight: Any, need_bias: bool = True,
                    need_input_grad: bool = True) -> tuple[Any | None, Any, Any | None]:
    """(dX, dW, db) = (G Wᵀ, Xᵀ G, Σ_batch G); dX is None unless ``need_input_grad``."""
    dx = grad @ weight.T if need_input_grad else None
    dw = x.T @ grad
    db = xp.sum(grad, axis=0) if need_bias else None
    return dx, dw, db
