"""Batch normalisation layers (PyTorch's BatchNorm1d and BatchNorm2d)."""

from __future__ import annotations

import math
from typing import Any

from .._array import shape_str
from ..backends import Backend
from ..functional.batchnorm import batch_norm_eval, batch_norm_train, batch_norm_train_backward
from ..module import Buffer, Module, Parameter
from ._common import (
    backend_arg,
    check_batch,
    check_dtype_arg,
    check_grad_shape,
    check_input,
    missing_cache,
    positive_int,
)


def _real(layer: str, name: str, value: Any, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value <= low or (high is not None and value > high):
        bound = f"in ({low}, {high}]" if high is not None else f"> {low}"
        raise ValueError(f"{layer}: {name} must be a number {bound}, got {value!r}")
    return float(value)


class _BatchNorm(Module):
    """Shared machinery; see :class:`BatchNorm2d` for the formulas."""

    ranks: tuple[int, ...] = ()
    expected: str = ""
    splittable = False  # the batch statistics couple the samples of a batch

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *,
                 dtype: str = "float32", backend: str | Backend | None = None) -> None:
        name = type(self).__name__
        self.num_features = positive_int("num_features", name, num_features)
        self.eps = _real(name, "eps", eps, 0.0)
        self.momentum = None if momentum is None else _real(name, "momentum", momentum, 0.0, 1.0)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        check_dtype_arg(name, dtype)
        be = backend_arg(backend)
        xp, dt, dev = be.xp, getattr(be.xp, dtype), be.device
        self.weight = Parameter(xp.ones((num_features,), dtype=dt, device=dev)) if affine else None
        self.bias = Parameter(xp.zeros((num_features,), dtype=dt, device=dev)) if affine else None
        if self.track_running_stats:
            self.running_mean = Buffer(xp.zeros((num_features,), dtype=dt, device=dev))
            self.running_var = Buffer(xp.ones((num_features,), dtype=dt, device=dev))
            self.num_batches_tracked = Buffer(xp.asarray(0, dtype=xp.int64, device=dev))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        self._cache: Any = None
        self._cache_shape: Any = None

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")

    def _ref(self) -> Any:
        if self.weight is not None:
            return self.weight.data
        return None if self.running_mean is None else self.running_mean.data

    def forward(self, x: Any) -> Any:
        xp = check_input(self, x, self._ref(), self.ranks, self.expected)
        check_batch(self, x)
        if int(x.shape[1]) != self.num_features:
            raise ValueError(f"{self!r}: expected {self.num_features} channels (axis 1), got input "
                             f"of shape {shape_str(x.shape)}")
        w = None if self.weight is None else self.weight.data
        b = None if self.bias is None else self.bias.data
        if not self.training and self.track_running_stats:
            self._cache = None
            return batch_norm_eval(xp, x, self.running_mean.data, self.running_var.data, w, b,
                                   self.eps)
        per_channel = math.prod(int(s) for s in x.shape) // self.num_features
        if self.training and per_channel < 2:
            raise ValueError(f"{self!r}: expected more than 1 value per channel when training, "
                             f"got input of shape {shape_str(x.shape)}")
        y, mean, var, cache = batch_norm_train(xp, x, w, b, self.eps)
        if self.training and self.track_running_stats:
            self._update_running_stats(xp, mean, var, per_channel)
        self._cache = cache if self.training else None
        self._cache_shape = tuple(x.shape) if self.training else None
        return y

    def _update_running_stats(self, xp: Any, mean: Any, var: Any, n: int) -> None:
        """running ← (1 − m)·running + m·batch (the variance unbiased, n/(n − 1)); with
        momentum None, m = 1/num_batches_tracked (a cumulative average), as in PyTorch."""
        tracked = self.num_batches_tracked.data + 1
        self.num_batches_tracked.data = tracked
        m = self.momentum if self.momentum is not None else 1.0 / int(tracked)
        unbiased = var * (n / (n - 1))
        self.running_mean.data = (1 - m) * self.running_mean.data + m * mean
        self.running_var.data = (1 - m) * self.running_var.data + m * unbiased

    def backward(self, grad_out: Any) -> Any:
        return self._backward(grad_out)

    def backward_params_only(self, grad_out: Any) -> None:
        self._backward(grad_out)

    def _backward(self, grad_out: Any) -> Any:
        if self._cache is None:
            raise missing_cache(self)
        xp = check_input(self, grad_out, self._ref(), self.ranks, self.expected)
        check_grad_shape(self, grad_out, self._cache_shape)
        dx, dw, db = batch_norm_train_backward(xp, grad_out, self._cache,
                                               None if self.weight is None else self.weight.data)
        if self.weight is not None:
            self.weight.grad, self.bias.grad = dw, db
        return dx


class BatchNorm2d(_BatchNorm):
    """y[b,c,h,w] = (x[b,c,h,w] − μ_c) / √(σ²_c + eps) · γ_c + β_c, x (B, C, H, W).

    Training: μ_c and σ²_c are the batch's mean and biased variance over (B, H, W), and
    ``running_mean`` / ``running_var`` move towards μ_c and the unbiased variance with
    ``momentum`` (None: a cumulative average), ``num_batches_tracked`` counts the
    updates; backward is the full training-mode derivative (the statistics depend on
    x). Eval: the running statistics. γ (``weight``, ones) and β (``bias``, zeros) with
    ``affine``; without ``track_running_stats`` the batch statistics are used in eval
    too and there are no buffers. PyTorch's defaults and numbers.
    """

    ranks = (4,)
    expected = "(batch, channels, H, W)"


class BatchNorm1d(_BatchNorm):
    """:class:`BatchNorm2d`'s formulas for x (B, C) or (B, C, L): statistics over (B,) or
    (B, L) per channel C."""

    ranks = (2, 3)
    expected = "(batch, features) or (batch, channels, length)"


__all__ = ["BatchNorm1d", "BatchNorm2d"]
