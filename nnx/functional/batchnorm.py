"""Batch normalisation over every axis but the channel axis (1), Array API only."""

from __future__ import annotations

from typing import Any


def channel_shape(x: Any) -> tuple[int, ...]:
    """The shape a (C,) vector takes to broadcast against x: (1, C, 1, ...)."""
    return (1, int(x.shape[1])) + (1,) * (x.ndim - 2)


def reduce_axes(x: Any) -> tuple[int, ...]:
    return (0,) + tuple(range(2, x.ndim))


def batch_norm_train(xp: Any, x: Any, weight: Any, bias: Any, eps: float
                     ) -> tuple[Any, Any, Any, tuple[Any, Any]]:
    """(y, batch mean (C,), biased batch variance (C,), cache) with
    y = (x − mean) / √(var + eps) · weight + bias, statistics over all axes but 1."""
    axes, shape = reduce_axes(x), channel_shape(x)
    mean = xp.mean(x, axis=axes, keepdims=True)
    centred = x - mean
    var = xp.mean(centred * centred, axis=axes, keepdims=True)
    inv_std = 1.0 / xp.sqrt(var + eps)
    xhat = centred * inv_std
    y = xhat if weight is None else xhat * xp.reshape(weight, shape) + xp.reshape(bias, shape)
    return y, xp.reshape(mean, (-1,)), xp.reshape(var, (-1,)), (xhat, inv_std)


def batch_norm_train_backward(xp: Any, grad: Any, cache: tuple[Any, Any], weight: Any
                              ) -> tuple[Any, Any, Any]:
    """(dx, dweight, dbias) of the training-mode forward (the batch statistics depend on x):
    dx = (1/σ)·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), ĝ = grad·weight; dweight = Σ grad·x̂; dbias = Σ grad."""
    xhat, inv_std = cache
    axes = reduce_axes(grad)
    ghat = grad if weight is None else grad * xp.reshape(weight, channel_shape(grad))
    dx = inv_std * (ghat - xp.mean(ghat, axis=axes, keepdims=True)
                    - xhat * xp.mean(ghat * xhat, axis=axes, keepdims=True))
    if weight is None:
        return dx, None, None
    return dx, xp.sum(grad * xhat, axis=axes), xp.sum(grad, axis=axes)


def batch_norm_eval(xp: Any, x: Any, mean: Any, var: Any, weight: Any, bias: Any, eps: float
                    ) -> Any:
    """y = (x − mean) / √(var + eps) · weight + bias with given (C,) statistics."""
    shape = channel_shape(x)
    scale = 1.0 / xp.sqrt(var + eps)
    shift = -mean * scale
    if weight is not None:
        scale, shift = scale * weight, shift * weight + bias
    return x * xp.reshape(scale, shape) + xp.reshape(shift, shape)


__all__ = ["batch_norm_eval", "batch_norm_train", "batch_norm_train_backward", "channel_shape"]
