"""End to end: ``nnx train`` against a plain PyTorch loop with the same recipe.

    python -m bench e2e [--data ../shared/data/mnist] [--models MLP,LeNet5,WideCNN]
                        [--batches 64,128] [--epochs 3] [--rounds 3] [--out FILE]

Each run is a fresh process, timed from start to exit (start-up, data loading, every
epoch with its evaluation, and for nnx the checkpoints, history and plot it writes):
nnx is the real ``nnx train`` command with the course recipe (SGD momentum 0.9, lr
0.05, weight decay 1e-4, MultiStepLR at epochs 5 and 8, per-channel normalisation,
evaluation on the held-out split after every epoch); PyTorch is the loop a PyTorch
user writes for the same recipe (uint8 tensors indexed per batch, scaled and
normalised, ``F.cross_entropy``, ``torch.optim.SGD``, ``loss.item()`` per step,
evaluation under ``no_grad`` at batch 500), with as many threads as usable cores.
The two alternate, the order reversed every other round; the JSON has every time,
the per-epoch seconds each reported, and medians and ratios per (model, batch).
``--unset-openblas-env`` runs both without this machine's OpenBLAS kernel pin (see
bench/README.md); ``blas_core`` in the JSON says which kernel NumPy's OpenBLAS ran.

Without ``--data`` the data are synthetic with the full MNIST's shapes (60,000 /
10,000 images of 28×28), so the timings hold, not the accuracies.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench import OPENBLAS_ENV_VARS

TORCH_LOOP = r'''
import json, sys, time
import numpy as np, torch, torch.nn.functional as F
sys.path.insert(0, sys.argv[1])
from bench import models_torch
from nnx.datasets import load
from nnx.backends.cpu_threads import usable_cores
name, data_dir = sys.argv[2], sys.argv[5]
batch, epochs, seed = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[6])
torch.set_num_threads(usable_cores())
torch.manual_seed(seed)
d = load("mnist", root=data_dir)
X, Y = torch.from_numpy(d.train_images), torch.from_numpy(d.train_labels)
Xt, Yt = torch.from_numpy(d.test_images), torch.from_numpy(d.test_labels)
mean, std = d.mean[0], d.std[0]
model = models_torch.build(name)
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
sched = torch.optim.lr_scheduler.MultiStepLR(opt, [5, 8], 0.1)
seconds = []
for epoch in range(epochs):
    t0 = time.perf_counter()
    model.train()
    perm = torch.randperm(len(Y))
    total = 0.0
    for i in range(0, len(Y), batch):
        idx = perm[i:i + batch]
        x = ((X[idx].float() / 255 - mean) / std).unsqueeze(1)
        loss = F.cross_entropy(model(x), Y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
    sched.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(Yt), 500):
            x = ((Xt[i:i + 500].float() / 255 - mean) / std).unsqueeze(1)
            correct += int((model(x).argmax(1) == Yt[i:i + 500]).sum())
    seconds.append(time.perf_counter() - t0)
print("E2E " + json.dumps({"epoch_seconds": seconds, "val_acc": correct / len(Yt)}))
'''


def synthetic_mnist(folder: Path) -> Path:
    """60,000 / 10,000 random 28×28 images in the four IDX files (timing only)."""
    from nnx.data.idx import write_idx

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", 60000), ("t10k", 10000)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte",
                  rng.integers(0, 10, n).astype(np.uint8))
    return folder


def child_env(unset_openblas_env: bool) -> dict[str, str]:
    """This process's environment without NNX_BACKEND (and, if asked, without the
    OpenBLAS kernel pins: bench/README.md, ``--unset-openblas-env``)."""
    drop = {"NNX_BACKEND", *(OPENBLAS_ENV_VARS if unset_openblas_env else ())}
    return {k: v for k, v in os.environ.items() if k not in drop}


def blas_core(env: dict[str, str]) -> str | None:
    """The kernel NumPy's OpenBLAS runs under ``env`` (as ``nnx train`` will)."""
    code = ("from bench import machine; "
            "print((machine.numpy_blas().get('runtime') or {}).get('corename'))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[1], check=True)
    core = res.stdout.strip()
    return None if core in ("", "None") else core


MODELS = ("MLP", "LeNet5", "WideCNN")


class ChildFailed(RuntimeError):
    """A timed run exited with an error; the message ends with what it printed last."""


class Interrupted(Exception):
    """SIGTERM or Ctrl-C: stop and report the rows measured so far."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


def _run(what: str, cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run ``cmd``; (wall seconds, stdout), or ChildFailed with the end of its stderr. On
    Ctrl-C or SIGTERM the child is killed (subprocess.run does it) before this returns."""
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        tail = "\n".join((res.stderr.strip() or res.stdout.strip() or "(no output)")
                         .splitlines()[-5:])
        raise ChildFailed(f"{what} exited with status {res.returncode}:\n{tail}")
    return wall, res.stdout


def run_nnx(model: str, batch: int, epochs: int, data: str, out: Path,
            env: dict[str, str]) -> dict[str, Any]:
    nnx_cmd = str(Path(sys.executable).with_name("nnx"))
    cmd = [nnx_cmd, "train", "--model", model.lower(), "--batch-size", str(batch), "--epochs",
           str(epochs), "--data", data, "--out", str(out), "--overwrite", "--no-progress",
           "--backend", "numpy"]
    wall, stdout = _run(f"nnx train ({model}, batch {batch})", cmd, env)
    history = json.loads((out / "history.json").read_text())
    return {"wall": wall, "epoch_seconds": [e["seconds"] for e in history["epochs"]],
            "val_acc": history["epochs"][-1]["val_acc"], "log": stdout.splitlines()[-1]}


def run_torch(model: str, batch: int, epochs: int, data: str, seed: int,
              env: dict[str, str]) -> dict[str, Any]:
    root = str(Path(__file__).resolve().parents[1])
    cmd = [sys.executable, "-c", TORCH_LOOP, root, model, str(batch), str(epochs), data,
           str(seed)]
    wall, stdout = _run(f"the PyTorch loop ({model}, batch {batch})", cmd, env)
    line = next(ln for ln in stdout.splitlines() if ln.startswith("E2E "))
    return {"wall": wall, **json.loads(line[4:])}


def _positive_ints(p: argparse.ArgumentParser, flag: str, text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        p.error(f"{flag}: a comma list of positive ints, got {text!r}")
    if not values or min(values) < 1:
        p.error(f"{flag}: a comma list of positive ints, got {text!r}")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench e2e", description=__doc__.splitlines()[0])
    p.add_argument("--data", help="the full MNIST folder (default: synthetic data of its shape)")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}")
    p.add_argument("--batches", default="64,128")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", help="write the JSON here (default: stdout)")
    p.add_argument("--unset-openblas-env", action="store_true",
                   help=f"remove {' and '.join(OPENBLAS_ENV_VARS)} from both runs' environment "
                        "(bench/README.md: the pinned kernel vs OpenBLAS's own choice)")
    args = p.parse_args(argv)
    args.models = args.models.split(",")
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        p.error(f"--models: unknown {', '.join(map(repr, unknown))}; choose from "
                f"{', '.join(MODELS)}")
    args.batches = _positive_ints(p, "--batches", args.batches)
    for flag, value in (("--epochs", args.epochs), ("--rounds", args.rounds)):
        if value < 1:
            p.error(f"{flag} must be >= 1, got {value}")
    if args.data is not None and not Path(args.data).is_dir():
        p.error(f"--data: {args.data} is not a folder (the MNIST files' folder)")
    if args.out is not None:
        out = Path(args.out)
        try:  # fail now, not after the whole run
            out.parent.mkdir(parents=True, exist_ok=True)
            out.touch()
        except OSError as e:
            p.error(f"--out: cannot write {out}: {e.strerror or e}")
    return args


def measure(args: argparse.Namespace, env: dict[str, str], data: str, tmp: Path,
            rows: list[dict[str, Any]]) -> None:
    """Every (round, model, batch), nnx and PyTorch alternating; appends to ``rows``."""
    for r in range(args.rounds):
        for model in args.models:
            for batch in args.batches:
                order = ("nnx", "torch") if r % 2 == 0 else ("torch", "nnx")
                row: dict[str, Any] = {"round": r, "model": model, "batch": batch}
                for impl in order:
                    row[impl] = (run_nnx(model, batch, args.epochs, data, tmp / "run", env)
                                 if impl == "nnx" else
                                 run_torch(model, batch, args.epochs, data, r, env))
                row["ratio"] = row["nnx"]["wall"] / row["torch"]["wall"]
                print(f"round {r} {model} batch {batch}: nnx {row['nnx']['wall']:.1f} s, "
                      f"torch {row['torch']['wall']:.1f} s, ratio {row['ratio']:.2f}",
                      file=sys.stderr, flush=True)
                rows.append(row)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    summary = {}
    for key in dict.fromkeys(f"{r['model']} batch {r['batch']}" for r in rows):
        sel = [r for r in rows if f"{r['model']} batch {r['batch']}" == key]
        ratios = [r["ratio"] for r in sel]
        epoch_ratio = [statistics.median(r["nnx"]["epoch_seconds"]) /
                       statistics.median(r["torch"]["epoch_seconds"]) for r in sel]
        summary[key] = {
            "nnx_wall_median": statistics.median(r["nnx"]["wall"] for r in sel),
            "torch_wall_median": statistics.median(r["torch"]["wall"] for r in sel),
            "ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios), "epoch_ratio_median": statistics.median(epoch_ratio)}
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = child_env(args.unset_openblas_env)
    from bench import machine

    desc = machine.describe_machine()  # before the runs: load_average_start means that
    rows: list[dict[str, Any]] = []
    stopped = failed = None
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = args.data or str(synthetic_mnist(Path(tmp) / "mnist"))
            measure(args, env, data, Path(tmp), rows)
    except (Interrupted, KeyboardInterrupt) as exc:
        stopped = str(exc) or type(exc).__name__
        print(f"bench e2e: interrupted ({stopped}); reporting the {len(rows)} rows done",
              file=sys.stderr)
    except ChildFailed as exc:
        failed = str(exc)
        print(f"bench e2e: {failed}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGTERM, previous)
    desc["load_average_end"] = machine.load_average()
    summary = summarise(rows)
    result = {"schema": "nnx-bench-e2e/1", "epochs": args.epochs,
              "unset_openblas_env": args.unset_openblas_env, "blas_core": blas_core(env),
              "data": args.data or "synthetic (full MNIST shapes)",
              "machine": desc, "rows": rows, "summary": summary,
              "interrupted": stopped, "failed": failed}
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    for key, s in summary.items():
        print(f"{key}: nnx/torch end to end {s['ratio_median']:.2f} "
              f"({s['ratio_min']:.2f}-{s['ratio_max']:.2f}), per epoch "
              f"{s['epoch_ratio_median']:.2f}", file=sys.stderr)
    return 2 if stopped else 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
