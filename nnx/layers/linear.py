"""Fully connected layer."""

from __future__ import annotations

from typing import Any

from .. import init as _init
from ..backends import Backend
from ..functional import linear_backward, linear_forward
from ..module import Module, Parameter
from ._common import (
    backend_arg,
    check_dtype_arg,
    check_grad_shape,
    check_input,
    missing_cache,
    positive_int,
)


class Linear(Module):
    """Y = XW + b.

    Shapes: X (B, in_dim) -> Y (B, out_dim); ``weight`` W (in_dim, out_dim),
    ``bias`` b (out_dim,). Backward: dW = XᵀG, db = Σ_batch G, dX = GWᵀ.

    ``weight_decay`` (λ) is stored on the weight Parameter only (not the bias, as
    in the course report); the optimizer adds λW to its gradient exactly once.
    Initialisation: PyTorch's default, W and b ~ U(±1/√in_dim).
    """

    def __init__(self, in_dim: int, out_dim: int, weight_decay: float | None = None, *,
                 bias: bool = True, init: str = "kaiming_uniform", dtype: str = "float32",
                 backend: str | Backend | None = None) -> None:
        name = "Linear"
        self.in_dim = positive_int("in_dim", name, in_dim)
        self.out_dim = positive_int("out_dim", name, out_dim)
        check_dtype_arg(name, dtype)
        be = backend_arg(backend)
        self.weight = Parameter(
            _init.weight((in_dim, out_dim), in_dim, out_dim, init, dtype, be), weight_decay
        )
        self.bias = Parameter(_init.bias(out_dim, in_dim, dtype, be)) if bias else None
        self._cache_x: Any = None

    def extra_repr(self) -> str:
        wd = self.weight.weight_decay
        return f"{self.in_dim}, {self.out_dim}" + (f", weight_decay={wd}" if wd is not None else "")

    def forward(self, x: Any) -> Any:
        w = self.weight.data
        xp = check_input(self, x, w, 2, f"(batch, {self.in_dim})")
        if x.shape[1] != self.in_dim:
            raise ValueError(f"{self!r}: expected input of shape (batch, {self.in_dim}), got "
                             f"({', '.join(str(s) for s in x.shape)})")
        self._cache_x = x if self.training else None
        return linear_forward(xp, x, w, None if self.bias is None else self.bias.data)

    def backward(self, grad_out: Any) -> Any:
        return self._backward(grad_out, True)

    def backward_params_only(self, grad_out: Any) -> None:
        self._backward(grad_out, False)

    def _backward(self, grad_out: Any, need_input_grad: bool) -> Any:
        if self._cache_x is None:
            raise missing_cache(self)
        xp = check_input(self, grad_out, self.weight.data, 2, f"(batch, {self.out_dim})")
        check_grad_shape(self, grad_out, (self._cache_x.shape[0], self.out_dim))
        dx, dw, db = linear_backward(xp, grad_out, self._cache_x, self.weight.data,
                                     need_bias=self.bias is not None,
                                     need_input_grad=need_input_grad)
        self.weight.grad = dw
        if self.bias is not None:
            self.bias.grad = db
        return dx
