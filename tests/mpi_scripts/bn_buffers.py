"""A BatchNorm model, each rank fed other data, then broadcast_buffers from rank 0.

argv: OUT_DIR
"""

import common
import numpy as np

import nnx
import nnx.distributed as dist

(out,) = common.args()
dist.init()
r = dist.rank()
nnx.manual_seed(0)
model = nnx.Sequential(nnx.Linear(6, 4), nnx.BatchNorm1d(4))
model(nnx.asarray(np.random.default_rng(r).standard_normal((8, 6)).astype(np.float32)))


def buffers():
    return {k: nnx.to_numpy(b.data) for k, b in model.named_buffers()}


common.save(out, f"before_rank{r}", buffers())
dist.broadcast_buffers(model)
common.save(out, f"after_rank{r}", buffers())
