"""Learning-rate schedules with PyTorch's surface and PyTorch's values.

Every scheduler drives every parameter group of its optimizer: ``base_lrs`` holds each
group's initial learning rate (the group's ``"lr"`` when the scheduler is built, except
OneCycleLR: ``max_lr / div_factor``, as PyTorch), ``step()`` advances t (``last_epoch``)
and sets each group's ``"lr"``, and ``get_last_lr()`` returns one value per group. The
caller decides whether t counts epochs or iterations.

StepLR, MultiStepLR, ExponentialLR and OneCycleLR compute each learning rate from a
closed form of t (no drift from repeated multiplication). CosineAnnealingLR and LinearLR
follow PyTorch's recursions, which continue from the group's current lr, so that their
values are PyTorch's own (their docstrings say where these differ from the closed form).
ReduceLROnPlateau is stepped with the monitored metric: ``step(metrics)``; its class
attribute ``needs_metric`` is True (False for the others). ``step()`` overwrites the
groups' learning rates: chaining two schedulers on one optimizer is not supported,
except through SequentialLR.

``state_dict()`` is JSON-able (numbers, strings, lists, dicts): ``{"type", "last_epoch",
"base_lrs", <the configuration>, ...}``; ``load_state_dict`` validates everything
first (type, configuration equal to this scheduler's, values) and changes nothing on a
ValueError, then sets the groups' learning rates for the restored position.

A learning rate that would leave the float range (γ^k overflowing) is refused with a
ValueError naming the scheduler, gamma and the step.
"""

from __future__ import annotations

import bisect
import itertools
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from .optim.optimizer import Optimizer, check_real

_SERIAL = itertools.count()  # construction order (SequentialLR: which scheduler came first)


def _check_gamma(owner: str, gamma: Any) -> float:
    g = check_real("gamma", gamma, owner)
    if not g > 0:
        raise ValueError(f"{owner}: gamma must be a finite number > 0, got {gamma!r}")
    return g


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_int(owner: str, name: str, value: Any, minimum: int) -> int:
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{owner}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_nonneg(owner: str, name: str, value: Any) -> float:
    out = check_real(name, value, owner)
    if out < 0:
        raise ValueError(f"{owner}: {name} must be >= 0, got {value!r}")
    return out


def _check_choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{owner}: {name} must be one of {', '.join(map(repr, choices))}, "
                         f"got {value!r}")
    return value


