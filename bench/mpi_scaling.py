"""Data-parallel scaling over MPI: WideCNN training throughput with 1 and 2 ranks.

``python bench/mpi_scaling.py`` launches itself under ``mpiexec`` for each
configuration and prints one JSON document: images/s for a fixed global batch
(default 128, split evenly over the ranks), numpy backend, SGD with momentum,
synthetic 1×28×28 inputs. Configurations (ranks × BLAS threads per rank):

- 1×1: one process, one BLAS thread and no batch split (the per-core baseline);
- 1×N: one process using every core, through BLAS threads and the batch split across
  threads (what one process does by default: the fair single-process competitor);
- 2×(N/2): two ranks sharing the same cores.

``--worker`` runs one configuration (called by the launcher, under mpiexec).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def worker(global_batch: int, steps: int, warmup: int, single_thread: bool) -> dict:
    """Train WideCNN for ``warmup`` + ``steps`` steps on this rank; rank 0 returns figures."""
    import numpy as np

    import nnx
    import nnx.distributed as dist
    import nnx.parallel

    dist.init()
    local = dist.local_batch_size(global_batch)
    nnx.manual_seed(0)
    model = nnx.models.WideCNN(backend="numpy")
    if single_thread:  # no batch split across threads either: one core's worth
        model.threads = 1
    dist.broadcast_parameters(model)
    opt = nnx.optim.SGD(model, lr=0.01, momentum=0.9)
    loss_fn = nnx.CrossEntropyLoss()
    rng = np.random.default_rng(1 + dist.rank())
    x = nnx.asarray(rng.standard_normal((local, 1, 28, 28)).astype(np.float32), "numpy")
    y = nnx.asarray(rng.integers(0, 10, local).astype(np.int64), "numpy")
    comm_time = 0.0

    def step() -> float:
        loss_fn(model(x), y)
        model.backward_params_only(loss_fn.backward())  # the README's training step
        t = time.perf_counter()
        dist.allreduce_gradients(model)
        spent = time.perf_counter() - t
        opt.step()
        return spent

    for _ in range(warmup):
        step()
    dist.barrier()
    start = time.perf_counter()
    for _ in range(steps):
        comm_time += step()
    dist.barrier()
    elapsed = time.perf_counter() - start
    comm_mean = dist.allreduce_mean(comm_time)
    return {
        "ranks": dist.world_size(),
        "threads_per_rank": int(os.environ.get("OMP_NUM_THREADS", "0")) or None,
        "batch_split_threads": nnx.parallel.auto_threads(model, local)
        if model.threads is None else model.threads,
        "global_batch": global_batch,
        "local_batch": local,
        "steps": steps,
        "seconds": round(elapsed, 4),
        "images_per_s": round(global_batch * steps / elapsed, 1),
        "allreduce_ms_per_step": round(1000 * comm_mean / steps, 3),
        "paths": dist.selected_paths(),
    }


def launch(ranks: int, threads: int, args: argparse.Namespace) -> dict:
    """Run the worker under ``mpiexec -n ranks`` with ``threads`` BLAS threads per rank."""
    from nnx.distributed import mpiexec_command

    env = dict(os.environ)
    for k in THREAD_VARS:
        env[k] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    cmd = mpiexec_command(ranks, [sys.executable, __file__, "--worker",
                                  "--global-batch", str(args.global_batch),
                                  "--steps", str(args.steps), "--warmup", str(args.warmup)]
                          + (["--single-thread"] if (ranks, threads) == (1, 1) else []))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """Command line: run every configuration (or one ``--worker``) and print JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--global-batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--single-thread", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        result = worker(args.global_batch, args.steps, args.warmup, args.single_thread)
        import nnx.distributed as dist

        if dist.is_main():
            print(json.dumps(result), flush=True)
        return 0
    cores = os.cpu_count() or 1
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    configs = [(1, 1), (1, cores), (2, max(1, cores // 2))]
    runs = [launch(r, t, args) for r, t in dict.fromkeys(configs)]
    by = {(r["ranks"], r["threads_per_rank"]): r["images_per_s"] for r in runs}
    two = by.get((2, max(1, cores // 2)))
    doc = {
        "benchmark": "WideCNN data-parallel training step, numpy backend, SGD momentum",
        "machine": {"cpus": cores, "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(),
                    "load_average_before": [round(v, 2) for v in load_before]},
        "command": " ".join(["python bench/mpi_scaling.py", *(argv or sys.argv[1:])]),
        "notes": ("images_per_s = global_batch * steps / wall time of the timed steps (rank 0, "
                  "between barriers); allreduce_ms_per_step is the time inside "
                  "allreduce_gradients averaged over ranks, waiting for the slower rank included"),
        "runs": runs,
        "speedup_2_ranks_vs_1_rank_1_thread": round(two / by[(1, 1)], 3) if two else None,
        "speedup_2_ranks_vs_1_rank_all_threads": round(two / by[(1, cores)], 3) if two else None,
    }
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
