"""Differently seeded models on each rank, then broadcast_parameters from ROOT.

argv: OUT_DIR ROOT
"""

import common

import nnx.distributed as dist

out, root = common.args()
dist.init()
r = dist.rank()
model = common.make_model("numpy", seed=100 + r)
common.save(out, f"before_rank{r}", common.params_numpy(model))
dist.broadcast_parameters(model, root=int(root))
common.save(out, f"after_rank{r}", common.params_numpy(model))
