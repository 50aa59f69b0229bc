"""Learning-rate schedules in closed form, with PyTorch's surface.

Each ``step()`` advances t (``last_epoch``) and sets ``optimizer.lr`` from a
closed form of t, so there is no drift from repeated multiplication. The
caller decides whether t counts epochs or iterations. ``step()`` overwrites
``optimizer.lr``: chaining two schedulers on one optimizer is not supported.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from typing import Any

from .optim.optimizer import Optimizer


def _check_gamma(gamma: Any) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma > 0 \
            or not math.isfinite(gamma):
        raise ValueError(f"gamma must be a finite number > 0, got {gamma!r}")
    return float(gamma)


class LRScheduler:
    """Base class: ``last_epoch``, ``base_lrs``, ``step()``, ``get_last_lr()``, state.

    Construction sets t = 0 and ``optimizer.lr`` = lr₀·factor(0), as PyTorch does.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an nnx optimizer, got "
                            f"{type(optimizer).__name__}")
        if last_epoch != -1:
            raise ValueError(f"{type(self).__name__}: only last_epoch=-1 is supported; resume "
                             "with load_state_dict")
        self.optimizer = optimizer
        self.base_lrs = [float(optimizer.lr)]
        self.last_epoch = -1
        self._last_lr = [float(optimizer.lr)]
        self.step()

    def factor(self, t: int) -> float:
        """lr(t) / lr₀."""
        raise NotImplementedError

    def lr_at(self, t: int) -> float:
        """The closed-form learning rate at step t."""
        return self.base_lrs[0] * self.factor(t)

    def step(self) -> None:
        """Advance t by one and set the optimizer's learning rate."""
        self.last_epoch += 1
        lr = self.lr_at(self.last_epoch)
        self.optimizer.lr = lr
        self._last_lr = [lr]

    def get_last_lr(self) -> list[float]:
        """The learning rate set by the last ``step()`` (a one-element list, as PyTorch)."""
        return list(self._last_lr)

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "last_epoch": self.last_epoch,
                "base_lrs": list(self.base_lrs), **self.config()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore t and lr₀ and set the optimizer's lr for that t."""
        if state.get("type") != type(self).__name__:
            raise ValueError(f"{type(self).__name__}.load_state_dict: state is for "
                             f"{state.get('type')!r}")
        for key, value in self.config().items():
            if key in state and state[key] != value:
                raise ValueError(f"{type(self).__name__}.load_state_dict: {key} is {value!r} "
                                 f"here but {state[key]!r} in the state")
        self.base_lrs = [float(v) for v in state["base_lrs"]]
        self.last_epoch = int(state["last_epoch"])
        lr = self.lr_at(self.last_epoch)
        self.optimizer.lr = lr
        self._last_lr = [lr]

    def __repr__(self) -> str:
        cfg = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({cfg}, last_epoch={self.last_epoch})"


class StepLR(LRScheduler):
    """lr(t) = lr₀ · γ^⌊t / step_size⌋."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be an int >= 1, got {step_size!r}")
        self.step_size = step_size
        self.gamma = _check_gamma(gamma)
        super().__init__(optimizer, last_epoch)

    def factor(self, t: int) -> float:
        return self.gamma ** (t // self.step_size)

    def config(self) -> dict[str, Any]:
        return {"step_size": self.step_size, "gamma": self.gamma}


class MultiStepLR(LRScheduler):
    """lr(t) = lr₀ · γ^(number of milestones ≤ t, repeats counted)."""

    def __init__(self, optimizer: Optimizer, milestones: Sequence[int], gamma: float = 0.1,
                 last_epoch: int = -1) -> None:
        ms = list(milestones)
        if any(isinstance(m, bool) or not isinstance(m, int) for m in ms):
            raise ValueError(f"MultiStepLR: milestones must be ints, got {milestones!r}")
        if any(m < 0 for m in ms):
            raise ValueError(f"MultiStepLR: milestones must be >= 0, got {milestones!r}")
        if ms != sorted(ms):
            raise ValueError(f"MultiStepLR: milestones must be sorted, got {milestones!r}")
        self.milestones = ms
        self.gamma = _check_gamma(gamma)
        super().__init__(optimizer, last_epoch)

    def factor(self, t: int) -> float:
        return self.gamma ** bisect.bisect_right(self.milestones, t)

    def config(self) -> dict[str, Any]:
        return {"milestones": list(self.milestones), "gamma": self.gamma}


class ExponentialLR(LRScheduler):
    """lr(t) = lr₀ · γ^t."""

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = _check_gamma(gamma)
        super().__init__(optimizer, last_epoch)

    def factor(self, t: int) -> float:
        return self.gamma ** t

    def config(self) -> dict[str, Any]:
        return {"gamma": self.gamma}


__all__ = ["ExponentialLR", "LRScheduler", "MultiStepLR", "StepLR"]
