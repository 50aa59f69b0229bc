"""Collectives on models and metrics: gradient averaging, parameter broadcast, scalars.

All of them are no-ops (or identities) in a single-process world, so a training
loop written with them runs unchanged without MPI.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

from ..backends import mpi_transport as _mt
from ..module import Module, Parameter, as_parameter_list, backend_of
from ._world import World, get_world

logger = logging.getLogger("nnx")

DEFAULT_BUCKET_BYTES = _mt.DEFAULT_BUCKET_BYTES


def _named(params: Module | Iterable[Parameter]) -> list[tuple[str, Parameter]]:
    if isinstance(params, Module):
        named = list(params.named_parameters())
        if not named:
            raise ValueError(f"{type(params).__name__} has no parameters")
        return named
    return [(str(i), p) for i, p in enumerate(as_parameter_list(params))]


def _check_layout(world: World, named: Sequence[tuple[str, Parameter]], what: str) -> None:
    """Once per parameter layout: every rank must hold the same names, shapes and dtypes.

    A mismatch would silently mix unrelated numbers; instead every rank raises.
    """
    text = repr([(n, p.shape, _mt.dtype_name(p.dtype)) for n, p in named])
    digest = hashlib.sha1(text.encode()).hexdigest()
    if digest in world.checked_layouts:
        return
    digests = world.comm.allgather(digest)
    if len(set(digests)) != 1:
        odd = [r for r, d in enumerate(digests) if d != digests[0]]
        raise ValueError(f"nnx.distributed.{what}: the ranks' models differ (names, shapes or "
                         f"dtypes of rank(s) {odd} differ from rank 0's); build the same model "
                         "on every rank")
    world.checked_layouts.add(digest)


def _transport(world: World, sample: Any, path: str | None) -> _mt.Transport:
    """The transport for arrays like ``sample``; chosen (collectively) and logged once."""
    backend = backend_of(sample)
    forced = path or os.environ.get(_mt.PATH_ENV, "").strip() or None
    key = (backend.name, str(backend.device), forced)
    if key not in world.transports:
        infos = world.comm.allgather(_mt.local_info(world.mpi, backend))
        chosen, reason = _mt.choose_path(backend.name, infos, forced)
        world.transports[key] = _mt.make_transport(chosen, world.comm, world.mpi, backend)
        logger.info("nnx.distributed: %s arrays on %s use path %r: %s", backend.name,
                    backend.device, chosen, reason)
    return world.transports[key]


def _exchange(world: World, arrays: Sequence[Any], op: str, root: int, bucket_bytes: int,
              path: str | None) -> list[Any]:
    out: list[Any] = [None] * len(arrays)
    for indices in _mt.group_arrays(arrays):
        group = [arrays[i] for i in indices]
        transport = _transport(world, group[0], path)
        if op == "mean":
            result = _mt.reduce_mean(transport, group, bucket_bytes)
        else:
            result = _mt.broadcast(transport, group, root, bucket_bytes)
        for i, new in zip(indices, result):
            out[i] = new
    return out


def allreduce_gradients(model: Module | Iterable[Parameter], *,
                        bucket_bytes: int = DEFAULT_BUCKET_BYTES, path: str | None = None) -> None:
    """Replace every parameter's ``.grad`` by its average over all ranks.

    Call it after ``backward`` and before ``optimizer.step()``. Gradients are
    packed into contiguous buffers per (backend, device, dtype) of at most
    ``bucket_bytes`` each, and each buffer takes one collective call, so a model
    costs one call per dtype unless it is larger than a bucket. ``path``
    (``"host"``, ``"mpi-direct"``, ``"nccl"``; default: the ``NNX_DIST_PATH``
    environment variable, else automatic) chooses how the bytes travel.

    A no-op in a single-process world. Raises ValueError when a parameter has no
    gradient (call ``backward`` first) or when the ranks' models differ.
    """
    world = get_world()
    if world.size <= 1:
        return
    named = _named(model)
    missing = [n for n, p in named if p.grad is None]
    if missing:
        raise ValueError(f"nnx.distributed.allreduce_gradients: no gradient for "
                         f"{', '.join(missing)}; call backward() before averaging")
    _check_layout(world, named, "allreduce_gradients")
    grads = _exchange(world, [p.grad for _, p in named], "mean", 0, bucket_bytes, path)
    for (_, p), g in zip(named, grads):
        p.grad = g


def broadcast_parameters(model: Module | Iterable[Parameter], root: int = 0, *,
                         bucket_bytes: int = DEFAULT_BUCKET_BYTES, path: str | None = None) -> None:
    """Give every rank rank ``root``'s parameter values (call once before training).

    Bucketed like :func:`allreduce_gradients`; gradients are dropped. A no-op in
    a single-process world.
    """
    world = get_world()
    if world.size <= 1:
        return
    if not 0 <= root < world.size:
        raise ValueError(f"root must be a rank in [0, {world.size}), got {root}")
    named = _named(model)
    _check_layout(world, named, "broadcast_parameters")
    values = _exchange(world, [p.data for _, p in named], "bcast", root, bucket_bytes, path)
    for (_, p), v in zip(named, values):
        p.data = v
        p.grad = None


def broadcast_buffers(model: Module, root: int = 0, *,
                      bucket_bytes: int = DEFAULT_BUCKET_BYTES, path: str | None = None) -> None:
    """Give every rank rank ``root``'s buffers (BatchNorm's running statistics), as PyTorch's
    DistributedDataParallel does: each rank normalises with its own batch statistics while
    training, and all evaluate and save the same running statistics. A no-op in a
    single-process world or for a model without buffers."""
    world = get_world()
    named = list(model.named_buffers())
    if world.size <= 1 or not named:
        return
    if not 0 <= root < world.size:
        raise ValueError(f"root must be a rank in [0, {world.size}), got {root}")
    _check_layout(world, named, "broadcast_buffers")
    values = _exchange(world, [b.data for _, b in named], "bcast", root, bucket_bytes, path)
    for (_, b), v in zip(named, values):
        b.data = v


def _to_number(value: Any) -> tuple[float, bool]:
    """(float value, was-integer) for a Python number or a 0-d array of any backend."""
    if isinstance(value, bool | int):
        return float(value), True
    if isinstance(value, float):
        return value, False
    shape = getattr(value, "shape", None)
    if shape is None or tuple(shape) != ():
        raise TypeError(f"expected a number or a 0-d array, got {type(value).__name__}"
                        + (f" of shape {tuple(shape)}" if shape is not None else ""))
    is_int = "int" in _mt.dtype_name(value.dtype)
    return (float(int(value)) if is_int else float(value)), is_int


def allreduce_sum(value: Any) -> Any:
    """The sum over ranks of a number (or 0-d array), or of each item of a list/tuple.

    Returns Python numbers: ``int`` where the input was an integer, else
    ``float``; a list for a list/tuple input. One collective call however many
    items. In a single-process world the values come back as Python numbers.
    """
    many = isinstance(value, list | tuple)
    items = list(value) if many else [value]
    pairs = [_to_number(v) for v in items]
    world = get_world()
    floats = [f for f, _ in pairs]
    if world.size > 1:
        floats = _mt.allreduce_floats(world.comm, world.mpi, floats)
    out = [int(round(f)) if is_int else f for f, (_, is_int) in zip(floats, pairs)]
    return out if many else out[0]


def allreduce_mean(value: Any) -> Any:
    """The mean over ranks of a number (or of each item of a list/tuple), as floats.

    A mean of per-rank means equals the global mean only when every rank counted
    the same number of samples; for exact epoch metrics reduce sums and counts
    with :func:`allreduce_sum` and divide.
    """
    total = allreduce_sum(value)
    size = get_world().size
    if isinstance(total, list):
        return [t / size for t in total]
    return total / size


def broadcast_object(obj: Any, root: int = 0) -> Any:
    """Rank ``root``'s ``obj`` (any picklable Python object) on every rank."""
    world = get_world()
    if world.size <= 1:
        return obj
    return world.comm.bcast(obj, root=root)


def selected_paths() -> dict[str, str]:
    """Which path each backend's arrays took so far: ``{"numpy cpu": "host", ...}``.

    A path requested explicitly (``path=`` or ``NNX_DIST_PATH``) is listed under a
    key ending in ``(requested <path>)``.
    """
    out = {}
    for (name, device, forced), t in get_world().transports.items():
        out[f"{name} {device}" + (f" (requested {forced})" if forced else "")] = t.path
    return out
