"""2-D convolution layer (cross-correlation, as PyTorch's Conv2d)."""

from __future__ import annotations

from typing import Any

from .. import init as _init
from .._array import shape_str
from ..backends import Backend
from ..functional import conv2d_backward, conv2d_forward, conv_output_size
from ..module import Module, Parameter, backend_of
from ._common import (
    backend_arg,
    check_dtype_arg,
    check_grad_shape,
    check_input,
    missing_cache,
    pair,
    positive_int,
)


def launch_bound(x: Any) -> bool:
    """Whether ``x`` lives on an accelerator backend (CuPy, PyTorch on CUDA), where every
    array operation is a kernel launch: the convolution and pooling kernels then take
    their variants with the fewest operations (``few_ops``); on host backends (NumPy,
    array-api-strict, PyTorch on the CPU) the ones with the fewest passes over memory.
    Both give the same numbers."""
    key = (type(x), getattr(x, "device", None))
    try:
        return _LAUNCH_BOUND[key]
    except (KeyError, TypeError):  # not seen yet, or a device that cannot be a key
        pass
    try:
        found = not backend_of(x).is_host
    except TypeError:  # an array type nnx has no backend for: treated as host memory
        found = False
    try:
        _LAUNCH_BOUND[key] = found
    except TypeError:
        pass
    return found


#: launch_bound by (array type, device): it runs at every convolution and pooling call
_LAUNCH_BOUND: dict[tuple[type, Any], bool] = {}


class Conv2d(Module):
    """Y[b,o,i,j] = Σ_{c,u,v} Xpad[b,c,i·sh+u, j·sw+v] · W[o,c,u,v] + bias[o].

    Shapes: X (B, in_channels, H, W) -> Y (B, out_channels, Ho, Wo) with
    Ho = ⌊(H + 2·ph − kH)/sh⌋ + 1 (likewise Wo); ``weight`` (out, in, kH, kW),
    ``bias`` (out,). ``kernel_size``, ``stride`` and ``padding`` (zeros) take an int
    or a pair. ``weight_decay`` is stored on the weight only. Initialisation:
    PyTorch's default, U(±1/√(in·kH·kW)) for weight and bias.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 weight_decay: float | None = None, *, bias: bool = True,
                 init: str = "kaiming_uniform", dtype: str = "float32",
                 backend: str | Backend | None = None) -> None:
        name = "Conv2d"
        self.in_channels = positive_int("in_channels", name, in_channels)
        self.out_channels = positive_int("out_channels", name, out_channels)
        self.kernel_size = pair("kernel_size", name, kernel_size, 1)
        self.stride = pair("stride", name, stride, 1)
        self.padding = pair("padding", name, padding, 0)
        check_dtype_arg(name, dtype)
        be = backend_arg(backend)
        kh, kw = self.kernel_size
        fan_in = in_channels * kh * kw
        self.weight = Parameter(
            _init.weight((out_channels, in_channels, kh, kw), fan_in, out_channels * kh * kw,
                         init, dtype, be),
            weight_decay,
        )
        self.bias = Parameter(_init.bias(out_channels, fan_in, dtype, be)) if bias else None
        self._cache: Any = None
        self._cache_out_shape: Any = None

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")

    def output_shape(self, h: int, w: int) -> tuple[int, int]:
        return (conv_output_size(h, self.kernel_size[0], self.stride[0], self.padding[0]),
                conv_output_size(w, self.kernel_size[1], self.stride[1], self.padding[1]))

    def forward(self, x: Any) -> Any:
        w = self.weight.data
        expected = f"(batch, {self.in_channels}, H, W)"
        xp = check_input(self, x, w, 4, expected)
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self!r}: expected input of shape {expected}, "
                             f"got shape {shape_str(x.shape)}")
        h, wd = x.shape[2] + 2 * self.padding[0], x.shape[3] + 2 * self.padding[1]
        if h < self.kernel_size[0] or wd < self.kernel_size[1]:
            raise ValueError(f"{self!r}: input of shape {shape_str(x.shape)} is {h}x{wd} after "
                             f"padding, smaller than the kernel {self.kernel_size[0]}x"
                             f"{self.kernel_size[1]}")
        out, cache = conv2d_forward(xp, x, w, None if self.bias is None else self.bias.data,
                                    self.stride, self.padding, few_ops=launch_bound(x))
        self._cache = cache if self.training else None
        self._cache_out_shape = tuple(out.shape) if self.training else None
        return out

    def backward(self, grad_out: Any) -> Any:
        return self._backward(grad_out, True)

    def backward_params_only(self, grad_out: Any) -> None:
        self._backward(grad_out, False)

    def _backward(self, grad_out: Any, need_input_grad: bool) -> Any:
        if self._cache is None:
            raise missing_cache(self)
        xp = check_input(self, grad_out, self.weight.data, 4, "(batch, out_channels, Ho, Wo)")
        check_grad_shape(self, grad_out, self._cache_out_shape)
        dx, dw, db = conv2d_backward(xp, grad_out, self._cache, self.weight.data, self.stride,
                                     self.padding, need_bias=self.bias is not None,
                                     need_input_grad=need_input_grad)
        self.weight.grad = dw
        if self.bias is not None:
            self.bias.grad = db
        return dx
