"""Base class of the optimizers: parameter lists, weight decay, state."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

from .. import backends as _backends
from .._array import array_namespace, dtype_str
from ..module import Module, Parameter, as_parameter_list, backend_of


def check_real(name: str, value: Any, owner: str = "") -> float:
    """``value`` as a finite float: any real number (Python or NumPy scalar), not a bool.

    ValueError naming ``owner`` (a class name, optional) and the argument otherwise.
    """
    where = f"{owner}: " if owner else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{where}{name} must be a real number, got {value!r} "
                         f"({type(value).__name__})")
    try:
        out = float(value)
    except OverflowError:  # an int beyond the float range
        out = math.inf
    if not math.isfinite(out):
        raise ValueError(f"{where}{name} must be finite, got {value!r}")
    return out


def check_lr(lr: Any, owner: str = "") -> float:
    out = check_real("lr", lr, owner)
    if out < 0.0:
        raise ValueError(f"{owner + ': ' if owner else ''}lr must be >= 0, got {lr!r}")
    return out


def check_weight_decay(weight_decay: Any, owner: str = "") -> float:
    out = check_real("weight_decay", weight_decay, owner)
    if out < 0.0:
        raise ValueError(f"{owner + ': ' if owner else ''}weight_decay must be >= 0, "
                         f"got {weight_decay!r}")
    return out


def check_momentum(name: str, value: Any, owner: str = "") -> float:
    out = check_real(name, value, owner)
    if not 0.0 <= out < 1.0:
        raise ValueError(f"{owner + ': ' if owner else ''}{name} must lie in [0, 1), "
                         f"got {value!r}")
    return out


def _same_place(buf: Any, ref: Any) -> bool:
    """Whether ``buf`` is of ``ref``'s array type, dtype and device (run every step for
    every buffer: attribute reads and comparisons only)."""
    return (type(buf) is type(ref) and buf.dtype == ref.dtype
            and getattr(buf, "device", None) == getattr(ref, "device", None))


class Optimizer:
    """Shared machinery: the parameter list, ``lr``, decayed gradients and buffers.

    Weight decay is added to each gradient exactly once: a parameter's own
    ``weight_decay`` (set by a layer) wins; ``None`` there means the optimizer's.

    Hyperparameters (``lr``, ``weight_decay``, ``momentum``, ``mu``) accept any
    finite real number, NumPy scalars included (not bools, NaN or ±inf).

    Each momentum buffer lives where its parameter lives: when a parameter has moved
    (``model.to("torch")``, ``model.to(dtype="float64")``, another device) after the
    optimizer was built, ``step()`` first moves its buffer to the parameter's
    library, device and dtype.
    """

    def __init__(self, params: Module | Iterable[Parameter], lr: float,
                 weight_decay: float) -> None:
        name = type(self).__name__
        self.params = as_parameter_list(params)
        self.lr = check_lr(lr, name)
        self.weight_decay = check_weight_decay(weight_decay, name)
        self.buffers: list[Any] = [None] * len(self.params)
        self.step_count = 0

    def decay_of(self, p: Parameter) -> float:
        return self.weight_decay if p.weight_decay is None else p.weight_decay

    def decayed_grad(self, p: Parameter) -> Any:
        """g + λp (a new array; ``p.grad`` is left as backward wrote it)."""
        lam = self.decay_of(p)
        if lam == 0.0:
            return p.grad
        return p.grad + lam * p.data

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Apply one update to every parameter that has a gradient.

        A buffer whose parameter has moved to another library, device or dtype since
        the last step is moved (copied) there first.
        """
        lr = self.lr
        buffers = self.buffers
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            buf = buffers[i]
            if buf is not None and not _same_place(buf, p.data):
                buffers[i] = _backends.asarray(buf, backend_of(p.data), dtype=dtype_str(p.dtype),
                                               copy=True)
            xp = array_namespace(p.data, p.grad)
            buffers[i] = self._update(xp, p, i, lr)
        self.step_count += 1

    def _update(self, xp: Any, p: Parameter, i: int, lr: float) -> Any:
        raise NotImplementedError

    # -- state ------------------------------------------------------------
    def hyperparameters(self) -> dict[str, Any]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """{"type", "hyperparameters" (incl. current lr), "step_count", "buffers": {index: array}}."""
        return {
            "type": type(self).__name__,
            "hyperparameters": {"lr": self.lr, **self.hyperparameters()},
            "step_count": self.step_count,
            "buffers": {str(i): b for i, b in enumerate(self.buffers) if b is not None},
        }

    def _checked_state(self, state: Mapping[str, Any]
                       ) -> tuple[float, dict[str, Any], int, dict[int, Any]]:
        """Validate ``state`` as :meth:`load_state_dict` does, changing nothing.

        Returns (lr, hyperparameters, step_count, {parameter index: buffer as given});
        raises ValueError naming this class and the offending entry.
        """
        name = type(self).__name__
        where = f"{name}.load_state_dict"
        if not isinstance(state, Mapping):
            raise ValueError(f"{where}: state must be a dict, got {type(state).__name__}")
        if state.get("type") != name:
            raise ValueError(f"{where}: state is for {state.get('type')!r}")
        raw = state.get("buffers", {})
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: buffers must be a dict of index -> array, got "
                             f"{type(raw).__name__}")
        buffers: dict[int, Any] = {}
        for key, value in raw.items():
            try:
                i = int(key)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: buffer key {key!r} is not a parameter index") from None
            if not 0 <= i < len(self.params):
                raise ValueError(f"{where}: buffer {i} but only {len(self.params)} parameters")
            shape = getattr(value, "shape", None)
            if shape is None:
                raise ValueError(f"{where}: buffer {i} is a {type(value).__name__}, not an array")
            if tuple(int(s) for s in shape) != self.params[i].shape:
                raise ValueError(f"{where}: buffer {i} has shape {tuple(shape)}, parameter "
                                 f"has {self.params[i].shape}")
            buffers[i] = value
        hyper = state.get("hyperparameters", {})
        if not isinstance(hyper, Mapping):
            raise ValueError(f"{where}: hyperparameters must be a dict, got "
                             f"{type(hyper).__name__}")
        hyper = dict(hyper)
        try:
            lr = check_lr(hyper.pop("lr", self.lr))
            checked = self._check_hyperparameters(hyper)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        step_count = state.get("step_count", 0)
        if isinstance(step_count, bool) or not isinstance(step_count, numbers.Integral) \
                or step_count < 0:
            raise ValueError(f"{where}: step_count must be an int >= 0, got {step_count!r}")
        if step_count > 0 and self.keeps_buffers(checked):
            missing = [i for i in range(len(self.params)) if i not in buffers]
            if missing:
                raise ValueError(f"{where}: after {step_count} steps the state lacks the momentum "
                                 f"buffers of parameters {missing[:8]}; it cannot resume exactly")
        return lr, checked, int(step_count), buffers

    def keeps_buffers(self, hyperparameters: Mapping[str, Any]) -> bool:
        """Whether, with these hyperparameters, every step leaves a buffer per parameter."""
        return False

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore lr, hyperparameters, step count and momentum buffers (arrays of any
        backend are moved to each parameter's backend and device and cast to its dtype).

        Everything is validated first (as the constructor does: real numbers, not
        bools, NaN or ±inf); on a ValueError the optimizer is left unchanged.
        """
        lr, checked, step_count, raw = self._checked_state(state)
        buffers: list[Any] = [None] * len(self.params)
        for i, value in raw.items():
            p = self.params[i]
            # the parameter's backend, device and dtype (a float64 state may resume a
            # float32 model: a float64 buffer would fail or upcast in the in-place update)
            buffers[i] = _backends.asarray(value, backend_of(p.data), dtype=dtype_str(p.dtype),
                                           copy=True)
        self.lr = lr
        for key, value in checked.items():
            setattr(self, key, value)
        self.buffers = buffers
        self.step_count = step_count

    def _check_hyperparameters(self, hyper: dict[str, Any]) -> dict[str, Any]:
        """``hyper`` merged over the current hyperparameters, validated as the constructor."""
        current = self.hyperparameters()
        unknown = sorted(set(hyper) - set(current))
        if unknown:
            raise ValueError(f"unknown hyperparameters {', '.join(unknown)}")
        out = {**current, **hyper}
        for key, value in out.items():
            if key == "weight_decay":
                out[key] = check_weight_decay(value)
            elif key in ("momentum", "mu"):
                out[key] = check_momentum(key, value)
            elif key == "nesterov" and not isinstance(value, bool):
                raise ValueError(f"nesterov must be True or False, got {value!r}")
        if out.get("nesterov") and out.get("momentum", 0.0) == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")
        return out

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}(lr={self.lr}, {hp})"
