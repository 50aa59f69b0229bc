"""One measurement, in its own process: ``python -m bench.worker --impl nnx --backend numpy ...``.

Builds one model on one implementation (nnx on a backend, or PyTorch's own),
runs ``--warmup`` training steps, then times up to ``--steps`` steps one by one
with the device synchronised after each (stopping early, after at least
``MIN_STEPS``, once ``--max-time`` seconds have passed), and prints one line
``BENCH_RESULT {json}`` with the step times and this process's peak RSS.
Data is generated up front on the device (a few fixed random batches,
cycled), so the step time excludes data loading.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench import machine

MARKER = "BENCH_RESULT "
MIN_STEPS = 5
N_BATCHES = 4
NNX_MODELS = {"MLP": lambda m: m.MLP((784, 600, 10)), "LeNet5": lambda m: m.LeNet5(),
              "WideCNN": lambda m: m.WideCNN()}


def make_data(batch: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """N_BATCHES (images (B, 1, 28, 28) float32 in [0, 1), labels (B,) int64)."""
    rng = np.random.default_rng(seed)
    return [(rng.random((batch, 1, 28, 28), dtype=np.float32),
             rng.integers(0, 10, size=batch, dtype=np.int64)) for _ in range(N_BATCHES)]


def setup_nnx(args: argparse.Namespace) -> tuple[Callable[[int], Any], Callable[[], None],
                                                 Callable[[Any], float], dict[str, Any]]:
    """nnx's step on ``args.backend``: (step(i) -> loss, synchronize, to_float, info)."""
    import nnx

    nnx.manual_seed(args.seed)
    be = nnx.set_backend(args.backend, args.device)
    model = NNX_MODELS[args.model](nnx.models)
    loss_fn = nnx.CrossEntropyLoss()
    opt = nnx.optim.SGD(model, args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    data = [(nnx.asarray(x, be), nnx.asarray(y, be)) for x, y in make_data(args.batch, args.seed)]

    threads = args.nnx_threads if args.nnx_threads == "auto" else int(args.nnx_threads)
    # the step nnx.Trainer takes: forward, loss, backward (no gradient for the data, as
    # PyTorch skips inputs without requires_grad), SGD; on NumPy split across the cores
    trainer = nnx.Trainer(model, opt, loss_fn, progress=False, log=lambda line: None,
                          threads=threads)

    def step(i: int) -> Any:
        x, y = data[i % len(data)]
        loss, _ = trainer.train_step(x, y)
        return loss

    def loop_step(i: int) -> Any:  # the README's explicit loop, no Trainer
        x, y = data[i % len(data)]
        loss = loss_fn(model(x), y)
        model.backward_params_only(loss_fn.backward())
        opt.step()
        return loss

    def loop_dx_step(i: int) -> Any:  # the same, with the input's gradient computed too
        x, y = data[i % len(data)]
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward())
        opt.step()
        return loss

    if args.step in ("loop", "loop-dx"):
        if threads != "auto":
            model.threads = threads
        step = loop_step if args.step == "loop" else loop_dx_step  # noqa: F811 - asked for

    info = {"backend": be.name, "device": str(be.device), "versions": be.versions(),
            "nnx_version": nnx.__version__, "nnx_threads": trainer.threads,
            "parameters": sum(math.prod(p.shape) for p in model.parameters())}
    return step, be.synchronize, float, info


def setup_torch(args: argparse.Namespace) -> tuple[Callable[[int], Any], Callable[[], None],
                                                   Callable[[Any], float], dict[str, Any]]:
    """PyTorch's own step (torch.nn + torch.optim.SGD + F.cross_entropy) on ``args.device``."""
    import torch

    from bench import models_torch

    torch.manual_seed(args.seed)
    device = torch.device(args.device or "cpu")
    model = models_torch.build(args.model, device)
    train = models_torch.make_step(model, args.lr, args.momentum, args.weight_decay)
    data = [(torch.from_numpy(x).to(device), torch.from_numpy(y).to(device))
            for x, y in make_data(args.batch, args.seed)]

    def step(i: int) -> Any:
        x, y = data[i % len(data)]
        return train(x, y)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    info: dict[str, Any] = {
        "backend": "torch-native", "device": str(device), "torch_version": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "parameters": models_torch.parameter_count(model),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["allow_tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32,
                              "cudnn": torch.backends.cudnn.allow_tf32}
    return step, sync, lambda v: float(v.detach().cpu()), info


def gpu_peak_mb(args: argparse.Namespace) -> float | None:
    """Peak GPU memory of this process's library allocator in MiB, where cheap to ask."""
    device = str(args.device or "")
    on_torch = args.impl == "torch" or args.backend == "torch"
    if on_torch and device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    if args.impl == "nnx" and args.backend == "cupy":
        import cupy

        return cupy.get_default_memory_pool().total_bytes() / 2**20
    return None


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Warm up, time the steps, and gather the result dict."""
    t0 = time.perf_counter()
    step, sync, to_float, info = (setup_nnx if args.impl == "nnx" else setup_torch)(args)
    sync()
    setup_s = time.perf_counter() - t0
    rss_setup = machine.peak_rss_mb()
    first_loss = None
    for i in range(args.warmup):
        loss = step(i)
        if i == 0:
            first_loss = to_float(loss)
    sync()
    times: list[float] = []
    deadline = time.perf_counter() + args.max_time
    i = args.warmup
    while len(times) < args.steps:
        t = time.perf_counter()
        loss = step(i)
        sync()
        times.append(time.perf_counter() - t)
        i += 1
        if len(times) >= min(MIN_STEPS, args.steps) and time.perf_counter() > deadline:
            break
    last_loss = to_float(loss)
    ms = sorted(t * 1000.0 for t in times)
    result = {
        "impl": args.impl, "model": args.model, "batch": args.batch, **info,
        "steps": len(times), "warmup": args.warmup,
        "median_ms": statistics.median(ms), "min_ms": ms[0], "max_ms": ms[-1],
        "mean_ms": statistics.fmean(ms),
        "images_per_s": args.batch * 1000.0 / statistics.median(ms),
        "step_ms": [round(t * 1000.0, 4) for t in times],
        "setup_s": setup_s,
        "rss_after_setup_mb": rss_setup, "peak_rss_mb": machine.peak_rss_mb(),
        "gpu_peak_mb": gpu_peak_mb(args),
        "first_loss": first_loss, "last_loss": last_loss,
        "loss_finite": bool(math.isfinite(last_loss)),
        "torch_imported": "torch" in sys.modules,
        "env": machine.env_vars(),
        "numpy_blas_runtime": machine.numpy_blas().get("runtime"),
    }
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.worker", description=__doc__.split("\n")[0])
    p.add_argument("--impl", choices=("nnx", "torch"), required=True)
    p.add_argument("--backend", default="numpy", help="nnx backend name (with --impl nnx)")
    p.add_argument("--device", default=None, help="device: cpu, cuda, cuda:1 (default: the backend's)")
    p.add_argument("--model", choices=tuple(NNX_MODELS), required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--max-time", type=float, default=10.0)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nnx-threads", default="auto", help="nnx.Trainer threads: auto or N")
    p.add_argument("--step", choices=("trainer", "loop", "loop-dx"), default="trainer",
                   help="nnx: the Trainer's step, the README's explicit loop (model(x), loss, "
                        "model.backward_params_only(loss_fn.backward()), opt.step()), or that "
                        "loop with model.backward, which also computes the input's gradient")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch < 1:
        p.error("--steps and --batch must be >= 1 and --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    result = measure(parse_args(argv))
    sys.stdout.write(MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
