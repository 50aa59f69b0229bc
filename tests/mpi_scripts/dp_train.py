"""A short data-parallel training run (numpy): per-step global losses and final parameters.

argv: OUT_DIR STEPS GLOBAL_BATCH
"""

import common

import nnx.distributed as dist

out, steps, batch = common.args()
dist.init()
r, w = dist.rank(), dist.world_size()
x, y = common.make_data(4 * int(batch), seed=7)
per_rank = dist.local_batch_size(int(batch))


def reduce(model, loss):
    dist.allreduce_gradients(model)
    return dist.allreduce_mean(loss)


losses, model = common.train("numpy", x, y, int(steps), int(batch), r, w, reduce)
assert per_rank * w == int(batch)
common.save(out, f"train_rank{r}", common.params_numpy(model))
if dist.is_main():
    common.dump(out, "losses", losses)
