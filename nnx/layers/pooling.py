"""Max and average pooling."""

from __future__ import annotations

from typing import Any

from .._array import shape_str
from ..functional import (
    avg_pool2d_backward,
    avg_pool2d_forward,
    max_pool2d_backward,
    max_pool2d_forward,
)
from ..module import Module
from . import conv as _conv
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
        out, cache = max_pool2d_forward(xp, x, self.kernel_size, self.stride, self.padding,
                                        few_ops=_conv.launch_bound(x))
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


class AvgPool2d(Module):
    """Y[b,c,i,j] = (1/(kH·kW)) Σ_{u<kH, v<kW} Xpad[b,c,i·sh+u, j·sw+v], zero padding.

    PyTorch's ``AvgPool2d`` with ``count_include_pad=True`` and ``ceil_mode=False``: the
    zeros of the padding count in the divisor, which is always kH·kW.
    Shapes: X (B, C, H, W) -> Y (B, C, Ho, Wo), Ho = ⌊(H + 2·ph − kH)/sh⌋ + 1 (likewise
    Wo). ``kernel_size``, ``stride`` and ``padding`` take an int or a pair; ``stride``
    defaults to ``kernel_size``; ``padding`` may be at most half the kernel.
    Backward: dX[b,c,r,s] = Σ over the windows (i, j) holding (r, s) of G[b,c,i,j]/(kH·kW).
    A kernel that covers the whole unpadded image is computed as a mean over H and W.
    """

    def __init__(self, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] | None = None,
                 padding: int | tuple[int, int] = 0) -> None:
        name = "AvgPool2d"
        self.kernel_size = pair("kernel_size", name, kernel_size, 1)
        self.stride = self.kernel_size if stride is None else pair("stride", name, stride, 1)
        self.padding = pair("padding", name, padding, 0)
        for p, k in zip(self.padding, self.kernel_size):
            if 2 * p > k:
                raise ValueError(f"AvgPool2d: padding {padding!r} must be at most half of "
                                 f"kernel_size {kernel_size!r}")
        self._cache: Any = None
        self._cache_out_shape: Any = None

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(self, x: Any) -> Any:
        xp = check_input(self, x, None, 4, "(batch, channels, H, W)")
        h, w = x.shape[2] + 2 * self.padding[0], x.shape[3] + 2 * self.padding[1]
        if h < self.kernel_size[0] or w < self.kernel_size[1]:
            raise ValueError(f"{self!r}: input of shape {shape_str(x.shape)} is {h}x{w} after "
                             f"padding, smaller than the kernel {self.kernel_size[0]}x"
                             f"{self.kernel_size[1]}")
        out, cache = avg_pool2d_forward(xp, x, self.kernel_size, self.stride, self.padding)
        self._cache = cache if self.training else None
        self._cache_out_shape = tuple(out.shape) if self.training else None
        return out

    def backward(self, grad_out: Any) -> Any:
        if self._cache is None:
            raise missing_cache(self)
        xp = check_input(self, grad_out, None, 4, "(batch, channels, Ho, Wo)")
        check_grad_shape(self, grad_out, self._cache_out_shape)
        return avg_pool2d_backward(xp, grad_out, self._cache, self.kernel_size, self.stride,
                                   self.padding)


def _output_size(value: Any) -> tuple[int | None, int | None]:
    """AdaptiveAvgPool2d's ``output_size``: an int, or a pair of ints or None (None keeps
    that input size, as in PyTorch)."""
    items = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    ok = len(items) == 2 and all(
        v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1) for v in items)
    if not ok or value is None:
        raise ValueError("AdaptiveAvgPool2d: output_size must be a positive int or a pair of "
                         f"positive ints (or None, keeping that input size), got {value!r}")
    return (items[0], items[1])


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size: X (B, C, H, W) -> Y (B, C, oh, ow).

    Supported when oh divides H and ow divides W; then it is AvgPool2d with
    kernel = stride = (H/oh, W/ow): Y[b,c,i,j] = (1/(kH·kW)) Σ_{u<kH, v<kW}
    X[b,c,i·kH+u, j·kW+v], which equals PyTorch's AdaptiveAvgPool2d. ``output_size``
    is an int or a pair (an entry None keeps that input size, as in PyTorch);
    ``output_size=1`` is global average pooling, Y[b,c,0,0] = mean_{h,w} X[b,c,h,w],
    computed as one mean over H and W. Other sizes raise a ValueError.
    """

    def __init__(self, output_size: int | tuple[int | None, int | None]) -> None:
        self.output_size = _output_size(output_size)
        self._cache: Any = None
        self._cache_out_shape: Any = None

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

    def _kernel(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """The kernel (= stride) that pools an input of ``shape`` to the output size."""
        h, w = int(shape[2]), int(shape[3])
        oh = h if self.output_size[0] is None else self.output_size[0]
        ow = w if self.output_size[1] is None else self.output_size[1]
        if h % oh or w % ow:
            raise ValueError(f"{self!r}: input of shape {shape_str(shape)} has size {h}x{w}, "
                             f"which is not a multiple of the output size {oh}x{ow}; only "
                             "output sizes that divide the input size are supported")
        return (h // oh, w // ow)

    def forward(self, x: Any) -> Any:
        xp = check_input(self, x, None, 4, "(batch, channels, H, W)")
        kernel = self._kernel(tuple(x.shape))
        out, cache = avg_pool2d_forward(xp, x, kernel, kernel, (0, 0))
        self._cache = (cache, kernel) if self.training else None
        self._cache_out_shape = tuple(out.shape) if self.training else None
        return out

    def backward(self, grad_out: Any) -> Any:
        if self._cache is None:
            raise missing_cache(self)
        xp = check_input(self, grad_out, None, 4, "(batch, channels, oh, ow)")
        check_grad_shape(self, grad_out, self._cache_out_shape)
        cache, kernel = self._cache
        return avg_pool2d_backward(xp, grad_out, cache, kernel, kernel, (0, 0))
