"""Stochastic gradient descent, PyTorch's form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..module import Parameter
from .optimizer import Optimizer, Params, check_momentum, check_weight_decay


class SGD(Optimizer):
    """SGD with optional momentum, Nesterov and L2 weight decay (PyTorch's update).

    With g = ∇ + λp (λ: the parameter's own ``weight_decay``, else this one's):

        b ← g on the first step, then b ← μ·b + g
        d = g + μ·b (Nesterov) or b (plain momentum) or g (μ = 0)
        p ← p − lr·d

    Hyperparameters are real numbers (Python or NumPy scalars). Raises ValueError
    naming the argument for a bool, NaN or ±inf, lr < 0, momentum outside [0, 1),
    weight_decay < 0 and nesterov without momentum.
    """

    slots = ("momentum_buffer",)

    def __init__(self, params: Params, lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                                  "nesterov": nesterov})

    def _check_hyper(self, hyper: dict[str, Any], owner: str) -> dict[str, Any]:
        out = {"momentum": check_momentum("momentum", hyper.get("momentum"), owner),
               "weight_decay": check_weight_decay(hyper.get("weight_decay"), owner)}
        nesterov = hyper.get("nesterov")
        if not isinstance(nesterov, bool):
            raise ValueError(f"{owner + ': ' if owner else ''}nesterov must be True or False, got "
                             f"{nesterov!r}")
        if nesterov and out["momentum"] == 0.0:
            raise ValueError(f"{owner + ': ' if owner else ''}nesterov=True needs momentum > 0")
        return {**out, "nesterov": nesterov}

    def required_slots(self, group: Mapping[str, Any]) -> tuple[str, ...]:
        return self.slots if group.get("momentum", 0.0) > 0.0 else ()

    def _update(self, xp: Any, p: Parameter, state: dict[str, Any],
                group: Mapping[str, Any]) -> None:
        g = self.decayed_grad(p, group)
        lr, mu = group["lr"], group["momentum"]
        if mu == 0.0:
            p.data -= lr * g
            return
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = xp.asarray(g, copy=True)
        else:
            buf *= mu
            buf += g
        step = g + mu * buf if group["nesterov"] else buf
        p.data -= lr * step
