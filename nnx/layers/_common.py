"""Argument and input checks shared by the layers."""

from __future__ import annotations

from typing import Any

from .._array import dtype_name, namespace_of, shape_str
from ..backend import resolve_backend
from ..backends import Backend
from ..module import Module, check_same_namespace

FLOAT_DTYPES = ("float32", "float64")


def pair(name: str, layer: str, value: Any, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints as a pair, each >= minimum (ValueError naming the argument)."""
    if isinstance(value, (int,)) and not isinstance(value, bool):
        out = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        out = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"{layer}: {name} must be an int or a pair of ints, got {value!r}")
    if min(out) < minimum:
        raise ValueError(f"{layer}: {name} must be >= {minimum}, got {value!r}")
    return out


def positive_int(name: str, layer: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{layer}: {name} must be a positive int, got {value!r}")
    return value


def check_dtype_arg(layer: str, dtype: str) -> str:
    if dtype not in FLOAT_DTYPES:
        raise ValueError(f"{layer}: dtype must be 'float32' or 'float64', got {dtype!r}")
    return dtype


def backend_arg(backend: str | Backend | None) -> Backend:
    return resolve_backend(backend)


def check_batch(layer: Module, x: Any) -> None:
    """ValueError naming the layer and the shape when the batch axis (axis 0) of ``x``
    is empty. Empty batches are refused throughout nnx (as by CrossEntropyLoss): the
    first layer that gets one says so."""
    if x.ndim and int(x.shape[0]) == 0:
        raise ValueError(f"{layer!r}: got an empty batch (input of shape {shape_str(x.shape)}); "
                         "a batch needs at least one sample")


def check_input(layer: Module, x: Any, ref: Any | None, ndim: int | tuple[int, ...],
                expected: str, batched: bool = True) -> Any:
    """Namespace of ``x`` after checking library/device (against parameter ``ref``),
    rank, a non-empty batch (axis 0, when ``batched``), and a floating dtype matching
    the parameters'."""
    if ref is not None:
        xp = check_same_namespace(layer, x, ref)
    else:
        try:
            xp = namespace_of(x)
        except TypeError:
            raise TypeError(f"{layer!r}: input must be an array, got {type(x).__name__}; "
                            "convert it with nnx.asarray(x)") from None
    ranks = (ndim,) if isinstance(ndim, int) else ndim
    if x.ndim not in ranks:
        raise ValueError(f"{layer!r}: expected input of shape {expected}, "
                         f"got shape {shape_str(x.shape)}")
    if batched:
        check_batch(layer, x)
    if ref is not None and x.dtype == ref.dtype:
        return xp  # parameters are always floating
    if not xp.isdtype(x.dtype, "real floating") or dtype_name(x.dtype) not in ("float32",
                                                                                 "float64"):
        raise TypeError(f"{layer!r}: input must be float32 or float64, got {dtype_name(x.dtype)} "
                        f"(shape {shape_str(x.shape)}); cast it, e.g. nnx.asarray(x, dtype='float32')")
    if ref is not None and x.dtype != ref.dtype:
        raise TypeError(f"{layer!r}: input dtype {dtype_name(x.dtype)} does not match the "
                        f"parameters' {dtype_name(ref.dtype)}; cast the input or use "
                        f"model.to(dtype={dtype_name(x.dtype)!r})")
    return xp


def check_grad_shape(layer: Module | str, grad_out: Any, expected: Any) -> None:
    """ValueError naming the layer (its repr, or the name given) when ``grad_out`` is not
    of the forward output's shape (a broadcastable wrong shape would otherwise give
    silently wrong gradients)."""
    if tuple(int(s) for s in grad_out.shape) != tuple(int(s) for s in expected):
        who = layer if isinstance(layer, str) else repr(layer)
        raise ValueError(f"{who}: backward got a gradient of shape "
                         f"{shape_str(grad_out.shape)}, expected the forward output's shape "
                         f"{shape_str(expected)}")


def missing_cache(layer: Module) -> RuntimeError:
    return RuntimeError(f"{layer!r}: backward() needs a forward() in training mode first "
                        "(eval mode keeps no activations)")
