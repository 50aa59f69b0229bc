"""Momentum gradient descent in the seed report's form."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..module import Module, Parameter
from .optimizer import Optimizer, check_momentum


class MomentGD(Optimizer):
    """The seed report's momentum: the velocity carries the learning rate.

        v ← μ·v − lr·(∇ + λp)      (v starts at 0)
        p ← p + v

    While lr is constant this equals ``SGD(momentum=μ)`` (v = −lr·b). When lr
    changes, MomentGD's velocity keeps the old lr in its history, whereas SGD
    applies the new lr to the whole buffer at once.
    """

    def __init__(self, params: Module | Iterable[Parameter], lr: float, mu: float = 0.9,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr, weight_decay)
        self.mu = check_momentum("mu", mu, type(self).__name__)

    def hyperparameters(self) -> dict[str, Any]:
        return {"mu": self.mu, "weight_decay": self.weight_decay}

    def keeps_buffers(self, hyperparameters: Mapping[str, Any]) -> bool:
        return True

    def _update(self, xp: Any, p: Parameter, i: int, lr: float) -> Any:
        g = self.decayed_grad(p)
        v = self.buffers[i]
        if v is None:
            v = -lr * g
        else:
            v *= self.mu
            v -= lr * g
        p.data += v
        return v
