"""One core against all cores: how nnx and PyTorch use a second core (bench/README.md).

    python bench/scaling.py [--models LeNet5,WideCNN] [--batch 128] [--rounds 3] [--out F]

Each configuration is a fresh ``bench.worker`` process (glibc's malloc settled, as in
``python -m bench``), the configurations alternating within each round:

- ``nnx-1core``: ``OPENBLAS_NUM_THREADS=1`` and ``--nnx-threads 1``;
- ``nnx-blas``: BLAS threads only, no batch split (``--nnx-threads 1``);
- ``nnx-split``: the default (BLAS threads, and the batch split across threads);
- ``torch-1thread``: ``OMP_NUM_THREADS=1``; ``torch``: PyTorch's default threads;
- ``nnx-half-x2``: two ``nnx-1core`` processes at half the batch, started together
  (what two cores give when nothing is shared but memory).

It also times the GIL hand-over in this process: ``np.add`` on float32 arrays of 64K and
256K elements, one thread against two threads doing the same at once. Prints one JSON
document (to ``--out`` or stdout) with every time and the medians per configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import machine  # noqa: E402
from bench.run import SETTLED_MALLOC, run_child  # noqa: E402
from bench.worker import MARKER  # noqa: E402

CONFIGS = {  # name: (worker argv, extra environment)
    "nnx-1core": (["--impl", "nnx", "--nnx-threads", "1"], {"OPENBLAS_NUM_THREADS": "1"}),
    "nnx-blas": (["--impl", "nnx", "--nnx-threads", "1"], {}),
    "nnx-split": (["--impl", "nnx"], {}),
    "torch-1thread": (["--impl", "torch"], {"OMP_NUM_THREADS": "1"}),
    "torch": (["--impl", "torch"], {}),
}


def env_with(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NNX_BACKEND"}
    for name, value in SETTLED_MALLOC.items():
        env.setdefault(name, value)
    env.update(extra)
    return env


def worker_argv(model: str, batch: int, steps: int) -> list[str]:
    return ["--model", model, "--batch", str(batch), "--steps", str(steps), "--warmup", "10",
            "--max-time", "30"]


def two_halves(model: str, batch: int, steps: int) -> list[float]:
    """Median step ms of two single-core processes at batch/2, running at the same time."""
    argv, extra = CONFIGS["nnx-1core"]
    cmd = [sys.executable, "-m", "bench.worker", *argv, *worker_argv(model, batch // 2, steps)]
    procs = [subprocess.Popen(cmd, cwd=machine.ROOT, env=env_with(extra), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=600)
        line = next((ln for ln in stdout.splitlines() if ln.startswith(MARKER)), None)
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"bench.worker failed: {stderr.strip()[-500:]}")
        out.append(json.loads(line[len(MARKER):])["median_ms"])
    return out


def gil_handover(sizes: tuple[int, ...] = (65536, 262144), ops: int = 2000) -> list[dict]:
    """µs per np.add in one thread, and per pair of np.adds run by two threads at once."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    pool = ThreadPoolExecutor(1)
    rows = []
    with threadpool_limits(1):
        for n in sizes:
            arrays = [[np.ones(n, np.float32) for _ in range(3)] for _ in range(2)]

            def work(i: int, k: int = ops, arrays: list = arrays) -> None:
                a, b, c = arrays[i]
                for _ in range(k):
                    np.add(a, b, out=c)

            work(0, 200)
            t = time.perf_counter()
            work(0)
            one = (time.perf_counter() - t) / ops * 1e6
            t = time.perf_counter()
            other = pool.submit(work, 1)
            work(0)
            other.result()
            two = (time.perf_counter() - t) / ops * 1e6
            rows.append({"elements": n, "one_thread_us_per_op": round(one, 2),
                         "two_threads_us_per_pair": round(two, 2)})
    pool.shutdown()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="LeNet5,WideCNN")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out")
    args = p.parse_args(argv)
    if args.batch < 2 or args.steps < 1 or args.rounds < 1:
        p.error("--batch must be >= 2, --steps and --rounds >= 1")
    desc = machine.describe_machine()
    runs: list[dict[str, Any]] = []
    for r in range(args.rounds):
        for model in args.models.split(","):
            names = list(CONFIGS) if r % 2 == 0 else list(CONFIGS)[::-1]
            for name in names + ["nnx-half-x2"]:
                if name == "nnx-half-x2":
                    ms = two_halves(model, args.batch, args.steps)
                    runs.append({"round": r, "model": model, "config": name, "median_ms": ms})
                    print(f"round {r} {model} {name}: {ms[0]:.2f} / {ms[1]:.2f} ms",
                          file=sys.stderr, flush=True)
                    continue
                wargv, extra = CONFIGS[name]
                m = run_child("bench.worker", [*wargv, *worker_argv(model, args.batch,
                                                                      args.steps)],
                              env_with(extra), 600.0)
                if "error" in m:
                    raise SystemExit(f"bench/scaling.py: {model} {name}: {m['error']}")
                runs.append({"round": r, "model": model, "config": name,
                             "median_ms": m["result"]["median_ms"],
                             "threads": m["result"].get("nnx_threads",
                                                        m["result"].get("torch_num_threads"))})
                print(f"round {r} {model} {name}: {m['result']['median_ms']:.2f} ms",
                      file=sys.stderr, flush=True)
    summary: dict[str, Any] = {}
    for model in args.models.split(","):
        med = {}
        for name in [*CONFIGS, "nnx-half-x2"]:
            values = [v for x in runs if x["model"] == model and x["config"] == name
                      for v in (x["median_ms"] if isinstance(x["median_ms"], list)
                                else [x["median_ms"]])]
            med[name] = round(statistics.median(values), 3)
        med["nnx_speedup_two_cores"] = round(med["nnx-1core"] / med["nnx-split"], 2)
        med["torch_speedup_two_cores"] = round(med["torch-1thread"] / med["torch"], 2)
        med["nnx_split_over_blas_only"] = round(med["nnx-blas"] / med["nnx-split"], 2)
        med["two_processes_bound_ms"] = med["nnx-half-x2"]
        summary[model] = med
    doc = {"schema": "nnx-bench-scaling/1", "batch": args.batch, "machine": desc, "runs": runs,
           "summary": summary, "gil_handover": gil_handover()}
    doc["machine"]["load_average_end"] = machine.load_average()
    text = json.dumps(doc, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    for model, med in summary.items():
        print(f"{model}: " + ", ".join(f"{k} {v}" for k, v in med.items()), file=sys.stderr)
    print(f"GIL hand-over: {doc['gil_handover']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
