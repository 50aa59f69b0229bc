"""Momentum gradient descent in the course report's form (the velocity carries lr)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..module import Parameter
from .optimizer import Optimizer, Params, check_momentum, check_weight_decay


class MomentGD(Optimizer):
    """Momentum in the course report's form: the velocity carries the learning rate.

        v ← μ·v − lr·(∇ + λp)      (v starts at 0)
        p ← p + v

    While lr is constant this equals ``SGD(momentum=μ)`` (v = −lr·b). When lr
    changes, MomentGD's velocity keeps the old lr in its history, whereas SGD
    applies the new lr to the whole buffer at once.
    """

    slots = ("velocity",)

    def __init__(self, params: Params, lr: float, mu: float = 0.9,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, {"lr": lr, "mu": mu, "weight_decay": weight_decay})

    def _check_hyper(self, hyper: dict[str, Any], owner: str) -> dict[str, Any]:
        return {"mu": check_momentum("mu", hyper.get("mu"), owner),
                "weight_decay": check_weight_decay(hyper.get("weight_decay"), owner)}

    def required_slots(self, group: Mapping[str, Any]) -> tuple[str, ...]:
        return self.slots

    def _update(self, xp: Any, p: Parameter, state: dict[str, Any],
                group: Mapping[str, Any]) -> None:
        g = self.decayed_grad(p, group)
        lr = group["lr"]
        v = state.get("velocity")
        if v is None:
            v = -lr * g
        else:
            v *= group["mu"]
            v -= lr * g
        state["velocity"] = v  # the same array where updates are in place (not in JAX)
        p.data += v
