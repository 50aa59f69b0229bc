"""Element-wise and reshaping layers."""

from __future__ import annotations

from typing import Any

from .._array import array_namespace, shape_str
from ..module import Module
from ._common import check_batch, check_grad_shape, check_input, missing_cache


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
