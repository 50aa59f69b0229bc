"""Data-parallel training over MPI (mpi4py), a no-op world without it.

Launch ``mpiexec -n 4 python train.py``; every rank holds the whole model and
a disjoint shard of each batch. A training loop::

    import nnx
    import nnx.distributed as dist

    dist.init()                                   # rank/size from MPI, or a 1-process world
    nnx.set_backend("auto", dist.device_for_rank("auto"))  # GPU local_rank % n; NNX_DEVICE wins
    model = ...; opt = nnx.optim.SGD(model, lr=0.1, momentum=0.9)
    dist.broadcast_parameters(model)              # every rank starts from rank 0's weights
    per_rank = dist.local_batch_size(global_batch)  # ValueError for a bad launch
    for x, y in loader:                           # loader sharded with rank()/world_size()
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        dist.allreduce_gradients(model)           # average .grad over ranks, bucketed
        opt.step()
    loss_sum, correct, n = dist.allreduce_sum([loss_sum, correct, n])
    if dist.is_main():                            # only rank 0 writes files
        ...

``init`` installs an excepthook so that an uncaught exception on one rank ends
the job with ``rank R failed: <message>`` (see :func:`guarded`,
:func:`run_guarded`, :func:`abort` for code that catches exceptions itself).
Importing this module never imports mpi4py.
"""

from ._collectives import (
    DEFAULT_BUCKET_BYTES,
    allreduce_gradients,
    allreduce_mean,
    allreduce_sum,
    broadcast_buffers,
    broadcast_object,
    broadcast_parameters,
    selected_paths,
)
from ._guard import abort, guarded, install_excepthook, run_guarded
from ._launch import find_mpiexec, mpiexec_command
from ._world import (
    DEVICE_ENV,
    barrier,
    device_for_rank,
    init,
    is_distributed,
    is_main,
    launched_under_mpi,
    local_batch_size,
    local_rank,
    rank,
    world_size,
)

__all__ = [
    "DEFAULT_BUCKET_BYTES",
    "DEVICE_ENV",
    "abort",
    "allreduce_gradients",
    "allreduce_mean",
    "allreduce_sum",
    "barrier",
    "broadcast_buffers",
    "broadcast_object",
    "broadcast_parameters",
    "device_for_rank",
    "find_mpiexec",
    "guarded",
    "init",
    "install_excepthook",
    "is_distributed",
    "is_main",
    "launched_under_mpi",
    "local_batch_size",
    "local_rank",
    "mpiexec_command",
    "rank",
    "run_guarded",
    "selected_paths",
    "world_size",
]
