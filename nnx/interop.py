"""Weights between nnx and PyTorch: ``to_torch_state_dict`` and ``load_torch_state_dict``.

    >>> import torch, nnx
    >>> from nnx.interop import load_torch_state_dict, to_torch_state_dict
    >>> model = nnx.models.LeNet5()
    >>> net = torch.nn.Sequential(                     # the same layers in the same order
    ...     torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
    ...     torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
    ...     torch.nn.Linear(400, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84), torch.nn.ReLU(),
    ...     torch.nn.Linear(84, 10))
    >>> net.load_state_dict(to_torch_state_dict(model))   # nnx -> PyTorch
    >>> load_torch_state_dict(model, net.state_dict())    # PyTorch -> nnx

Names are nnx's ``state_dict`` names (``"0.weight"``, ``"3.block.1.running_mean"``, ...),
which are the names of a ``torch.nn.Sequential`` built from the same layers in the same
order (a residual block as a module with attributes ``block`` and ``shortcut``). The one
layout difference is the Linear weight: nnx stores W as (in, out) (Y = XW + b), PyTorch
as (out, in) (Y = XWᵀ + b), so it is transposed both ways. Convolution weights (out, in,
kH, kW), biases and BatchNorm's ``weight``, ``bias``, ``running_mean``, ``running_var``
and ``num_batches_tracked`` are the same arrays under the same names.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from . import backends as _backends
from ._array import dtype_name, shape_str
from .layers import Linear
from .module import Buffer, Module, Parameter

_SHOW = 6  # names listed in an error before "... and N more"


def _named_modules(module: Module, prefix: str = "") -> Iterator[tuple[str, Module]]:
    """(dotted prefix, module) for ``module`` and every module inside it, depth first."""
    yield prefix, module
    for name, child in module.named_children():
        yield from _named_modules(child, f"{prefix}{name}.")


def _linear_weights(model: Module) -> set[str]:
    """The state_dict names of the Linear weights (stored transposed in PyTorch)."""
    return {f"{prefix}weight" for prefix, m in _named_modules(model)
            if isinstance(m, Linear)}


def _torch_order(model: Module, names: list[str]) -> list[str]:
    """``names`` in PyTorch's state_dict order: module by module, depth first, each
    module's parameters before its buffers (nnx lists all parameters first)."""
    wanted = set(names)
    order: dict[str, None] = {}  # an ordered set
    for prefix, m in _named_modules(model):
        for kind in (Parameter, Buffer):
            for attr, value in vars(m).items():
                if isinstance(value, kind) and prefix + attr in wanted:
                    order.setdefault(prefix + attr)
    return [*order, *(n for n in names if n not in order)]


def _list(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOW])
    return shown + (f" ... and {len(names) - _SHOW} more" if len(names) > _SHOW else "")


def to_torch_state_dict(model: Module) -> OrderedDict[str, Any]:
    """The model's weights and buffers as a PyTorch ``state_dict`` (name -> CPU tensor).

    Names are nnx's; Linear weights are transposed to PyTorch's (out, in); everything else
    is the same array. The tensors are copies (changing them leaves the model alone) and
    come from any backend. Load them with ``torch_module.load_state_dict(...)`` into a
    PyTorch module whose state_dict names are nnx's (see the module docstring), or save
    them with ``torch.save`` / ``safetensors.torch.save_file``. Needs PyTorch (ImportError
    with the install command otherwise).
    """
    if not isinstance(model, Module):
        raise TypeError(f"to_torch_state_dict: model must be an nnx Module, got "
                        f"{type(model).__name__}")
    try:
        import torch
    except ImportError:
        raise ImportError("to_torch_state_dict needs PyTorch: pip install 'nnx-array[torch]' "
                          "(or pip install torch)") from None
    linear = _linear_weights(model)
    state = model.state_dict()
    out: OrderedDict[str, Any] = OrderedDict()
    for name in _torch_order(model, list(state)):
        a = np.asarray(_backends.to_numpy(state[name]))
        if name in linear:
            a = a.T
        out[name] = torch.from_numpy(np.array(a, order="C", copy=True))
    return out