def _check_flag(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{owner}: {name} must be True or False, got {value!r}")
    return value


def _check_momentum(owner: str, name: str, value: Any) -> float:
    out = check_real(name, value, owner)
    if not 0.0 <= out < 1.0:
        raise ValueError(f"{owner}: {name} must lie in [0, 1), got {value!r}")
    return out


def _per_group(owner: str, name: str, value: Any, n: int, check: Any) -> list[float]:
    """``value`` (a number, or a list/tuple of one per parameter group) as n checked floats."""
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{owner}: {name} must be a number or a list of {n} (one per "
                             f"parameter group), got a list of {len(value)}")
        return [check(owner, f"{name}[{i}]", v) for i, v in enumerate(value)]
    one = check(owner, name, value)
    return [one] * n


def _check_optimizer(owner: str, optimizer: Any) -> None:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{owner}: expected an nnx optimizer, got {type(optimizer).__name__}")


def _check_lr_list(where: str, name: str, raw: Any, n: int) -> list[float]:
    """A list of n finite floats >= 0 (base_lrs, last_lr in a state); ValueError otherwise."""
    if not isinstance(raw, (list, tuple)) or len(raw) != n:
        got = f"a list of {len(raw)}" if isinstance(raw, (list, tuple)) else repr(raw)
        raise ValueError(f"{where}: {name} must be a list of {n} number(s), got {got}")
    out = []
    for i, v in enumerate(raw):
        lr = check_real(f"{name}[{i}]", v, where)
        if lr < 0:
            raise ValueError(f"{where}: {name}[{i}] must be >= 0, got {v!r}")
        out.append(lr)
    return out


class LRScheduler:
    """Base class: ``last_epoch``, ``base_lrs``, ``step()``, ``get_last_lr()``, state.

    Construction sets t = 0 and each group's lr to its value at t = 0, as PyTorch does.
    A learning rate that leaves the float range (γ^k overflows, e.g. gamma=1e200, or
    lr₀·γ^k is inf) raises ValueError naming the scheduler, gamma and the step;
    the scheduler and the optimizer are then left as they were.

    Subclasses define ``factor(t)`` (closed forms: lr(t) = lr₀·factor(t)) or override
    ``_compute`` (recursions from the groups' current learning rates) and ``config()``.
    """

    #: Whether ``step`` takes the monitored metric (ReduceLROnPlateau: ``step(metrics)``).
    needs_metric: bool = False
    #: Whether the values depend on the previous ones (the state then carries "last_lr").
    _recursive: bool = False

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1) -> None:
        name = type(self).__name__
        _check_optimizer(name, optimizer)
        if not _is_int(last_epoch) or last_epoch != -1:
            raise ValueError(f"{name}: only last_epoch=-1 is supported, got "
                             f"{last_epoch!r}; resume with load_state_dict")
        self.optimizer = optimizer
        self.base_lrs = self._initial_lrs()
        self.last_epoch = -1
        self._last_lr = self._group_lrs()
        self._serial = next(_SERIAL)
        self.step()

    # -- values -----------------------------------------------------------
    def _initial_lrs(self) -> list[float]:
        """lr₀ of each group: its lr when the scheduler is built."""
        return self._group_lrs()

    def _group_lrs(self) -> list[float]:
        return [float(g["lr"]) for g in self.optimizer.param_groups]

    def factor(self, t: int) -> float:
        """lr(t) / lr₀ (closed-form schedules)."""
        raise NotImplementedError

    def _exponent(self, t: int) -> int | None:
        """k in factor(t) = γ^k, for error messages (None if the schedule has no such k)."""
        return None

    def lr_at(self, t: int) -> float:
        """The closed-form learning rate of the first group at step t (ValueError if it is
        not a finite float)."""
        return self._closed_form(t)[0]

    def _closed_form(self, t: int) -> list[float]:
        """Each group's learning rate at step t from ``base_lrs`` alone."""
        return [self._lr(lr0, t) for lr0 in self.base_lrs]

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

    def _compute(self, t: int, current: list[float]) -> tuple[list[float], list[float] | None]:
        """(each group's lr at step t, each group's momentum or None), given the groups'
        current learning rates; raises ValueError and changes nothing when there is none."""
        return self._closed_form(t), None

    def _checked_lrs(self, lrs: list[float], t: int) -> list[float]:
        for i, lr in enumerate(lrs):
            if not (math.isfinite(lr) and lr >= 0):
                raise ValueError(f"{type(self).__name__}: the learning rate of parameter group "
                                 f"{i} at step {t} is {lr!r}, not a finite number >= 0")
        return lrs

    def _commit(self, t: int, lrs: list[float], momenta: list[float] | None = None) -> None:
        self.last_epoch = t
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
        self._last_lr = list(lrs)

    def step(self) -> None:
        """Advance t by one and set every group's learning rate.

        Raises ValueError (changing nothing) when the learning rate would overflow.
        """
        t = self.last_epoch + 1
        lrs, momenta = self._compute(t, self._group_lrs())
        self._commit(t, lrs, momenta)

    def get_last_lr(self) -> list[float]:
        """The learning rates set by the last ``step()``, one per parameter group."""
        return list(self._last_lr)

    # -- state ------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """{"type", "last_epoch", "base_lrs", <config>} (and "last_lr" for the recursive
        schedules): JSON-able."""
        out = {"type": type(self).__name__, "last_epoch": self.last_epoch,
               "base_lrs": list(self.base_lrs), **self.config()}
        if self._recursive:
            out["last_lr"] = list(self._last_lr)
        return out

    def _checked_state(self, state: Mapping[str, Any], *, _unstarted_ok: bool = False
                       ) -> dict[str, Any]:
        """Validate ``state`` as :meth:`load_state_dict` does, changing nothing.

        Returns what :meth:`load_state_dict` applies ("last_epoch", "base_lrs", "lrs", ...);
        raises ValueError naming this class and the offending entry.
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
        for key in ("last_epoch", "base_lrs", *self._state_keys()):
            if key not in state:
                raise ValueError(f"{where}: the state has no {key!r}")
        last_epoch = state["last_epoch"]
        lowest = -1 if _unstarted_ok else 0
        if not _is_int(last_epoch) or last_epoch < lowest:
            raise ValueError(f"{where}: last_epoch must be an int >= {lowest}, got {last_epoch!r}")
        base_lrs = _check_lr_list(where, "base_lrs", state["base_lrs"], len(self.base_lrs))
        t = int(last_epoch)
        try:
            extra = self._checked_position(state, base_lrs, t, where)
        except ValueError as exc:
            msg = str(exc)
            if not msg.startswith(where):
                msg = f"{where}: {msg.removeprefix(f'{type(self).__name__}: ')}"
            raise ValueError(msg) from None
        return {"last_epoch": t, "base_lrs": base_lrs, **extra}

    def _state_keys(self) -> tuple[str, ...]:
        """Keys the state must have besides type, last_epoch, base_lrs and the config."""
        return ("last_lr",) if self._recursive else ()

    def _checked_position(self, state: Mapping[str, Any], base_lrs: list[float], t: int,
                          where: str) -> dict[str, Any]:
        """{"lrs": each group's lr at t (None before the first step)} for this state."""
        if self._recursive:
            return {"lrs": _check_lr_list(where, "last_lr", state["last_lr"], len(self.base_lrs))}
        if t < 0:
            return {"lrs": None}
        saved, self.base_lrs = self.base_lrs, base_lrs
        try:
            return {"lrs": self._closed_form(t)}
        finally:
            self.base_lrs = saved

    def _apply(self, plan: Mapping[str, Any], *, set_optimizer: bool = True) -> None:
        self.base_lrs = list(plan["base_lrs"])
        self.last_epoch = plan["last_epoch"]
        if plan["lrs"] is not None:
            self._last_lr = list(plan["lrs"])
            if set_optimizer:
                for group, lr in zip(self.optimizer.param_groups, plan["lrs"], strict=True):
                    group["lr"] = lr

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore t and lr₀ and set the groups' learning rates for that t.

        Validates first (type, config, ``last_epoch`` an int >= 0, ``base_lrs``
        finite numbers >= 0, one per group, a finite learning rate at t); on a ValueError
        nothing changes.
        """
        self._apply(self._checked_state(state))

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


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing without restarts, with PyTorch's recursion and values::

        lr(0) = the group's lr (lr₀)
        lr(t) = lr(t−1) + (lr₀ − η_min)·(1 − cos(π/T_max))/2               if (t−1−T_max) mod 2T_max = 0
        lr(t) = η_min + (lr(t−1) − η_min)·(1 + cos(πt/T_max))/(1 + cos(π(t−1)/T_max))   otherwise

    which follows the closed form lr(t) = η_min + (lr₀ − η_min)·(1 + cos(πt/T_max))/2
    (period 2·T_max: after T_max the lr rises back towards lr₀). The values are PyTorch's
    (bit for bit), which differ from the closed form in two ways: by rounding that
    accumulates with t (up to about 1e-13 relative over 300 steps through 40 periods of
    T_max=7), and because each step continues from the group's *current* lr, so a
    learning rate changed from outside between steps carries on (PyTorch's chainable
    form). At a SequentialLR milestone the schedule restarts from the closed form at
    t = 0, as PyTorch's does. The state carries the last learning rates ("last_lr").

    Raises ValueError for T_max not an int >= 1 and eta_min not a finite number >= 0.
    """

    _recursive = True

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0,
                 last_epoch: int = -1) -> None:
        name = type(self).__name__
        self.T_max = _check_int(name, "T_max", T_max, 1)
        self.eta_min = _check_nonneg(name, "eta_min", eta_min)
        super().__init__(optimizer, last_epoch)

    def _closed_form(self, t: int) -> list[float]:
        return [self.eta_min + (lr0 - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2
                for lr0 in self.base_lrs]

    def _compute(self, t: int, current: list[float]) -> tuple[list[float], None]:
        eta_min, T = self.eta_min, self.T_max
        if t == 0:
            lrs = list(current)
        elif (t - 1 - T) % (2 * T) == 0:
            lrs = [lr + (lr0 - eta_min) * (1 - math.cos(math.pi / T)) / 2
                   for lr0, lr in zip(self.base_lrs, current, strict=True)]
        else:
            lrs = [(1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
                   * (lr - eta_min) + eta_min for lr in current]
        return self._checked_lrs(lrs, t), None

    def config(self) -> dict[str, Any]:
        return {"T_max": self.T_max, "eta_min": self.eta_min}


class LinearLR(LRScheduler):
    """Linear warm-up (or decay) of a factor, with PyTorch's recursion and values::

        lr(0) = lr₀·s
        lr(t) = lr(t−1)·(1 + (e − s)/(T·s + (t − 1)·(e − s)))      for 1 <= t <= T
        lr(t) = lr(t−1)                                              for t > T

    (s = start_factor, e = end_factor, T = total_iters), which follows the closed form
    lr(t) = lr₀·(s + (e − s)·min(t, T)/T). The values are PyTorch's: they differ from the
    closed form by rounding (a few ulps), and each step continues from the group's current
    lr (a learning rate changed from outside carries on). At a SequentialLR milestone the
    schedule restarts from the closed form at t = 0, as PyTorch's does. The state carries
    the last learning rates ("last_lr").

    Raises ValueError for start_factor outside (0, 1], end_factor outside [0, 1] (as
    PyTorch) and total_iters not an int >= 1.
    """

    _recursive = True

    def __init__(self, optimizer: Optimizer, start_factor: float = 1.0 / 3,
                 end_factor: float = 1.0, total_iters: int = 5, last_epoch: int = -1) -> None:
        name = type(self).__name__
        s = check_real("start_factor", start_factor, name)
        if not 0.0 < s <= 1.0:
            raise ValueError(f"{name}: start_factor must lie in (0, 1], got {start_factor!r}")
        e = check_real("end_factor", end_factor, name)
        if not 0.0 <= e <= 1.0:
            raise ValueError(f"{name}: end_factor must lie in [0, 1], got {end_factor!r}")
        self.start_factor, self.end_factor = s, e
        self.total_iters = _check_int(name, "total_iters", total_iters, 1)
        super().__init__(optimizer, last_epoch)

    def _closed_form(self, t: int) -> list[float]:
        s, e, T = self.start_factor, self.end_factor, self.total_iters
        return [lr0 * (s + (e - s) * min(T, t) / T) for lr0 in self.base_lrs]

    def _compute(self, t: int, current: list[float]) -> tuple[list[float], None]:
        s, e, T = self.start_factor, self.end_factor, self.total_iters
        if t == 0:
            lrs = [lr * s for lr in current]
        elif t > T:
            lrs = list(current)
        else:
            lrs = [lr * (1.0 + (e - s) / (T * s + (t - 1) * (e - s))) for lr in current]
        return self._checked_lrs(lrs, t), None

    def config(self) -> dict[str, Any]:
        return {"start_factor": self.start_factor, "end_factor": self.end_factor,
                "total_iters": self.total_iters}


class OneCycleLR(LRScheduler):
    """The 1cycle policy (PyTorch's phases, closed form in t).

    Per group, with lr_i = max_lr/div_factor (``base_lrs``), lr_min = lr_i/final_div_factor
    and N = total_steps, t runs through phases that each anneal from a start to an end
    value, pct = (t − start)/(end − start), by
    ``cos``: end + (start − end)/2·(1 + cos(π·pct)) or ``linear``: (end − start)·pct + start:

    - two phases: lr_i → max_lr over t ∈ [0, pct_start·N − 1], then max_lr → lr_min up to
      t = N − 1;
    - ``three_phase``: lr_i → max_lr up to pct_start·N − 1, max_lr → lr_i up to
      2·pct_start·N − 2, then lr_i → lr_min up to N − 1.

    With ``cycle_momentum`` the momentum runs inversely (max_momentum → base_momentum →
    max_momentum; three phases: max → base → max → max) in each group's ``"momentum"``
    (SGD, RMSprop) or β₁ of ``"betas"`` (Adam, AdamW), set at construction and at every
    step, as PyTorch does; an optimizer with neither (MomentGD's ``mu``) is refused.
    t = N is allowed (PyTorch extrapolates the last phase there; with ``linear`` that
    gives a negative lr, which nnx refuses with a ValueError where PyTorch sets it);
    stepping past it is a ValueError ("tried to step N+1 times"), as in PyTorch. The
    values and momenta are PyTorch's bit for bit. The group's lr at construction
    is not used. ``max_lr``, ``base_momentum`` and ``max_momentum`` take a number or a
    list with one value per group.

    Raises ValueError for max_lr < 0, total_steps (or epochs, steps_per_epoch) not ints
    >= 1, pct_start outside [0, 1], anneal_strategy not "cos"/"linear", div_factor or
    final_div_factor <= 0, momenta outside [0, 1), non-bool flags, a list of the wrong
    length, and a step that falls in an empty last phase (where PyTorch divides by zero).
    """

    def __init__(self, optimizer: Optimizer, max_lr: float | Sequence[float],
                 total_steps: int | None = None, epochs: int | None = None,
                 steps_per_epoch: int | None = None, pct_start: float = 0.3,
                 anneal_strategy: str = "cos", cycle_momentum: bool = True,
                 base_momentum: float | Sequence[float] = 0.85,
                 max_momentum: float | Sequence[float] = 0.95, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False,
                 last_epoch: int = -1) -> None:
        name = type(self).__name__
        _check_optimizer(name, optimizer)
        n = len(optimizer.param_groups)
        if total_steps is not None:
            self.total_steps = _check_int(name, "total_steps", total_steps, 1)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = (_check_int(name, "epochs", epochs, 1)
                                * _check_int(name, "steps_per_epoch", steps_per_epoch, 1))
        else:
            raise ValueError(f"{name}: give total_steps, or epochs and steps_per_epoch")
        pct = check_real("pct_start", pct_start, name)
        if not 0.0 <= pct <= 1.0:
            raise ValueError(f"{name}: pct_start must lie in [0, 1], got {pct_start!r}")
        self.pct_start = pct
        self.anneal_strategy = _check_choice(name, "anneal_strategy", anneal_strategy,
                                             ("cos", "linear"))
        self.cycle_momentum = _check_flag(name, "cycle_momentum", cycle_momentum)
        self.three_phase = _check_flag(name, "three_phase", three_phase)
        self.max_lr = _per_group(name, "max_lr", max_lr, n, _check_nonneg)
        self.base_momentum = _per_group(name, "base_momentum", base_momentum, n, _check_momentum)
        self.max_momentum = _per_group(name, "max_momentum", max_momentum, n, _check_momentum)
        for arg, value in (("div_factor", div_factor), ("final_div_factor", final_div_factor)):
            if not check_real(arg, value, name) > 0:
                raise ValueError(f"{name}: {arg} must be > 0, got {value!r}")
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)
        defaults = optimizer.defaults
        if self.cycle_momentum and "momentum" not in defaults and "betas" not in defaults:
            raise ValueError(f"{name}: cycle_momentum=True needs an optimizer with a 'momentum' "
                             f"or 'betas' hyperparameter; {type(optimizer).__name__} has "
                             "neither (pass cycle_momentum=False)")
        self.use_beta1 = "betas" in defaults
        total = self.total_steps
        if self.three_phase:
            self._phases = [
                (float(pct * total) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (float(2 * pct * total) - 2, "max_lr", "initial_lr", "base_momentum",
                 "max_momentum"),
                (total - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
            ]
        else:
            self._phases = [
                (float(pct * total) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                (total - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"),
            ]
        self._groups = []
        for i in range(n):
            initial = self.max_lr[i] / self.div_factor
            self._groups.append({"initial_lr": initial, "max_lr": self.max_lr[i],
                                 "min_lr": initial / self.final_div_factor,
                                 "max_momentum": self.max_momentum[i],
                                 "base_momentum": self.base_momentum[i]})
        super().__init__(optimizer, last_epoch)

    def _initial_lrs(self) -> list[float]:
        return [g["initial_lr"] for g in self._groups]

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            cos_out = math.cos(math.pi * pct) + 1
            return end + (start - end) / 2.0 * cos_out
        return (end - start) * pct + start

    def _compute(self, t: int, current: list[float] | None = None
                 ) -> tuple[list[float], list[float] | None]:
        name = type(self).__name__
        if t > self.total_steps:
            raise ValueError(f"{name}: tried to step {t} times; total_steps is {self.total_steps}")
        lrs, momenta = [], []
        for values in self._groups:
            start_step = 0.0
            for i, (end_step, lr_a, lr_b, m_a, m_b) in enumerate(self._phases):
                if t <= end_step or i == len(self._phases) - 1:
                    if end_step == start_step:
                        raise ValueError(f"{name}: step {t} falls in an empty last phase "
                                         f"(pct_start {self.pct_start!r}, total_steps "
                                         f"{self.total_steps}, three_phase {self.three_phase})")
                    pct = (t - start_step) / (end_step - start_step)
                    lrs.append(self._anneal(values[lr_a], values[lr_b], pct))
                    momenta.append(self._anneal(values[m_a], values[m_b], pct))
                    break
                start_step = end_step
        return self._checked_lrs(lrs, t), (momenta if self.cycle_momentum else None)

    def _closed_form(self, t: int) -> list[float]:
        return self._compute(t)[0]

    def _set_momenta(self, momenta: list[float] | None) -> None:
        if momenta is None:
            return
        for group, m in zip(self.optimizer.param_groups, momenta, strict=True):
            if self.use_beta1:
                group["betas"] = (m, *group["betas"][1:])
            else:
                group["momentum"] = m

    def _commit(self, t: int, lrs: list[float], momenta: list[float] | None = None) -> None:
        super()._commit(t, lrs)
        self._set_momenta(momenta)

    def _checked_position(self, state: Mapping[str, Any], base_lrs: list[float], t: int,
                          where: str) -> dict[str, Any]:
        if base_lrs != self.base_lrs:
            raise ValueError(f"{where}: base_lrs is {base_lrs!r} in the state but max_lr / "
                             f"div_factor is {self.base_lrs!r} here")
        lrs, momenta = self._compute(t)
        return {"lrs": lrs, "momenta": momenta}

    def _apply(self, plan: Mapping[str, Any], *, set_optimizer: bool = True) -> None:
        super()._apply(plan, set_optimizer=set_optimizer)
        if set_optimizer:
            self._set_momenta(plan["momenta"])

    def config(self) -> dict[str, Any]:
        return {"max_lr": list(self.max_lr), "total_steps": self.total_steps,
                "pct_start": self.pct_start, "anneal_strategy": self.anneal_strategy,
                "cycle_momentum": self.cycle_momentum, "base_momentum": list(self.base_momentum),
                "max_momentum": list(self.max_momentum), "div_factor": self.div_factor,
                "final_div_factor": self.final_div_factor, "three_phase": self.three_phase}


class SequentialLR(LRScheduler):
    """Runs ``schedulers[i]`` from ``milestones[i−1]`` on (PyTorch's SequentialLR)::

        t < m₀: schedulers[0] at t;  m_{i−1} <= t < m_i: schedulers[i] at t − m_{i−1}

    As PyTorch: construction puts every group back to its initial lr and starts the
    scheduler for t = 0 from there; at milestone m_{i−1} scheduler i restarts from its
    closed form at t = 0 (lr₀·factor(0); LinearLR lr₀·start_factor, CosineAnnealingLR
    η_min + (lr₀ − η_min)), and its recursive steps continue from there. The initial
    lrs — ``base_lrs`` of every scheduler in the sequence — are those of the scheduler
    built first, which in PyTorch is ``group["initial_lr"]``, set by the first scheduler
    built on the optimizer (the same whenever the sequence's schedulers are the first
    ones built on it). ``get_last_lr()`` is the running scheduler's.

    The schedulers must drive this optimizer and be freshly built (t = 0); they may be
    StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR or LinearLR (PyTorch refuses
    ReduceLROnPlateau; nnx also refuses OneCycleLR, which sets its own initial lrs, and a
    nested SequentialLR). ``milestones`` are ints >= 0, sorted, one fewer than the
    schedulers. The state carries each scheduler's state ("schedulers").
    """

    def __init__(self, optimizer: Optimizer, schedulers: Sequence[LRScheduler],
                 milestones: Sequence[int], last_epoch: int = -1) -> None:
        name = type(self).__name__
        _check_optimizer(name, optimizer)
        if not _is_int(last_epoch) or last_epoch != -1:
            raise ValueError(f"{name}: only last_epoch=-1 is supported, got "
                             f"{last_epoch!r}; resume with load_state_dict")
        scheds = list(schedulers)
        if not scheds:
            raise ValueError(f"{name}: schedulers must hold at least one scheduler, got none")
        for i, s in enumerate(scheds):
            if not isinstance(s, LRScheduler):
                raise TypeError(f"{name}: schedulers[{i}] is a {type(s).__name__}, not an nnx "
                                "scheduler")
            if isinstance(s, (ReduceLROnPlateau, OneCycleLR, SequentialLR)):
                raise ValueError(f"{name}: schedulers[{i}] is a {type(s).__name__}; a sequence "
                                 "takes StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR "
                                 "or LinearLR")
            if s.optimizer is not optimizer:
                raise ValueError(f"{name}: schedulers[{i}] ({type(s).__name__}) drives another "
                                 "optimizer than this one")
            if s.last_epoch != 0:
                raise ValueError(f"{name}: schedulers[{i}] ({type(s).__name__}) has been "
                                 f"stepped (last_epoch {s.last_epoch}); pass freshly built "
                                 "schedulers")
            if any(s is other for other in scheds[:i]):
                raise ValueError(f"{name}: schedulers[{i}] is listed twice")
        ms = list(milestones)
        if any(not _is_int(m) for m in ms):
            raise ValueError(f"{name}: milestones must be ints, got {milestones!r}")
        if any(m < 0 for m in ms) or ms != sorted(ms):
            raise ValueError(f"{name}: milestones must be sorted ints >= 0, got {milestones!r}")
        if len(ms) != len(scheds) - 1:
            raise ValueError(f"{name}: milestones must number one fewer than the schedulers "
                             f"({len(scheds)}), got {len(ms)}")
        initial = list(min(scheds, key=lambda s: s._serial).base_lrs)
        first = scheds[bisect.bisect_right(ms, 0)]
        saved = [s.base_lrs for s in scheds]
        for s in scheds:
            s.base_lrs = list(initial)
        try:
            lrs, _ = first._compute(0, list(initial))
        except ValueError:
            for s, b in zip(scheds, saved):
                s.base_lrs = b
            raise
        for s in scheds:
            s.last_epoch = -1
        first._commit(0, lrs)
        self.optimizer = optimizer
        self.schedulers = scheds
        self.milestones = [int(m) for m in ms]
        self.base_lrs = initial
        self.last_epoch = 0
        self._last_lr = first.get_last_lr()
        self._serial = next(_SERIAL)

    def step(self) -> None:
        """Advance t; restart the next scheduler at its milestone, else step the running one."""
        t = self.last_epoch + 1
        idx = bisect.bisect_right(self.milestones, t)
        sched = self.schedulers[idx]
        if idx > 0 and self.milestones[idx - 1] == t:
            sched._commit(0, sched._closed_form(0))
        else:
            sched.step()
        self.last_epoch = t
        self._last_lr = sched.get_last_lr()

    def config(self) -> dict[str, Any]:
        return {"milestones": list(self.milestones)}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "schedulers": [s.state_dict() for s in self.schedulers]}

    def _state_keys(self) -> tuple[str, ...]:
        return ("schedulers",)

    def _checked_position(self, state: Mapping[str, Any], base_lrs: list[float], t: int,
                          where: str) -> dict[str, Any]:
        raw = state["schedulers"]
        if not isinstance(raw, (list, tuple)) or len(raw) != len(self.schedulers):
            got = f"a list of {len(raw)}" if isinstance(raw, (list, tuple)) else repr(raw)
            raise ValueError(f"{where}: schedulers must be a list of {len(self.schedulers)} "
                             f"states, got {got}")
        plans = []
        for i, (s, sub) in enumerate(zip(self.schedulers, raw)):
            try:
                plans.append(s._checked_state(sub, _unstarted_ok=True))
            except ValueError as exc:
                raise ValueError(f"{where}: schedulers[{i}]: {exc}") from None
        idx = bisect.bisect_right(self.milestones, t)
        local = t - (self.milestones[idx - 1] if idx > 0 else 0)
        if plans[idx]["last_epoch"] != local:
            raise ValueError(f"{where}: at step {t} schedulers[{idx}] should be at step {local}, "
                             f"but its state has last_epoch {plans[idx]['last_epoch']}")
        return {"lrs": plans[idx]["lrs"], "plans": plans}

    def _apply(self, plan: Mapping[str, Any], *, set_optimizer: bool = True) -> None:
        for s, sub in zip(self.schedulers, plan["plans"]):
            s._apply(sub, set_optimizer=False)
        super()._apply(plan, set_optimizer=set_optimizer)

    def __repr__(self) -> str:
        subs = ", ".join(repr(s) for s in self.schedulers)
        return f"SequentialLR([{subs}], milestones={self.milestones}, last_epoch={self.last_epoch})"


def _encode_best(best: float) -> float | str:
    """``best`` for a JSON state: a finite float, or "inf" / "-inf" (strict JSON has no ∞)."""
    return best if math.isfinite(best) else ("inf" if best > 0 else "-inf")


class ReduceLROnPlateau(LRScheduler):
    """Multiply each group's lr by ``factor`` when the metric stops improving (PyTorch's).

    Stepped once per epoch with the monitored metric: ``step(metrics)`` (``needs_metric``
    is True; ``mode`` says whether lower ("min", e.g. the validation loss) or higher
    ("max", e.g. the accuracy) is better). Per step, as PyTorch::

        better: a < best·(1 − threshold) ("min", "rel"), a < best − threshold ("min", "abs"),
                a > best·(1 + threshold) ("max", "rel"), a > best + threshold ("max", "abs")
        better → best = a, bad = 0; else bad += 1
        in cooldown (cooldown_counter > 0) → cooldown_counter −= 1, bad = 0
        bad > patience → lr ← max(lr·factor, min_lr) per group (only where this lowers lr
        by more than eps), cooldown_counter = cooldown, bad = 0

    The first metric is always an improvement (best starts at +∞ for "min", −∞ for "max").
    A NaN metric is never better (a bad epoch), as in PyTorch. Construction sets t = 0
    and leaves the learning rates alone; ``base_lrs`` are the groups' lrs then. ``min_lr``
    is a number or a list with one value per group (``min_lrs``). The state adds "best"
    (a number, or "inf" / "-inf"), "num_bad_epochs", "cooldown_counter" and "last_lr".

    Raises ValueError for mode not "min"/"max", threshold_mode not "rel"/"abs", factor
    outside [0, 1), patience or cooldown not ints >= 0, threshold < 0 (or >= 1 with
    "rel"), min_lr or eps < 0, a min_lr list of the wrong length, and a metric that is not
    a real number.
    """

    needs_metric = True

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                 cooldown: int = 0, min_lr: float | Sequence[float] = 0,
                 eps: float = 1e-8) -> None:
        name = type(self).__name__
        _check_optimizer(name, optimizer)
        self.mode = _check_choice(name, "mode", mode, ("min", "max"))
        self.threshold_mode = _check_choice(name, "threshold_mode", threshold_mode, ("rel", "abs"))
        f = check_real("factor", factor, name)
        if not 0.0 <= f < 1.0:
            raise ValueError(f"{name}: factor must lie in [0, 1), got {factor!r}")
        self.factor = f
        self.patience = _check_int(name, "patience", patience, 0)
        self.cooldown = _check_int(name, "cooldown", cooldown, 0)
        thr = _check_nonneg(name, "threshold", threshold)
        if self.threshold_mode == "rel" and thr >= 1.0:
            raise ValueError(f"{name}: threshold must be < 1 with threshold_mode 'rel', got "
                             f"{threshold!r}")
        self.threshold = thr
        self.min_lrs = _per_group(name, "min_lr", min_lr, len(optimizer.param_groups),
                                  _check_nonneg)
        self.eps = _check_nonneg(name, "eps", eps)
        self.optimizer = optimizer
        self.base_lrs = self._group_lrs()
        self.last_epoch = 0
        self._last_lr = self._group_lrs()
        self.best = self.mode_worse
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self._serial = next(_SERIAL)

    @property
    def mode_worse(self) -> float:
        return math.inf if self.mode == "min" else -math.inf

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _is_better(self, a: float, best: float) -> bool:
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    def step(self, metrics: Any) -> None:  # type: ignore[override]
        """Record one epoch's metric (a number or a 0-d array) and reduce the lr if it has
        not improved for more than ``patience`` epochs."""
        if isinstance(metrics, (bool, str, bytes)):
            raise ValueError(f"ReduceLROnPlateau: metrics must be a real number, got {metrics!r}")
        try:
            current = float(metrics)
        except (TypeError, ValueError):
            raise ValueError(f"ReduceLROnPlateau: metrics must be a real number (or a 0-d "
                             f"array), got a {type(metrics).__name__}") from None
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad epochs in cooldown are ignored
        if self.num_bad_epochs > self.patience:
            for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs, strict=True):
                old_lr = float(group["lr"])
                new_lr = max(old_lr * self.factor, min_lr)
                if old_lr - new_lr > self.eps:
                    group["lr"] = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self._group_lrs()

    def lr_at(self, t: int) -> float:
        raise NotImplementedError("ReduceLROnPlateau: the learning rate depends on the metrics")

    def config(self) -> dict[str, Any]:
        return {"mode": self.mode, "factor": self.factor, "patience": self.patience,
                "threshold": self.threshold, "threshold_mode": self.threshold_mode,
                "cooldown": self.cooldown, "min_lrs": list(self.min_lrs), "eps": self.eps}

    def state_dict(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "last_epoch": self.last_epoch,
                "base_lrs": list(self.base_lrs), **self.config(),
                "best": _encode_best(self.best), "num_bad_epochs": self.num_bad_epochs,
                "cooldown_counter": self.cooldown_counter, "last_lr": list(self._last_lr)}

    def _state_keys(self) -> tuple[str, ...]:
        return ("best", "num_bad_epochs", "cooldown_counter", "last_lr")

    def _checked_position(self, state: Mapping[str, Any], base_lrs: list[float], t: int,
                          where: str) -> dict[str, Any]:
        raw = state["best"]
        if raw in ("inf", "-inf"):
            best = float(raw)
        elif isinstance(raw, numbers.Real) and not isinstance(raw, bool) \
                and not math.isnan(float(raw)):
            best = float(raw)
        else:
            raise ValueError(f"{where}: best must be a number, 'inf' or '-inf', got {raw!r}")
        bad, cool = state["num_bad_epochs"], state["cooldown_counter"]
        if not _is_int(bad) or not 0 <= bad <= self.patience:
            raise ValueError(f"{where}: num_bad_epochs must be an int in [0, patience "
                             f"{self.patience}], got {bad!r}")
        if not _is_int(cool) or not 0 <= cool <= self.cooldown:
            raise ValueError(f"{where}: cooldown_counter must be an int in [0, cooldown "
                             f"{self.cooldown}], got {cool!r}")
        lrs = _check_lr_list(where, "last_lr", state["last_lr"], len(self.base_lrs))
        return {"lrs": lrs, "best": best, "num_bad_epochs": int(bad), "cooldown_counter": int(cool)}

    def _apply(self, plan: Mapping[str, Any], *, set_optimizer: bool = True) -> None:
        super()._apply(plan, set_optimizer=set_optimizer)
        self.best = plan["best"]
        self.num_bad_epochs = plan["num_bad_epochs"]
        self.cooldown_counter = plan["cooldown_counter"]


__all__ = ["CosineAnnealingLR", "ExponentialLR", "LRScheduler", "LinearLR", "MultiStepLR",
           "OneCycleLR", "ReduceLROnPlateau", "SequentialLR", "StepLR"]
