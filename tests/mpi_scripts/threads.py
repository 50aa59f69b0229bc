"""Report the BLAS thread count each rank runs with after init.

argv: OUT_DIR
"""

import common

import nnx.distributed as dist
from nnx.backends import cpu_threads
from nnx.distributed import _world

(out,) = common.args()
dist.init()
common.dump(out, f"threads_rank{dist.rank()}", {"blas": cpu_threads.get_blas_threads(),
                                                 "cores": cpu_threads.usable_cores(),
                                                 "local_size": _world.get_world().local_size})
