"""One data-parallel step: each rank takes its half of a batch of 2B, averages
gradients, takes an SGD step and saves its parameters.

argv: OUT_DIR B BACKEND[:PATH] ...   (PATH: auto, host, mpi-direct)
"""

import common

import nnx
import nnx.distributed as dist

out, batch, *specs = common.args()
dist.init()
r, w = dist.rank(), dist.world_size()
x, y = common.make_data(2 * int(batch))
for spec in specs:
    backend, _, path = spec.partition(":")
    model = common.make_model(backend)
    common.forward_backward(model, common.shard(x, r, w), common.shard(y, r, w), backend)
    dist.allreduce_gradients(model, path=None if path in ("", "auto") else path)
    nnx.optim.SGD(model, lr=0.5).step()
    common.save(out, f"step_{backend}_{path or 'auto'}_rank{r}", common.params_numpy(model))
common.dump(out, f"paths_rank{r}", dist.selected_paths())
