"""Gradient clipping, PyTorch's ``clip_grad_norm_`` and ``clip_grad_value_``."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import array_api_compat

from .._array import array_namespace, device
from ..module import Module, Parameter
from ._checks import check_flag

ParamsLike = Module | Parameter | Iterable[Parameter]


def clip_grad_norm_(params: ParamsLike, max_norm: float, norm_type: float | str = 2.0,
                    error_if_nonfinite: bool = False) -> Any:
    """Scale the gradients so that their total ``norm_type``-norm is at most ``max_norm``.

    The total norm is that of all gradients taken as one vector,
    N = (Σ |g|^q)^(1/q) over every element of every gradient (q = ``norm_type``; for
    ``inf``, N = max |g|). Every gradient is then multiplied by

        c = min(1, max_norm / (N + 1e-6))           (PyTorch's rule)

    always, without reading N on the host (c = 1 leaves the values as they are), so the
    call does not wait for the device. Each ``.grad`` is replaced by the scaled array
    (PyTorch scales the tensor in place; nnx rebinds, which also suits immutable arrays).

    ``params``: a Module, a Parameter or Parameters; gradients that are None are skipped.
    Returns N as a 0-d array on the (first) gradients' device in their dtype (0.0 when no
    gradient is set). ``max_norm=inf`` only measures. With ``error_if_nonfinite=True``,
    a NaN or infinite N raises RuntimeError (this reads N on the host); otherwise, as in
    PyTorch, an infinite N scales every gradient by 0 (its infinite elements become NaN)
    and a NaN N makes every gradient NaN.

    The 2-norm is √(Σ g²) in the gradients' dtype: in float32 it overflows to inf for
    gradients beyond about 1e19 (PyTorch's CPU kernel accumulates in float64).
    """
    owner = "clip_grad_norm_"
    max_norm = _check_limit("max_norm", max_norm, owner)
    q = _check_norm_type(norm_type, owner)
    error_if_nonfinite = check_flag("error_if_nonfinite", error_if_nonfinite, owner)
    plist = _parameter_list(params, owner)
    grads = [p.grad for p in plist if p.grad is not None]
    if not grads:
        return _zero(plist)
    xp = _namespace(grads, owner)
    ref = grads[0]
    dtype = xp.result_type(*grads) if len(grads) > 1 else ref.dtype
    nonempty = [g for g in grads if math.prod(g.shape) > 0]
    if not nonempty:
        total = xp.zeros((), dtype=dtype, device=device(ref))
    else:
        if q == math.inf:
            parts = [xp.max(xp.abs(g)) for g in nonempty]
        elif q == 2.0:
            parts = [xp.sum(g * g) for g in nonempty]
        elif q == 1.0:
            parts = [xp.sum(xp.abs(g)) for g in nonempty]
        else:
            parts = [xp.sum(xp.abs(g) ** q) for g in nonempty]
        stacked = xp.stack([_placed(xp, part, ref, dtype) for part in parts])
        if q == math.inf:
            total = xp.max(stacked)
        elif q == 2.0:
            total = xp.sqrt(xp.sum(stacked))
        elif q == 1.0:
            total = xp.sum(stacked)
        else:
            total = xp.sum(stacked) ** (1.0 / q)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"{owner}: the total norm of order {norm_type} of the gradients is "
                           f"{float(total)}, so it cannot be clipped; pass "
                           "error_if_nonfinite=False to scale by 0 instead")
    coef = xp.clip(max_norm / (total + 1e-6), max=1.0)
    for p in plist:
        if p.grad is not None:
            p.grad = p.grad * _placed(xp, coef, p.grad, p.grad.dtype)
    return total


def clip_grad_value_(params: ParamsLike, clip_value: float) -> None:
    """Clamp every gradient element into [−clip_value, clip_value] (PyTorch's rule).

    ``params``: a Module, a Parameter or Parameters; gradients that are None are
    skipped. Each ``.grad`` is replaced by the clamped array.
    """
    owner = "clip_grad_value_"
    clip_value = _check_limit("clip_value", clip_value, owner)
    for p in _parameter_list(params, owner):
        if p.grad is not None:
            xp = array_namespace(p.grad)
            p.grad = xp.clip(p.grad, min=-clip_value, max=clip_value)


# -- helpers ---------------------------------------------------------------


def _check_limit(name: str, value: Any, owner: str) -> float:
    """A real number >= 0; inf allowed (no clipping), NaN and bools not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value) \
            or value < 0:
        raise ValueError(f"{owner}: {name} must be a number >= 0 (inf: no clipping), got {value!r}")
    return float(value)


def _check_norm_type(value: Any, owner: str) -> float:
    """q > 0 or inf (also the string "inf", as PyTorch takes)."""
    q = math.inf if isinstance(value, str) and value.strip().lower() == "inf" else value
    if isinstance(q, bool) or not isinstance(q, numbers.Real) or math.isnan(q) or q <= 0:
        raise ValueError(f"{owner}: norm_type must be a number > 0 or inf, got {value!r}")
    return float(q)


def _parameter_list(params: ParamsLike, owner: str) -> list[Parameter]:
    if isinstance(params, Module):
        return params.parameters()
    if isinstance(params, Parameter):
        return [params]
    try:
        out = list(params)
    except TypeError:
        raise TypeError(f"{owner}: params must be a Module, a Parameter or Parameters, got "
                        f"{type(params).__name__}") from None
    for i, p in enumerate(out):
        if not isinstance(p, Parameter):
            raise TypeError(f"{owner}: expected nnx.Parameter objects, item {i} is "
                            f"{type(p).__name__}")
    return out


def _namespace(grads: list[Any], owner: str) -> Any:
    try:
        return array_namespace(*grads)
    except TypeError:
        libs = sorted({type(g).__module__.split(".")[0] for g in grads})
        raise TypeError(f"{owner}: the gradients are arrays of several libraries ({', '.join(libs)}); "
                        "move the model to one backend with model.to(...)") from None


def _placed(xp: Any, x: Any, ref: Any, dtype: Any) -> Any:
    """``x`` on ``ref``'s device in ``dtype`` (unchanged when it already is)."""
    if x.dtype != dtype:
        x = xp.astype(x, dtype)
    if device(x) != device(ref):
        x = array_api_compat.to_device(x, device(ref))
    return x


def _zero(plist: list[Parameter]) -> Any:
    """The total norm of no gradients: 0.0 where the parameters (or the active backend) live."""
    if plist:
        ref = plist[0].data
        return array_namespace(ref).zeros((), dtype=ref.dtype, device=device(ref))
    from ..backend import get_backend

    be = get_backend()
    return be.xp.zeros((), dtype=be.xp.float32, device=be.device)
