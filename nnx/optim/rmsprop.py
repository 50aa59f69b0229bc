"""RMSprop, PyTorch's form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..module import Parameter
from ._checks import check_flag, check_nonnegative
from .optimizer import Optimizer, Params, check_momentum, check_weight_decay


class RMSprop(Optimizer):
    """RMSprop with PyTorch's update: optional centring, momentum and L2 weight decay.

    With g = ∇ + λp (λ: the parameter's own ``weight_decay``, else its group's):

        s ← α·s + (1 − α)·g²                                   (s, a, b start at 0)
        a ← α·a + (1 − α)·g,  d = √(s − a²) + ε   (centered)
        d = √s + ε                                 (otherwise)
        b ← μ·b + g/d,  p ← p − lr·b               (momentum μ > 0)
        p ← p − lr·g/d                             (μ = 0)

    ``lr``, ``alpha``, ``eps``, ``weight_decay``, ``momentum`` and ``centered`` are read
    from the parameter's group at every step, so a scheduler may change them.

    State per parameter: ``square_avg`` (s, what ``buffers`` lists) and, when used,
    ``momentum_buffer`` (b) and ``grad_avg`` (a), on the parameter's device and dtype.

    Raises ValueError naming the argument for lr < 0, alpha or momentum outside [0, 1)
    (stricter than PyTorch, which takes any value >= 0), eps < 0, weight_decay < 0,
    centered not a bool, and for bools, NaN or ±inf where numbers belong.
    """

    slots = ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, params: Params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False) -> None:
        super().__init__(params, {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay,
                                  "momentum": momentum, "centered": centered})

    def _check_hyper(self, hyper: dict[str, Any], owner: str) -> dict[str, Any]:
        return {"alpha": check_momentum("alpha", hyper.get("alpha"), owner),
                "eps": check_nonnegative("eps", hyper.get("eps"), owner),
                "weight_decay": check_weight_decay(hyper.get("weight_decay"), owner),
                "momentum": check_momentum("momentum", hyper.get("momentum"), owner),
                "centered": check_flag("centered", hyper.get("centered"), owner)}

    def required_slots(self, group: Mapping[str, Any]) -> tuple[str, ...]:
        return (("square_avg",) + (("momentum_buffer",) if group.get("momentum", 0.0) > 0.0 else ())
                + (("grad_avg",) if group.get("centered") else ()))

    def _update(self, xp: Any, p: Parameter, state: dict[str, Any],
                group: Mapping[str, Any]) -> None:
        g = self.decayed_grad(p, group)
        lr, alpha, mu = group["lr"], group["alpha"], group["momentum"]
        s = state.get("square_avg")
        if s is None:
            s = xp.zeros_like(p.data)
        s *= alpha
        s += (1.0 - alpha) * (g * g)
        state["square_avg"] = s  # the same array where updates are in place (not in JAX)
        if group["centered"]:
            a = state.get("grad_avg")
            if a is None:
                a = xp.zeros_like(p.data)
            a *= alpha
            a += (1.0 - alpha) * g
            state["grad_avg"] = a
            d = xp.sqrt(s - a * a)
        else:
            d = xp.sqrt(s)
        d += group["eps"]
        if mu > 0.0:
            b = state.get("momentum_buffer")
            if b is None:
                b = xp.zeros_like(p.data)
            b *= mu
            b += g / d
            state["momentum_buffer"] = b
            p.data -= lr * b
        else:
            step = g / d
            step *= lr
            p.data -= step
