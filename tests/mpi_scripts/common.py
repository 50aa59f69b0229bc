"""Model, data and one training step shared by the MPI scripts and the test process.

The test process imports this file to compute the single-process reference;
each script computes the same thing on its shard of the batch under mpiexec.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

import nnx

SIZES = (12, 16, 16, 4)


def make_model(backend: str, seed: int = 0) -> nnx.Module:
    """A small MLP with weights drawn from ``seed`` (the same on every backend)."""
    nnx.manual_seed(seed)
    return nnx.models.MLP(SIZES, backend=backend)


def make_data(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 inputs from a seeded generator and learnable int64 labels
    (the arg-max of a fixed random linear map of the input)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, SIZES[0])).astype(np.float32)
    teacher = np.random.default_rng(0).standard_normal((SIZES[0], SIZES[-1]))
    y = np.argmax(x @ teacher, axis=1).astype(np.int64)
    return x, y


def shard(a: np.ndarray, rank: int, world: int) -> np.ndarray:
    """The ``rank``-th of ``world`` equal contiguous parts of ``a``."""
    n = a.shape[0] // world
    return a[rank * n:(rank + 1) * n]


def forward_backward(model: nnx.Module, x: np.ndarray, y: np.ndarray, backend: str) -> float:
    """Loss of one batch; leaves the gradients in the parameters."""
    loss_fn = nnx.CrossEntropyLoss()
    loss = loss_fn(model(nnx.asarray(x, backend)), nnx.asarray(y, backend))
    model.backward(loss_fn.backward())
    return float(loss)


def params_numpy(model: nnx.Module) -> dict[str, np.ndarray]:
    """Parameter name -> float64 NumPy copy."""
    return {n: np.asarray(nnx.to_numpy(p.data), dtype=np.float64)
            for n, p in model.named_parameters()}


def train(backend: str, x: np.ndarray, y: np.ndarray, steps: int, batch: int, rank: int = 0,
          world: int = 1, reduce=None, lr: float = 0.2, momentum: float = 0.9):
    """SGD-momentum steps over consecutive global batches; returns (global losses, model).

    Each step uses the ``rank``-th shard of the global batch; ``reduce(model, loss)``
    averages gradients and returns the global loss (identity when None).
    """
    model = make_model(backend)
    opt = nnx.optim.SGD(model, lr=lr, momentum=momentum)
    losses = []
    n = x.shape[0]
    for step in range(steps):
        lo = (step * batch) % n
        xb, yb = shard(x[lo:lo + batch], rank, world), shard(y[lo:lo + batch], rank, world)
        loss = forward_backward(model, xb, yb, backend)
        if reduce is not None:
            loss = reduce(model, loss)
        losses.append(loss)
        opt.step()
    return losses, model


def save(out_dir: str, name: str, arrays: dict[str, np.ndarray]) -> None:
    np.savez(os.path.join(out_dir, name + ".npz"), **arrays)


def dump(out_dir: str, name: str, obj) -> None:
    with open(os.path.join(out_dir, name + ".json"), "w") as f:
        json.dump(obj, f)


def args() -> list[str]:
    return sys.argv[1:]
