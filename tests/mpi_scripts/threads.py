"""Report the BLAS thread count each rank runs with after init, and the threads a
convolutional model splits a batch of 256 across on it.

argv: OUT_DIR
"""

import common

import nnx
import nnx.distributed as dist
from nnx.backends import cpu_threads
from nnx.distributed import _world
from nnx.parallel import auto_threads

(out,) = common.args()
dist.init()
split = auto_threads(nnx.models.LeNet5(backend="numpy"), 256)
common.dump(out, f"threads_rank{dist.rank()}", {"blas": cpu_threads.get_blas_threads(),
                                                 "cores": cpu_threads.usable_cores(),
                                                 "local_size": _world.get_world().local_size,
                                                 "split": split})
