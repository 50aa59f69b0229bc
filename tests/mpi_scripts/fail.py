"""Rank 1 raises while rank 0 waits in allreduce_gradients; the job must end at once.

argv: MODE   ("hook": uncaught exception and init()'s excepthook; "guarded": run_guarded)
"""

import common

import nnx.distributed as dist

(mode,) = common.args()
dist.init()


def step():
    model = common.make_model("numpy")
    x, y = common.make_data(8)
    if dist.rank() == 1:
        raise ValueError("deliberate failure on rank 1")
    common.forward_backward(model, x, y, "numpy")
    dist.allreduce_gradients(model)  # rank 0 blocks here until the job is aborted
    print("rank 0 passed the collective: the failure was not propagated", flush=True)


if mode == "guarded":
    dist.run_guarded(step)
else:
    step()
