"""The process world: launch detection, ``init``, rank and size, barrier, batch split.

mpi4py is imported only by :func:`init` and only when the process was started
by an MPI launcher (``mpiexec``/``mpirun``/``srun`` with PMI), so ``import nnx``
and single-process runs never touch MPI.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._env import env_flag

logger = logging.getLogger("nnx")

INSTALL_HINT = "pip install 'nnx-array[mpi]'"
FORCE_ENV = "NNX_DISTRIBUTED"
#: An explicit device for this process (``0``, ``cuda:1``): wins over the per-rank choice.
DEVICE_ENV = "NNX_DEVICE"
# Set by the common launchers in every process they start.
LAUNCH_VARS = (
    "PMI_RANK", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALRANKID", "MPI_LOCALNRANKS",
    "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE",
)
SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE", "MPI_LOCALNRANKS")


@dataclass
class World:
    """The state behind ``rank()``, ``world_size()`` and the collectives."""

    initialized: bool = False
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    blas_threads: int | None = None  # what init() set for this rank (None: left alone)
    comm: Any = None  # mpi4py communicator (COMM_WORLD) when size > 1 or MPI was used
    mpi: Any = None  # the mpi4py.MPI module
    transports: dict[Any, Any] = field(default_factory=dict)
    checked_layouts: set[str] = field(default_factory=set)


_WORLD = World()


class SingleProcessWorld:
    """A world of one process with the interface of :mod:`nnx.distributed`'s functions:
    rank 0 of 1, collectives that return their input and change nothing.

    :class:`nnx.Trainer` trains in it unless ``distributed=True``, even when an MPI
    launcher started the process (each process then trains alone), so the Trainer calls
    its collectives the same way in both cases. Nothing here touches MPI.
    """

    @staticmethod
    def rank() -> int:
        return 0

    @staticmethod
    def world_size() -> int:
        return 1

    @staticmethod
    def local_rank() -> int:
        return 0

    @staticmethod
    def is_main() -> bool:
        return True

    @staticmethod
    def is_distributed() -> bool:
        return False

    @staticmethod
    def barrier() -> None:
        """Nothing to wait for."""

    @staticmethod
    def allreduce_sum(value: Any) -> Any:
        """``value`` itself: the sum over one rank."""
        return value

    @staticmethod
    def allreduce_mean(value: Any) -> Any:
        """``value`` itself: the mean over one rank."""
        return value

    @staticmethod
    def allreduce_gradients(model: Any, **kwargs: Any) -> None:
        """The gradients are already the average over one rank."""

    @staticmethod
    def broadcast_parameters(model: Any, root: int = 0, **kwargs: Any) -> None:
        """Every rank already holds rank 0's parameters."""

    @staticmethod
    def broadcast_buffers(model: Any, root: int = 0, **kwargs: Any) -> None:
        """Every rank already holds rank 0's buffers."""

    @staticmethod
    def broadcast_object(obj: Any, root: int = 0) -> Any:
        """``obj`` itself."""
        return obj

    def __repr__(self) -> str:
        return "SingleProcessWorld()"


#: The one-process world the Trainer uses when it is not distributed.
SINGLE_PROCESS = SingleProcessWorld()


def launched_under_mpi(environ: Mapping[str, str] | None = None) -> bool:
    """True when an MPI launcher started this process.

    ``NNX_DISTRIBUTED=1`` forces True (launchers this does not recognise),
    ``NNX_DISTRIBUTED=0`` forces False (ignore MPI even under mpiexec); any other
    value than a yes/no word (:func:`nnx._env.env_flag`) is a ValueError.
    """
    environ = os.environ if environ is None else environ
    forced = env_flag(FORCE_ENV, environ=environ)
    if forced is not None:
        return forced
    return any(environ.get(k) for k in LAUNCH_VARS)


def launcher_world_size(environ: Mapping[str, str] | None = None) -> int | None:
    """The number of processes the launcher announced (a lower bound), or None."""
    environ = os.environ if environ is None else environ
    sizes = []
    for k in SIZE_VARS:
        try:
            sizes.append(int(environ[k]))
        except (KeyError, ValueError):
            continue
    return max(sizes) if sizes else None


def init(*, abort_on_error: bool = True) -> World:
    """Join the MPI world when launched under MPI; otherwise a one-process world.

    Idempotent (later calls return the same world). Under an MPI launcher this
    imports mpi4py, reads the rank and world size from ``MPI.COMM_WORLD`` and
    the rank within the node; ranks sharing a node split its cores (BLAS threads =
    usable cores ÷ ranks on the node, unless ``NNX_BLAS_THREADS`` or one of the BLAS
    libraries' own variables sets a count by hand); with ``abort_on_error`` and more than one rank it
    installs :func:`nnx.distributed.install_excepthook`, so an uncaught
    exception on any rank ends the whole job with that rank's message instead
    of leaving the others waiting in a collective.

    Raises RuntimeError when a launcher started several processes but mpi4py is
    missing (each would otherwise train alone and overwrite the others' files).
    """
    world = _WORLD
    if world.initialized:
        return world
    if launched_under_mpi():
        try:
            from mpi4py import MPI
        except ImportError as exc:
            size = launcher_world_size()
            if size is not None and size > 1:
                raise RuntimeError(
                    f"nnx.distributed: started by an MPI launcher with {size} processes but "
                    f"mpi4py cannot be imported ({exc}); install it with {INSTALL_HINT}"
                ) from None
            logger.warning("nnx.distributed: MPI launch detected but mpi4py is missing (%s); "
                           "running as a single process", exc)
        else:
            comm = MPI.COMM_WORLD
            world.mpi, world.comm = MPI, comm
            world.rank, world.size = comm.Get_rank(), comm.Get_size()
            node = comm.Split_type(MPI.COMM_TYPE_SHARED)
            world.local_rank, world.local_size = node.Get_rank(), node.Get_size()
            node.Free()
    world.initialized = True
    if world.local_size > 1:
        _split_cores(world)
    if world.size > 1:
        logger.info("nnx.distributed: rank %d of %d (local rank %d, %s BLAS threads)", world.rank,
                    world.size, world.local_rank, world.blas_threads or "default")
        if abort_on_error:
            from ._guard import install_excepthook

            install_excepthook()
    return world


