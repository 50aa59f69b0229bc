"""Counts the buffer collectives behind allreduce_gradients / broadcast_parameters.

Rank r sets every gradient to (r + 1) * base, so the average is 1.5 * base on 2 ranks.
argv: OUT_DIR
"""

import common
import numpy as np

import nnx
import nnx.distributed as dist
from nnx.distributed import _world

(out,) = common.args()
dist.init()
world = _world.get_world()


class Counting:
    """The real communicator, counting the buffer collectives it runs."""

    def __init__(self, comm):
        self.comm = comm
        self.calls = {"Allreduce": 0, "Bcast": 0}

    def __getattr__(self, name):
        attr = getattr(self.comm, name)
        if name in self.calls:
            def counted(*a, **k):
                self.calls[name] += 1
                return attr(*a, **k)
            return counted
        return attr


counter = Counting(world.comm)
world.comm = counter
r, w = dist.rank(), dist.world_size()
nnx.manual_seed(0)
model = nnx.models.MLP((8,) * 10, backend="numpy")  # 9 Linear layers: 18 parameters
rng = np.random.default_rng(3)
base = {n: rng.standard_normal(p.shape).astype(np.float32) for n, p in model.named_parameters()}
results = {"n_params": len(base), "world": w}


def set_grads():
    for n, p in model.named_parameters():
        p.grad = nnx.asarray(base[n] * np.float32(r + 1), "numpy")


def max_error():
    return max(float(np.max(np.abs(nnx.to_numpy(p.grad) - base[n] * 1.5)))
               for n, p in model.named_parameters())


def count(fn):
    before = dict(counter.calls)
    fn()
    return {k: counter.calls[k] - before[k] for k in before}


set_grads()
dist.allreduce_gradients(model)  # first call also checks the layout and picks the path
set_grads()
results["default"] = count(lambda: dist.allreduce_gradients(model))
results["default_error"] = max_error()
set_grads()
# weight 8x8 float32 = 256 bytes, bias 32 bytes: a 300-byte bucket holds one layer
results["small"] = count(lambda: dist.allreduce_gradients(model, bucket_bytes=300))
results["small_error"] = max_error()
results["bcast"] = count(lambda: dist.broadcast_parameters(model))

mixed = [nnx.Parameter(nnx.asarray(np.ones((5, 3), dtype=dt), "numpy"))
         for dt in (np.float32, np.float64, np.float32, np.float64)]
for i, p in enumerate(mixed):
    p.grad = nnx.asarray(np.full(p.shape, float(i + r), dtype=p.data.dtype), "numpy")
results["mixed"] = count(lambda: dist.allreduce_gradients(mixed))
results["mixed_values"] = [float(nnx.to_numpy(p.grad)[0, 0]) for p in mixed]
results["mixed_dtypes"] = [str(p.grad.dtype) for p in mixed]
common.dump(out, f"count_rank{r}", results)
