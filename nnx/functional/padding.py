"""Zero padding of the two last axes, in PyTorch's (left, right, top, bottom) order."""

from __future__ import annotations

from typing import Any

from .._array import device
from .._inplace import set_at


def zero_pad2d_forward(xp: Any, x: Any, pad: tuple[int, int, int, int]) -> Any:
    """(B, C, H, W) -> (B, C, H+top+bottom, W+left+right), zeros around ``x``."""
    left, right, top, bottom = pad
    *lead, h, w = x.shape
    out = xp.zeros((*lead, h + top + bottom, w + left + right), dtype=x.dtype, device=device(x))
    return set_at(out, (..., slice(top, top + h), slice(left, left + w)), x)


def zero_pad2d_backward(xp: Any, grad: Any, pad: tuple[int, int, int, int]) -> Any:
    """The gradient of the un-padded centre (a slice)."""
    left, right, top, bottom = pad
    h = grad.shape[-2] - top - bottom
    w = grad.shape[-1] - left - right
    return grad[..., top:top + h, left:left + w]
