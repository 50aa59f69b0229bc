"""Adam and AdamW, PyTorch's forms."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

from ..module import Parameter
from ._checks import check_betas, check_flag, check_nonnegative
from .optimizer import Optimizer, Params, check_weight_decay


class Adam(Optimizer):
    """Adam with PyTorch's update, L2 weight decay and optional AMSGrad.

    With g = ∇ + λp (λ: the parameter's own ``weight_decay``, else its group's) and t the
    number of steps this parameter has taken, this one included:

        m ← β₁·m + (1 − β₁)·g,   v ← β₂·v + (1 − β₂)·g²          (m, v start at 0)
        u = max(u, v) with amsgrad (u starts at 0), else u = v
        p ← p − lr/(1 − β₁ᵗ) · m / (√u / √(1 − β₂ᵗ) + ε)

    t counts per parameter, as PyTorch's ``state["step"]``: a step in which a parameter
    has no gradient neither moves it nor counts for its bias correction
    (``param_steps`` lists the counts; ``state_dict`` carries them). ``lr``, ``betas``,
    ``eps``, ``weight_decay`` and ``amsgrad`` are read from the parameter's group at every
    step, so a scheduler may change them (OneCycleLR cycles β₁).

    State per parameter: ``exp_avg`` (m, what ``buffers`` lists), ``exp_avg_sq`` (v) and,
    with amsgrad, ``max_exp_avg_sq`` (u), on the parameter's device and dtype.

    Raises ValueError naming the argument for lr < 0, betas not a pair of numbers in
    [0, 1), eps < 0, weight_decay < 0, amsgrad not a bool, and for bools, NaN or ±inf
    where numbers belong.
    """

    slots = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    #: AdamW: decay the parameter itself instead of adding λp to the gradient
    decoupled = False

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, amsgrad: bool = False) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps,
                                  "weight_decay": weight_decay, "amsgrad": amsgrad})
        #: steps taken by each parameter (its bias-correction t), in ``params`` order
        self.param_steps: list[int] = [0] * len(self.params)

    def _check_hyper(self, hyper: dict[str, Any], owner: str) -> dict[str, Any]:
        return {"betas": check_betas(hyper.get("betas"), owner),
                "eps": check_nonnegative("eps", hyper.get("eps"), owner),
                "weight_decay": check_weight_decay(hyper.get("weight_decay"), owner),
                "amsgrad": check_flag("amsgrad", hyper.get("amsgrad"), owner)}

    def required_slots(self, group: Mapping[str, Any]) -> tuple[str, ...]:
        return self.slots if group.get("amsgrad") else self.slots[:2]

    def _update(self, xp: Any, p: Parameter, state: dict[str, Any],
                group: Mapping[str, Any]) -> None:
        i = self._index[id(p)]
        self.param_steps[i] += 1
        t = self.param_steps[i]
        lr, eps = group["lr"], group["eps"]
        beta1, beta2 = group["betas"]
        if self.decoupled:
            lam = self.decay_of(p, group)
            if lam != 0.0:
                p.data *= 1.0 - lr * lam
            g = p.grad
        else:
            g = self.decayed_grad(p, group)
        m, v = state.get("exp_avg"), state.get("exp_avg_sq")
        if m is None:
            m = xp.zeros_like(p.data)
        if v is None:
            v = xp.zeros_like(p.data)
        m *= beta1
        m += (1.0 - beta1) * g
        v *= beta2
        v += (1.0 - beta2) * (g * g)
        # The same arrays where updates are in place; new ones on immutable arrays (JAX).
        state["exp_avg"], state["exp_avg_sq"] = m, v
        if group["amsgrad"]:
            u = state.get("max_exp_avg_sq")
            u = xp.asarray(v, copy=True) if u is None else xp.maximum(u, v)
            state["max_exp_avg_sq"] = u
        else:
            u = v
        denom = xp.sqrt(u)
        denom /= (1.0 - beta2 ** t) ** 0.5
        denom += eps
        step = m / denom
        step *= lr / (1.0 - beta1 ** t)
        p.data -= step

    # -- state: the per-parameter step counts travel with the arrays -------
    def state_dict(self) -> dict[str, Any]:
        """The base class's state dict with ``"param_steps"``: each parameter's step count."""
        return {**super().state_dict(), "param_steps": list(self.param_steps)}

    def _param_steps_of(self, state: Mapping[str, Any], step_count: int) -> list[int]:
        """``state["param_steps"]`` validated (ints in [0, step_count], one per parameter);
        a state without it (written by hand) means every parameter took every step."""
        raw = state.get("param_steps")
        if raw is None:
            return [step_count] * len(self.params)
        if not isinstance(raw, (list, tuple)) or len(raw) != len(self.params) or not all(
                isinstance(s, numbers.Integral) and not isinstance(s, bool) and 0 <= s <= step_count
                for s in raw):
            shown = repr(raw) if len(repr(raw)) <= 80 else repr(raw)[:77] + "..."
            raise ValueError(f"{type(self).__name__}.load_state_dict: param_steps must be a list "
                             f"of {len(self.params)} ints in [0, step_count={step_count}], got "
                             f"{shown}")
        return [int(s) for s in raw]

    def _checked_state(self, state: Mapping[str, Any]
                       ) -> tuple[list[dict[str, Any]], int, list[dict[str, Any]]]:
        checked = super()._checked_state(state)
        self._param_steps_of(state, checked[1])
        return checked

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """As the base class (everything validated before anything changes), and the
        per-parameter step counts."""
        super().load_state_dict(state)
        self.param_steps = self._param_steps_of(state, self.step_count)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), PyTorch's AdamW.

    Each step first shrinks the parameter, then takes :class:`Adam`'s step with the plain
    gradient g = ∇ (λ: the parameter's own ``weight_decay``, else its group's):

        p ← p·(1 − lr·λ)
        m ← β₁·m + (1 − β₁)·g,   v ← β₂·v + (1 − β₂)·g²,   u = max(u, v) or v
        p ← p − lr/(1 − β₁ᵗ) · m / (√u / √(1 − β₂ᵗ) + ε)

    Defaults as PyTorch's: ``weight_decay=1e-2``; state, step counts and validation as
    :class:`Adam`.
    """

    decoupled = True

    def __init__(self, params: Params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)
