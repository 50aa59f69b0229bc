"""Max pooling."""

from __future__ import annotations

from typing import Any

from .._array import shape_str
from ..functional import max_pool2d_backward, max_pool2d_forward
from ..module import Module
from ._common import check_grad_shape, check_input, missing_cache, pair


class MaxPool2d(Module):
    """Y[b,c,i,j] = max_{u<kH, v<kW} Xpad[b,c,i·sh+u, j·sw+v], padding acting as −∞.

    Shapes: X (B, C, H, W) -> Y (B, C, Ho, Wo), Ho = ⌊(H + 2·ph − kH)/sh⌋ + 1.
    ``stride`` defaults to ``kernel_size``; ``padding`` may be at most half the
    kernel. The gradient of a window goes to its first maximum in row-major
    window order, as in PyTorch.
    """

    def __init__(self, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0) -> None:
        name = "MaxPool2d"
        self.kernel_size = pair("kernel_size", name, kernel_size, 1)
        self.stride = self.kernel_size if stride is None else pair("stride", name, stride, 1)
        self.padding = pair("padding", name, padding, 0)
        for p, k in zip(self.padding, self.kernel_size):
            if 2 * p > k:
                raise ValueError(f"MaxPool2d: padding {padding!r} must be at most half of "
                                 f"kernel_size {kernel_size!r}")
        self._cache: Any = None
        self._cache_out_shape: Any = None

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(self, x: Any) -> Any:
        xp = check_input(self, x, None, 4, "(batch, channels, H, W)")
        h, w = x.shape[2] + 2 * self.padding[0], x.shape[3] + 2 * self.padding[1]
        if h < self.kernel_size[0] or w < self.kernel_size[1]:
            raise ValueError(f"{self!r}: input of shape {shape_str(x.shape)} is smaller than "
                             f"the kernel {self.kernel_size[0]}x{self.kernel_size[1]}")
        out, cache = max_pool2d_forward(xp, x, self.kernel_size, self.stride, self.padding)
        self._cache = cache if self.training else None
        self._cache_out_shape = tuple(out.shape) if self.training else None
        return out

    def backward(self, grad_out: Any) -> Any:
        if self._cache is None:
            raise missing_cache(self)
        xp = check_input(self, grad_out, None, 4, "(batch, channels, Ho, Wo)")
        check_grad_shape(self, grad_out, self._cache_out_shape)
        return max_pool2d_backward(xp, grad_out, self._cache, self.kernel_size, self.stride,
                                   self.padding)
