"""Base class of the optimizers: parameter lists, weight decay, state."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import backends as _backends
from .._array import array_namespace, dtype_str
from ..module import Module, Parameter, as_parameter_list, backend_of


def check_lr(lr: Any) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr >= 0.0:
        raise ValueError(f"lr must be a number >= 0, got {lr!r}")
    return float(lr)


def check_weight_decay(weight_decay: Any) -> float:
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) \
            or not weight_decay >= 0.0:
        raise ValueError(f"weight_decay must be a number >= 0, got {weight_decay!r}")
    return float(weight_decay)


def check_momentum(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")
    return float(value)


class Optimizer:
    """Shared machinery: the parameter list, ``lr``, decayed gradients and buffers.

    Weight decay is added to each gradient exactly once: a parameter's own
    ``weight_decay`` (set by a layer) wins; ``None`` there means the optimizer's.
    """

    def __init__(self, params: Module | Iterable[Parameter], lr: float,
                 weight_decay: float) -> None:
        self.params = as_parameter_list(params)
        self.lr = check_lr(lr)
        self.weight_decay = check_weight_decay(weight_decay)
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
        """Apply one update to every parameter that has a gradient."""
        lr = self.lr
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            xp = array_namespace(p.data, p.grad)
            self.buffers[i] = self._update(xp, p, i, lr)
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

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore lr, hyperparameters, step count and momentum buffers (arrays of any
        backend are moved to each parameter's backend and device and cast to its dtype).

        Everything is validated first (as the constructor does); on a ValueError the
        optimizer is left unchanged.
        """
        name = type(self).__name__
        if state.get("type") != name:
            raise ValueError(f"{name}.load_state_dict: state is for {state.get('type')!r}")
        buffers: list[Any] = [None] * len(self.params)
        for key, value in state.get("buffers", {}).items():
            i = int(key)
            if not 0 <= i < len(self.params):
                raise ValueError(f"{name}.load_state_dict: buffer {i} but only "
                                 f"{len(self.params)} parameters")
            p = self.params[i]
            if tuple(int(s) for s in value.shape) != p.shape:
                raise ValueError(f"{name}.load_state_dict: buffer {i} has shape "
                                 f"{tuple(value.shape)}, parameter has {p.shape}")
            # the parameter's backend, device and dtype (a float64 state may resume a
            # float32 model: a float64 buffer would fail or upcast in the in-place update)
            buffers[i] = _backends.asarray(value, backend_of(p.data), dtype=dtype_str(p.dtype),
                                           copy=True)
        hyper = dict(state.get("hyperparameters", {}))
        try:
            lr = check_lr(hyper.pop("lr", self.lr))
            checked = self._check_hyperparameters(hyper)
        except ValueError as exc:
            raise ValueError(f"{name}.load_state_dict: {exc}") from None
        self.lr = lr
        for key, value in checked.items():
            setattr(self, key, value)
        self.buffers = buffers
        self.step_count = int(state.get("step_count", 0))

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