def _host_array(name: str, value: Any) -> np.ndarray:
    """A NumPy array from a torch tensor (any device), a NumPy array or another backend's
    array; ValueError naming the key for anything else."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor, without importing torch
        try:
            return value.detach().cpu().numpy()
        except TypeError as exc:  # bfloat16 and other dtypes NumPy lacks
            raise ValueError(f"load_torch_state_dict: {name!r} is a {value.dtype} tensor, which "
                             f"NumPy cannot hold; convert it first, e.g. .float() ({exc})") from None
    out = None
    if isinstance(value, (np.ndarray, np.generic, int, float)):
        out = np.asarray(value)
    elif not isinstance(value, (str, bytes)):
        try:
            out = np.asarray(_backends.to_numpy(value))
        except TypeError:
            out = None
    if out is None or out.dtype.kind not in "biuf":
        raise ValueError(f"load_torch_state_dict: {name!r} is a {type(value).__name__}"
                         f"{'' if out is None else f' of dtype {out.dtype}'}, not a tensor or "
                         "an array of numbers")
    return out


def load_torch_state_dict(model: Module, state_dict: Mapping[str, Any],
                          strict: bool = True) -> None:
    """Load a PyTorch ``state_dict`` (name -> tensor, on any device; NumPy arrays also do)
    into the nnx ``model``, on the model's backend and device.

    Names must be nnx's state_dict names (see the module docstring). Linear weights come
    in PyTorch's (out, in) layout and are transposed; floating tensors are cast to the
    model's dtype, as ``torch.nn.Module.load_state_dict`` does; integer buffers
    (``num_batches_tracked``) must stay integers. With ``strict`` (default) every
    parameter and buffer of the model must be given and no other key; without, missing
    ones keep their values and extra keys are ignored. Raises ValueError, in one line
    listing every problem found (missing, unexpected and mis-shaped keys, with the
    shape expected in PyTorch's layout); nothing is changed unless all checks pass.
    """
    where = "load_torch_state_dict"
    if not isinstance(model, Module):
        raise TypeError(f"{where}: model must be an nnx Module, got {type(model).__name__}")
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"{where}: state_dict must be a mapping of name -> tensor, got "
                        f"{type(state_dict).__name__}")
    targets = model.state_dict()
    linear = _linear_weights(model)
    problems: list[str] = []
    bad_names = [k for k in state_dict if not isinstance(k, str)]
    if bad_names:
        raise ValueError(f"{where}: keys must be str, got {bad_names[:_SHOW]!r}")
    missing = [k for k in targets if k not in state_dict]
    unexpected = [k for k in state_dict if k not in targets]
    if strict and missing:
        problems.append(f"missing keys: {_list(missing)}")
    if strict and unexpected:
        hint = ""
        if all(k.startswith("module.") for k in state_dict):
            hint = " (a DataParallel/DDP state_dict: strip the 'module.' prefix)"
        problems.append(f"unexpected keys: {_list(unexpected)}{hint}")
    converted: dict[str, Any] = {}
    for name, value in state_dict.items():
        if name not in targets:
            continue
        a = _host_array(name, value)
        want = tuple(int(s) for s in targets[name].shape)
        is_linear = name in linear
        torch_shape = tuple(reversed(want)) if is_linear else want
        if tuple(a.shape) != torch_shape:
            layout = f" (PyTorch's Linear layout (out, in) of nnx's {shape_str(want)})" \
                if is_linear else ""
            problems.append(f"{name}: shape {shape_str(a.shape)} in the state_dict, expected "
                            f"{shape_str(torch_shape)}{layout}")
            continue
        target_dtype = dtype_name(targets[name].dtype)
        if target_dtype.startswith("float"):
            if a.dtype.kind != "f":
                problems.append(f"{name}: dtype {a.dtype} in the state_dict, a floating dtype "
                                f"expected ({target_dtype} in the model)")
                continue
        elif a.dtype.kind not in "iu":
            problems.append(f"{name}: dtype {a.dtype} in the state_dict, an integer dtype "
                            f"expected ({target_dtype} in the model)")
            continue
        if is_linear:
            a = a.T
        converted[name] = np.array(a, dtype=target_dtype, order="C", copy=True)
    if problems:
        raise ValueError(f"{where} into {type(model).__name__}: " + "; ".join(problems))
    try:
        model.load_state_dict(converted, strict=False)
    except ValueError as exc:  # not expected after the checks above; keep it one line
        raise ValueError(f"{where}: {str(exc).splitlines()[0]}") from None


__all__ = ["load_torch_state_dict", "to_torch_state_dict"]
