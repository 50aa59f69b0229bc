"""Per-layer forward/backward times of an nnx model on NumPy (where the time goes).

    OPENBLAS_NUM_THREADS=1 python bench/profile_layers.py WideCNN 128
    python bench/profile_layers.py WideCNN 128 --torch     # PyTorch's, one thread

Prints one line per layer (median ms over the timed steps) plus loss and SGD, and
the total; run with one BLAS thread to see each layer's single-core cost. With
``--torch`` it prints PyTorch's own step for the same model and batch on one thread
instead, per operator and input shape (torch.profiler's CPU time per step), so the
two can be set side by side layer by layer.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import nnx


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", default="LeNet5",
                   choices=["MLP", "LeNet5", "WideCNN", "ConvNet"])  # 1×28×28 inputs
    p.add_argument("batch", nargs="?", type=int, default=128)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--torch", action="store_true",
                   help="profile PyTorch's own model instead (one thread, torch.profiler)")
    args = p.parse_args()
    if args.batch < 1 or args.steps < 1:
        p.error("batch and --steps must be >= 1")
    if args.torch:
        return profile_torch(args.model, args.batch, args.steps)
    nnx.set_backend("numpy")
    nnx.manual_seed(0)
    model = getattr(nnx.models, args.model)()
    opt = nnx.optim.SGD(model, 0.01, momentum=0.9, weight_decay=1e-4)
    loss_fn = nnx.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, args.batch)
    fwd, bwd = collections.defaultdict(list), collections.defaultdict(list)
    loss_t, opt_t = [], []
    for _ in range(args.steps):
        h = x
        for i, layer in enumerate(model.layers):
            t = time.perf_counter()
            h = layer(h)
            fwd[i].append(time.perf_counter() - t)
        t = time.perf_counter()
        loss_fn(h, y)
        g = loss_fn.backward()
        loss_t.append(time.perf_counter() - t)
        for i in reversed(range(len(model.layers))):
            t = time.perf_counter()
            if i == 0:
                model.layers[0].backward_params_only(g)
            else:
                g = model.layers[i].backward(g)
            bwd[i].append(time.perf_counter() - t)
        t = time.perf_counter()
        opt.step()
        opt_t.append(time.perf_counter() - t)
    skip = min(5, args.steps // 2)

    def ms(ts: list[float]) -> float:
        return statistics.median(ts[skip:]) * 1e3

    total = ms(loss_t) + ms(opt_t)
    for i, layer in enumerate(model.layers):
        f, b = ms(fwd[i]), ms(bwd[i])
        total += f + b
        print(f"{i:2d} {type(layer).__name__:10s} forward {f:7.2f} ms  backward {b:7.2f} ms")
    print(f"loss {ms(loss_t):.2f} ms  SGD {ms(opt_t):.2f} ms  total {total:.2f} ms "
          f"({args.model}, batch {args.batch})")


def profile_torch(model_name: str, batch: int, steps: int) -> None:
    """PyTorch's step on one thread: CPU ms per step of each operator and input shape."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench import models_torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = models_torch.build(model_name)
    step = models_torch.make_step(model, 0.01, 0.9, 1e-4)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((batch, 1, 28, 28), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, 10, batch))
    big = torch.empty(64 << 20, dtype=torch.uint8)  # freed: glibc settles as after a data load
    del big
    for _ in range(10):
        step(x, y)
    t = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    wall = (time.perf_counter() - t) / steps * 1e3
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step(x, y)
    rows = prof.key_averages(group_by_input_shape=True)
    top = sorted(rows, key=lambda r: r.self_cpu_time_total, reverse=True)[:25]
    for r in top:
        print(f"{r.self_cpu_time_total / steps / 1e3:7.3f} ms self  {r.key:40s} {r.input_shapes}")
    print(f"PyTorch {model_name}, batch {batch}, one thread: {wall:.2f} ms a step (unprofiled)")


if __name__ == "__main__":
    main()
