"""Stochastic gradient descent, PyTorch's form."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..module import Module, Parameter
from .optimizer import Optimizer, check_momentum


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

    def __init__(self, params: Module | Iterable[Parameter], lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(params, lr, weight_decay)
        self.momentum = check_momentum("momentum", momentum, type(self).__name__)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0.0:
            raise ValueError(f"{type(self).__name__}: nesterov=True needs momentum > 0")

    def hyperparameters(self) -> dict[str, Any]:
        return {"momentum": self.momentum, "weight_decay": self.weight_decay,
                "nesterov": self.nesterov}

    def keeps_buffers(self, hyperparameters: Mapping[str, Any]) -> bool:
        return hyperparameters.get("momentum", 0.0) > 0.0

    def _update(self, xp: Any, p: Parameter, i: int, lr: float) -> Any:
        g = self.decayed_grad(p)
        mu = self.momentum
        if mu == 0.0:
            p.data -= lr * g
            return None
        buf = self.buffers[i]
        if buf is None:
            buf = xp.asarray(g, copy=True)
        else:
            buf *= mu
            buf += g
        step = g + mu * buf if self.nesterov else buf
        p.data -= lr * step
        return buf
