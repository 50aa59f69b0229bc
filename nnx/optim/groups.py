"""Parameter-group recipes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..module import Module, Parameter, as_parameter_list
from .optimizer import check_weight_decay


def weight_decay_groups(params: Module | Iterable[Parameter], weight_decay: float
                        ) -> list[dict[str, Any]]:
    """Two parameter groups, ``[{"params": decayed, "weight_decay": weight_decay},
    {"params": not_decayed, "weight_decay": 0.0}]``, for any optimizer::

        opt = nnx.optim.AdamW(nnx.optim.weight_decay_groups(model, 0.05), lr=1e-3)

    The rule, the common PyTorch recipe: a parameter with at most one dimension is not
    decayed (every bias, BatchNorm's weight and bias, any per-channel scale); matrices and
    kernels (Linear and Conv2d weights) are. Order within each group is ``params``'
    order; a group that would be empty is left out. A parameter's own ``weight_decay``
    (set by a layer) still wins over its group's, as everywhere in nnx.optim.

    Raises ValueError (naming this function) for weight_decay < 0, NaN, ±inf or a bool.
    """
    weight_decay = check_weight_decay(weight_decay, "weight_decay_groups")
    plist = as_parameter_list(params)
    decayed = [p for p in plist if len(p.shape) >= 2]
    rest = [p for p in plist if len(p.shape) < 2]
    groups = [{"params": decayed, "weight_decay": weight_decay},
              {"params": rest, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]
