"""Stochastic gradient descent, PyTorch's form."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._array import array_namespace
from ..module import Parameter
from .optimizer import FlatGroup, Optimizer, Params, check_momentum, check_weight_decay


class SGD(Optimizer):
    """SGD with optional momentum, Nesterov and L2 weight decay (PyTorch's update).

    With g = ∇ + λp (λ: the parameter's own ``weight_decay``, else this one's):

        b ← g on the first step, then b ← μ·b + g
        d = g + μ·b (Nesterov) or b (plain momentum) or g (μ = 0)
        p ← p − lr·d

    Hyperparameters are real numbers (Python or NumPy scalars). Raises ValueError
    naming the argument for a bool, NaN or ±inf, lr < 0, momentum outside [0, 1),
    weight_decay < 0 and nesterov without momentum.

    A group whose parameters all have gradients (and share one library, device and
    dtype) is updated at once (:class:`~nnx.optim.optimizer.FlatGroup`): its parameters
    and momentum buffers become views of one 1-D array each, so a step is the gradients'
    concatenation and six vector operations instead of six per parameter (each a kernel
    launch on a GPU). The arithmetic is the same, element by element; ``p.data`` and
    ``state[i]["momentum_buffer"]`` keep their shapes (they are views), and parameters
    rebound or moved since (``model.to``, ``load_state_dict``) are gathered again.
    """

    slots = ("momentum_buffer",)

    def __init__(self, params: Params, lr: float, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay,
                                  "nesterov": nesterov})
        self._flat: dict[int, FlatGroup] = {}  # by id of the group dict

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

    def _step_group(self, group: Mapping[str, Any]) -> None:
        params = group["params"]
        if len(params) < 2 or any(p.grad is None for p in params):
            super()._step_group(group)
            return
        states = [self._rehome(p) for p in params]
        mu = group["momentum"]
        slot = "momentum_buffer" if mu > 0.0 else None
        flat = self._flat.get(id(group))
        if flat is None or flat.slot != slot or not flat.matches(params, states):
            if not FlatGroup.usable(params, states, slot):
                self._flat.pop(id(group), None)
                super()._step_group(group)
                return
            flat = self._flat[id(group)] = FlatGroup(array_namespace(params[0].data), params,
                                                     states, slot)
        g = flat.add_decay(flat.grad(), tuple(self.decay_of(p, group) for p in params))
        lr = group["lr"]
        if slot is None:
            step = g
        else:
            buf = flat.state
            if buf is None:
                buf = g  # the first step: b = g (a new array, now the buffer)
            else:
                buf *= mu
                buf += g
            flat.set_slot(buf, states)
            step = g + mu * buf if group["nesterov"] else buf
        data = flat.data
        data -= lr * step
        flat.set_data(data)

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
            state["momentum_buffer"] = buf  # a new array where arrays are immutable
        step = g + mu * buf if group["nesterov"] else buf
        p.data -= lr * step
