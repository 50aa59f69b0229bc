"""Element-wise and reshaping layers."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

from .._array import array_namespace, shape_str
from ..functional.activation import gelu_forward, leaky_relu_forward, sigmoid_forward, tanh_forward
from ..module import Module
from ._common import check_batch, check_grad_shape, check_input, missing_cache

_ANY_RANK = tuple(range(0, 9))


def _finite_float(value: Any) -> float | None:
    """``value`` as a finite float when it is a real number (not a bool), else None."""
    if not isinstance(value, Real) or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (OverflowError, ValueError):
        return None
    return out if math.isfinite(out) else None


class ReLU(Module):
    """Y = max(X, 0); dX = G · [Y > 0]. Any shape; axis 0, if any, is the batch (not empty)."""

    def __init__(self) -> None:
        self._cache_out: Any = None

    def forward(self, x: Any) -> Any:
        xp = check_input(self, x, None, tuple(range(0, 9)), "(...)")
        out = xp.maximum(x, 0.0)
        self._cache_out = out if self.training else None
        return out

    def backward(self, grad_out: Any) -> Any:
        if self._cache_out is None:
            raise missing_cache(self)
        xp = array_namespace(grad_out)
        check_grad_shape(self, grad_out, self._cache_out.shape)
        return grad_out * xp.astype(self._cache_out > 0, grad_out.dtype)


class LeakyReLU(Module):
    """Y = X where X > 0, else negative_slope·X; dX = G where X > 0, else negative_slope·G
    (PyTorch's LeakyReLU: slope 0.01 by default; at X = 0 the gradient is negative_slope·G).
    Any shape; axis 0, if any, is the batch (not empty). Y has X's shape, dtype and device."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        slope = _finite_float(negative_slope)
        if slope is None:
            raise ValueError(f"LeakyReLU: negative_slope must be a finite real number, got "
                             f"{negative_slope!r}")
        self.negative_slope = slope
        self._cache_mask: Any = None

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"

    def forward(self, x: Any) -> Any:
        xp = check_input(self, x, None, _ANY_RANK, "(...)")
        out, mask = leaky_relu_forward(xp, x, self.negative_slope, self.training)
        self._cache_mask = mask
        return out

    def backward(self, grad_out: Any) -> Any:
        if self._cache_mask is None:
            raise missing_cache(self)
        xp = array_namespace(grad_out)
        check_grad_shape(self, grad_out, self._cache_mask.shape)
        return xp.where(self._cache_mask, grad_out, grad_out * self.negative_slope)


class _Smooth(Module):
    """An element-wise layer whose forward also gives its local derivative dY/dX (kept, in
    training mode only, in ``_cache_dydx``); backward returns G · dY/dX."""

    def __init__(self) -> None:
        self._cache_dydx: Any = None

    def _forward(self, xp: Any, x: Any, need_grad: bool) -> tuple[Any, Any]:
        raise NotImplementedError

    def forward(self, x: Any) -> Any:
        xp = check_input(self, x, None, _ANY_RANK, "(...)")
        out, dydx = self._forward(xp, x, self.training)
        self._cache_dydx = dydx
        return out

    def backward(self, grad_out: Any) -> Any:
        if self._cache_dydx is None:
            raise missing_cache(self)
        array_namespace(grad_out)  # a TypeError for a non-array, as ReLU's backward
        check_grad_shape(self, grad_out, self._cache_dydx.shape)
        return grad_out * self._cache_dydx


class Sigmoid(_Smooth):
    """Y = σ(X) = 1/(1 + e^−X); dX = G · σ(X)σ(−X).

    Evaluated from e^−|X| (no overflow for any input; σ(±1e4) is exactly 1 and 0, and the
    derivative stays accurate in both tails). Any shape; axis 0, if any, is the batch
    (not empty). Y has X's shape, dtype and device.
    """

    def _forward(self, xp: Any, x: Any, need_grad: bool) -> tuple[Any, Any]:
        return sigmoid_forward(xp, x, need_grad)


class Tanh(_Smooth):
    """Y = tanh(X); dX = G · sech²(X) (= G·(1 − Y²), evaluated as 4e/(1+e)², e = e^−2|X|).

    Any shape; axis 0, if any, is the batch (not empty). Y has X's shape, dtype and device.
    """

    def _forward(self, xp: Any, x: Any, need_grad: bool) -> tuple[Any, Any]:
        return tanh_forward(xp, x, need_grad)


class GELU(_Smooth):
    """Gaussian error linear unit, as PyTorch's ``GELU(approximate=...)``.

    ``approximate="none"`` (default): Y = X·Φ(X) = X/2·(1 + erf(X/√2)),
    dX = G · (Φ(X) + X·φ(X)), φ(x) = e^(−x²/2)/√(2π).
    ``approximate="tanh"``: Y = X/2·(1 + tanh U), U = √(2/π)(X + 0.044715X³),
    dX = G · (½(1 + tanh U) + X/2·sech²(U)·√(2/π)(1 + 3·0.044715X²)).
    Any shape; axis 0, if any, is the batch (not empty). Y has X's shape, dtype and device.
    """

    def __init__(self, approximate: str = "none") -> None:
        if not isinstance(approximate, str) or approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        super().__init__()
        self.approximate = approximate

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"

    def _forward(self, xp: Any, x: Any, need_grad: bool) -> tuple[Any, Any]:
        return gelu_forward(xp, x, self.approximate, need_grad)


class Flatten(Module):
    """(B, d1, d2, ...) -> (B, d1·d2·...); backward reshapes back. B >= 1."""

    def __init__(self) -> None:
        self._cache_shape: Any = None

    def forward(self, x: Any) -> Any:
        try:
            xp = array_namespace(x)
        except TypeError:
            raise TypeError(f"Flatten(): input must be an array, got {type(x).__name__}") from None
        if x.ndim < 1:
            raise ValueError(f"Flatten(): expected input with a batch axis, got shape "
                             f"{shape_str(x.shape)}")
        check_batch(self, x)
        self._cache_shape = tuple(x.shape) if self.training else None
        return xp.reshape(x, (x.shape[0], -1))

    def backward(self, grad_out: Any) -> Any:
        if self._cache_shape is None:
            raise missing_cache(self)
        flat = 1
        for s in self._cache_shape[1:]:
            flat *= int(s)
        check_grad_shape(self, grad_out, (self._cache_shape[0], flat))
        xp = array_namespace(grad_out)
        grad = xp.reshape(grad_out, self._cache_shape)
        if len(self._cache_shape) == 4:
            # Hand an image gradient back batch-innermost, the layout the conv and pooling
            # kernels produce and read fastest (a transposing copy of this small array
            # instead of mixed layouts in every pooling pass); values are unchanged.
            c, h, w, b = (self._cache_shape[1], self._cache_shape[2], self._cache_shape[3],
                          self._cache_shape[0])
            chwb = xp.reshape(xp.permute_dims(grad, (1, 2, 3, 0)), (c * h * w * b,))
            grad = xp.permute_dims(xp.reshape(chwb, (c, h, w, b)), (3, 0, 1, 2))
        return grad