def _split_cores(world: World) -> None:
    """Ranks sharing a machine share its cores: each gets usable cores ÷ ranks on the node
    BLAS threads (at least 1), unless a thread count was set by hand (NNX_BLAS_THREADS,
    OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS), which wins."""
    from ..backends import cpu_threads

    hand = cpu_threads.threads_set_by_hand()
    if hand == "NNX_BLAS_THREADS":
        n = int(os.environ[hand])
    elif hand is not None:
        return
    else:
        n = max(1, cpu_threads.usable_cores() // world.local_size)
    if cpu_threads.set_blas_threads(n):
        world.blas_threads = n


def get_world() -> World:
    """The world, initialised on first use (see :func:`init`)."""
    return _WORLD if _WORLD.initialized else init()


def rank() -> int:
    """This process's rank in the world (0 in a single-process world)."""
    return get_world().rank


def world_size() -> int:
    """Number of processes in the world (1 when not launched under MPI)."""
    return get_world().size


def local_rank() -> int:
    """Rank among the processes on this node (pick the GPU with it: ``local_rank() % n_gpus``)."""
    return get_world().local_rank


def device_for_rank(backend: str, *, local_rank: int | None = None,
                    environ: Mapping[str, str] | None = None) -> Any:
    """The device this rank should use for ``backend`` (``"cupy"``, ``"torch"``, ``"auto"``,
    ...): ``NNX_DEVICE`` when set (an index such as ``1`` or a name such as ``cuda:1``),
    else GPU ``local_rank % n`` of the ``n`` GPUs the library sees, else None (host
    libraries, no GPU: the backend's default).

    So ranks on one machine spread over its GPUs, one each while there are enough, and a
    rank whose launcher gives it one GPU through ``CUDA_VISIBLE_DEVICES`` sees ``n = 1``
    and uses that one. Pass the result to ``nnx.set_backend(backend, device)``; a device
    given explicitly (``nnx train --device``) should win over this function.
    ``local_rank`` defaults to :func:`local_rank` (the rank among the processes sharing
    this node), so call it after :func:`init`.
    """
    from .. import backends as _backends

    environ = os.environ if environ is None else environ
    explicit = environ.get(DEVICE_ENV, "").strip()
    if explicit:
        return int(explicit) if explicit.isdigit() else explicit
    name = str(backend).strip().lower()
    if name == "auto":  # "auto" picks CuPy when a GPU answers; place the rank on one of them
        name = "cupy"
    if name not in _backends.KNOWN_BACKENDS:
        raise ValueError(f"device_for_rank: unknown backend {backend!r}; choose one of "
                         f"{', '.join(_backends.KNOWN_BACKENDS)} or 'auto'")
    count = _backends.device_count(name)
    if count < 1:
        return None
    mine = get_world().local_rank if local_rank is None else int(local_rank)
    device = mine % count
    world = get_world()
    if world.local_size > count and mine == 0:
        logger.warning("nnx.distributed: %d ranks on this node but %s sees %d GPU(s); ranks "
                       "share GPUs, so gradients travel through host buffers", world.local_size,
                       name, count)
    logger.info("nnx.distributed: local rank %d uses %s device %d of %d", mine, name, device, count)
    return device


def is_main() -> bool:
    """True on rank 0, the one that writes checkpoints, history, plots and logs."""
    return get_world().rank == 0


def is_distributed() -> bool:
    """True when more than one process takes part."""
    return get_world().size > 1


def barrier() -> None:
    """Wait until every rank reaches this point (no-op in a single-process world)."""
    world = get_world()
    if world.size > 1:
        world.comm.Barrier()


def local_batch_size(global_batch: int, world_size: int | None = None) -> int:
    """The per-rank batch for a ``global_batch`` split evenly over the ranks.

    Raises ValueError when the world has more ranks than the global batch has
    samples, or when the batch does not split evenly (uneven shards would weight
    the ranks' gradients unequally in the average).
    """
    size = get_world().size if world_size is None else int(world_size)
    if isinstance(global_batch, bool) or not isinstance(global_batch, int) or global_batch < 1:
        raise ValueError(f"global batch size must be a positive integer, got {global_batch!r}")
    if size > global_batch:
        raise ValueError(
            f"world size {size} is larger than the global batch size {global_batch}: every "
            f"rank needs at least one sample per step; launch at most {global_batch} ranks "
            f"or use a global batch of at least {size}"
        )
    if global_batch % size:
        lower = global_batch - global_batch % size
        raise ValueError(
            f"global batch size {global_batch} does not split evenly over {size} ranks; "
            f"use a multiple of {size} (e.g. {lower} or {lower + size})"
        )
    return global_batch // size


def _reset_for_tests() -> None:
    """Forget the world (tests only; never call after MPI was initialised)."""
    global _WORLD
    _WORLD = World()
