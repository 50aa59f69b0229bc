"""Inverted dropout with masks drawn on the device (nnx.philox)."""

from __future__ import annotations

import math
from typing import Any

from .._array import namespace_of
from ..module import Module
from ..philox import default_generator
from ._common import check_grad_shape, check_input, missing_cache


class Dropout(Module):
    """Training: y = x · m / (1 − p), m_i ~ Bernoulli(1 − p) independently per element;
    eval: y = x. Backward: dx = g · m / (1 − p). Any input shape.

    The masks come from the device generator of :mod:`nnx.philox`, on the input's
    device: the same ``nnx.manual_seed`` gives the same masks, bit for bit, on every
    backend. ``p`` in [0, 1) (p is rounded to a multiple of 2⁻³²).
    """

    splittable = False  # draws random numbers: a batch split across threads would reorder them

    def __init__(self, p: float = 0.5) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) \
                or not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be a probability in [0, 1), got {p!r}")
        self.p = float(p)
        self._cache_mask: Any = None

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def forward(self, x: Any) -> Any:
        check_input(self, x, None, tuple(range(1, 9)), "(batch, ...)")
        if not self.training:
            return x
        xp = namespace_of(x)
        if self.p == 0.0:
            self._cache_mask = xp.ones_like(x)
            return x
        mask = xp.astype(default_generator().keep_mask(x, self.p), x.dtype) * (1.0 / (1.0 - self.p))
        self._cache_mask = mask
        return x * mask

    def backward(self, grad_out: Any) -> Any:
        if self._cache_mask is None:
            raise missing_cache(self)
        check_grad_shape(self, grad_out, self._cache_mask.shape)
        return grad_out * self._cache_mask


__all__ = ["Dropout"]
