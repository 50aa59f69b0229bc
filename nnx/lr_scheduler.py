"""Learning-rate schedules in closed form, with PyTorch's surface.

Each ``step()`` advances t (``last_epoch``) and sets ``optimizer.lr`` from a
closed form of t, so there is no drift from repeated multiplication. The
caller decides whether t counts epochs or iterations. ``step()`` overwrites
``optimizer.lr``: chaining two schedulers on one optimizer is not supported.
A learning rate that would leave the float range (γ^k overflowing) is refused
with a ValueError naming the scheduler, gamma and the step.
"""

from __future__ import annotations

import bisect
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from .optim.optimizer import Optimizer, check_real


def _check_gamma(owner: str, gamma: Any) -> float:
    g = check_real("gamma", gamma, owner)
    if not g > 0:
        raise ValueError(f"{owner}: gamma must be a finite number > 0, got {gamma!r}")
    return g


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class LRScheduler:
    """Base class: ``last_epoch``, ``base_lrs``, ``step()``, ``get_last_lr()``, state.

    Construction sets t = 0 and ``optimizer.lr`` = lr₀·factor(0), as PyTorch does.
    A learning rate that leaves the float range (γ^k overflows, e.g. gamma=1e200, or
    lr₀·γ^k is inf) raises ValueError naming the scheduler, gamma and the step;
    the scheduler and the optimizer are then left as they were.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an nnx optimizer, got "
                            f"{type(optimizer).__name__}")
        if not _is_int(last_epoch) or last_epoch != -1:
            raise ValueError(f"{type(self).__name__}: only last_epoch=-1 is supported, got "
                             f"{last_epoch!r}; resume with load_state_dict")
        self.optimizer = optimizer
        self.base_lrs = [float(optimizer.lr)]
        self.last_epoch = -1
        self._last_lr = [float(optimizer.lr)]
        self.step()

    def factor(self, t: int) -> float:
        """lr(t) / lr₀."""
        raise NotImplementedError

    def _exponent(self, t: int) -> int | None:
        """k in factor(t) = γ^k, for error messages (None if the schedule has no such k)."""
        return None

    def lr_at(self, t: int) -> float:
        """The closed-form learning rate at step t (ValueError if it is not a finite float)."""
        return self._lr(self.base_lrs[0], t)

    def _lr(self, lr0: float, t: int) -> float:
        try:
            lr = lr0 * self.factor(t)
        except OverflowError:  # float ** int beyond the float range
            lr = 0.0 if lr0 == 0.0 else math.inf
        if not math.isfinite(lr):
            name = type(self).__name__
            gamma, k = getattr(self, "gamma", None), self._exponent(t)
            if gamma is None or k is None:
                raise ValueError(f"{name}: the learning rate overflows at step {t}: lr0 {lr0!r} "
                                 f"* factor({t}) is not a finite float")
            raise ValueError(f"{name}: the learning rate overflows at step {t}: lr0 {lr0!r} * "
                             f"gamma {gamma!r} ** {k} is beyond the float range; use a smaller "
                             "gamma or fewer steps")
        return lr

    def step(self) -> None:
        """Advance t by one and set the optimizer's learning rate.

        Raises ValueError (changing nothing) when the learning rate would overflow.
        """
        lr = self.lr_at(self.last_epoch + 1)
        self.last_epoch += 1
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

    def _checked_state(self, state: Mapping[str, Any]) -> tuple[list[float], int, float]:
        """Validate ``state`` as :meth:`load_state_dict` does, changing nothing.

        Returns (base_lrs, last_epoch, the learning rate at last_epoch); raises
        ValueError naming this class and the offending entry.
        """
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state, Mapping):
            raise ValueError(f"{where}: state must be a dict, got {type(state).__name__}")
        if state.get("type") != type(self).__name__:
            raise ValueError(f"{where}: state is for {state.get('type')!r}")
        for key, value in self.config().items():
            if key in state and state[key] != value:
                raise ValueError(f"{where}: {key} is {value!r} here but {state[key]!r} in the "
                                 "state")
        for key in ("last_epoch", "base_lrs"):
            if key not in state:
                raise ValueError(f"{where}: the state has no {key!r}")
        last_epoch, raw = state["last_epoch"], state["base_lrs"]
        if not _is_int(last_epoch) or last_epoch < 0:
            raise ValueError(f"{where}: last_epoch must be an int >= 0, got {last_epoch!r}")
        if not isinstance(raw, (list, tuple)) or len(raw) != len(self.base_lrs):
            got = f"a list of {len(raw)}" if isinstance(raw, (list, tuple)) else repr(raw)
            raise ValueError(f"{where}: base_lrs must be a list of {len(self.base_lrs)} "
                             f"number(s), got {got}")
        base_lrs = []
        for i, v in enumerate(raw):
            lr0 = check_real(f"base_lrs[{i}]", v, where)
            if lr0 < 0:
                raise ValueError(f"{where}: base_lrs[{i}] must be >= 0, got {v!r}")
            base_lrs.append(lr0)
        try:
            lr = self._lr(base_lrs[0], int(last_epoch))
        except ValueError as exc:
            msg = str(exc).removeprefix(f"{type(self).__name__}: ")
            raise ValueError(f"{where}: {msg}") from None
        return base_lrs, int(last_epoch), lr

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore t and lr₀ and set the optimizer's lr for that t.

        Validates first (type, config, ``last_epoch`` an int >= 0, ``base_lrs``
        finite numbers >= 0, a finite learning rate at t); on a ValueError nothing
        changes.
        """
        base_lrs, last_epoch, lr = self._checked_state(state)
        self.base_lrs = base_lrs
        self.last_epoch = last_epoch
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
        self.gamma = _check_gamma(type(self).__name__, gamma)
        super().__init__(optimizer, last_epoch)

    def _exponent(self, t: int) -> int:
        return t // self.step_size

    def factor(self, t: int) -> float:
        return self.gamma ** self._exponent(t)

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
        self.gamma = _check_gamma(type(self).__name__, gamma)
        super().__init__(optimizer, last_epoch)

    def _exponent(self, t: int) -> int:
        return bisect.bisect_right(self.milestones, t)

    def factor(self, t: int) -> float:
        return self.gamma ** self._exponent(t)

    def config(self) -> dict[str, Any]:
        return {"milestones": list(self.milestones), "gamma": self.gamma}


class ExponentialLR(LRScheduler):
    """lr(t) = lr₀ · γ^t."""

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = _check_gamma(type(self).__name__, gamma)
        super().__init__(optimizer, last_epoch)

    def _exponent(self, t: int) -> int:
        return t

    def factor(self, t: int) -> float:
        return self.gamma ** self._exponent(t)

    def config(self) -> dict[str, Any]:
        return {"gamma": self.gamma}


__all__ = ["ExponentialLR", "LRScheduler", "MultiStepLR", "StepLR"]
