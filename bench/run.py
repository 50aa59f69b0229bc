"""Benchmark runner: ``python -m bench`` or ``python bench/run.py`` (see bench/README.md).

For each round, for each (model, batch), it starts one fresh process per
implementation — nnx on each backend and PyTorch's own model, alternating,
the order reversed every other round — and collects each process's median
step time and peak RSS. It prints a table to stderr (stdout with --table)
and writes the JSON to stdout or --out.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from bench import OPENBLAS_ENV_VARS, machine, report  # noqa: E402

MODELS = ("MLP", "LeNet5", "WideCNN")
BATCHES = (32, 128, 512)
NNX_BACKENDS = ("numpy", "torch", "cupy", "array_api_strict")
SCHEMA = "nnx-bench/1"
QUICK = {"models": "MLP", "batches": "32", "rounds": 1, "steps": 5, "warmup": 1, "max_time": 2.0}
DEFAULTS = {"models": ",".join(MODELS), "batches": ",".join(map(str, BATCHES)), "rounds": 5,
            "steps": 15, "warmup": 2, "max_time": 5.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench", description="Time one nnx training step against PyTorch's own.",
        epilog="Each (round, model, batch, implementation) runs in a fresh process. See bench/README.md.")
    p.add_argument("--models", help=f"comma list of {', '.join(MODELS)} (default: all)")
    p.add_argument("--batches", help="comma list of batch sizes (default: 32,128,512)")
    p.add_argument("--backends", default="auto",
                   help="nnx backends: comma list of numpy, torch, torch:cpu, torch:cuda, cupy, "
                        "array_api_strict; 'auto' (default) = numpy, torch on every device it has, "
                        "cupy when a GPU answers; 'none' = PyTorch only")
    p.add_argument("--torch", default="auto", dest="torch_devices",
                   help="devices for PyTorch's own reference: comma list of cpu, cuda; "
                        "'auto' (default) = cpu plus cuda when available; 'none' = no reference")
    p.add_argument("--rounds", type=int, help=f"rounds (default {DEFAULTS['rounds']})")
    p.add_argument("--steps", type=int, help=f"timed steps per process (default {DEFAULTS['steps']})")
    p.add_argument("--warmup", type=int, help=f"untimed steps first (default {DEFAULTS['warmup']})")
    p.add_argument("--max-time", type=float,
                   help="stop timing a process after this many seconds, once it has 5 steps "
                        f"(default {DEFAULTS['max_time']})")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="kill a measurement process after this many seconds (default 600)")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--nnx-threads", default="auto",
                   help="nnx.Trainer's threads: 'auto' (default; one per core on NumPy) or N "
                        "(1 = single-threaded NumPy element-wise work)")
    p.add_argument("--loop", action="store_true",
                   help="also time the README's explicit loop on NumPy (nnx-loop/numpy) and the "
                        "same with model.backward, which also returns the input's gradient "
                        "(nnx-loop-dx/numpy): "
                        "model(x), loss, model.backward(...), opt.step() without the Trainer")
    p.add_argument("--out", help="write the JSON here (default: stdout)")
    p.add_argument("--table", action="store_true",
                   help="print the table to stdout instead of the JSON (the JSON still goes to --out)")
    p.add_argument("--quick", action="store_true",
                   help="smoke-test settings: MLP, batch 32, 1 round, 5 steps (explicit flags win)")
    p.add_argument("--seed-conv", action=argparse.BooleanOptionalAction, default=True,
                   help="also time the course report's nested-loop Conv2d forward (default: on)")
    p.add_argument("--unset-openblas-env", action="store_true",
                   help=f"remove {' and '.join(OPENBLAS_ENV_VARS)} from the child processes' "
                        "environment (this process's is left alone)")
    p.add_argument("--fresh-malloc", action="store_true",
                   help="leave glibc's malloc thresholds at a fresh process's (default: set "
                        "to where a process that has loaded data settles; bench/README.md)")
    args = p.parse_args(argv)
    base = QUICK if args.quick else DEFAULTS
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.models = _split(args.models)
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    try:
        args.batches = [int(b) for b in _split(args.batches)]
    except ValueError:
        p.error(f"--batches must be integers, got {args.batches!r}")
    if args.rounds < 1 or args.steps < 1 or args.warmup < 0 or any(b < 1 for b in args.batches):
        p.error("--rounds, --steps and batch sizes must be >= 1, --warmup >= 0")
    if args.max_time <= 0 or args.timeout <= 0:
        p.error("--max-time and --timeout must be > 0 seconds")
    if args.nnx_threads != "auto" and (not args.nnx_threads.isdigit() or int(args.nnx_threads) < 1):
        p.error(f"--nnx-threads must be 'auto' or an int >= 1, got {args.nnx_threads!r}")
    if args.torch_devices not in ("auto", "none"):
        odd = [d for d in _split(args.torch_devices) if d not in ("cpu", "cuda")]
        if odd:
            p.error(f"--torch: devices are cpu and cuda (or auto, none), got {', '.join(odd)}")
    if args.loop and args.backends != "auto" and "numpy" not in _split(args.backends):
        p.error("--loop times the explicit loop on the numpy backend: add numpy to --backends")
    return args


def _split(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def plan_impls(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The implementations to measure (nnx backends and PyTorch references) and those skipped."""
    from nnx.backends import probe

    cuda = _cuda_available()
    auto = args.backends.strip() == "auto"
    tokens = ["numpy", "torch", "cupy"] if auto else [] if args.backends == "none" else _split(args.backends)
    impls: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for tok in tokens:
        name, _, dev = tok.replace("strict", "array_api_strict").partition(":")
        name = "array_api_strict" if name.startswith("array_api_") else name
        if name not in NNX_BACKENDS:
            raise SystemExit(f"bench: unknown backend {tok!r}; choose from {', '.join(NNX_BACKENDS)}")
        reason = probe(name)
        if reason is None and name == "torch" and dev.startswith("cuda") and not cuda:
            reason = "torch has no usable CUDA device here"
        if reason is not None:
            skipped.append({"impl": f"nnx/{tok}", "reason": reason})
            continue
        if name == "torch":
            devices = [dev] if dev else (["cpu", "cuda"] if cuda else ["cpu"])
            for d in devices:
                cls = "cuda" if d.startswith("cuda") else "cpu"
                impls.append(_nnx_impl(f"nnx/torch-{d}", "torch", d, cls))
        elif name == "cupy":
            impls.append(_nnx_impl("nnx/cupy", "cupy", dev or None, "cuda"))
        else:
            impls.append(_nnx_impl(f"nnx/{name}", name, None, "cpu"))
            if args.loop and name == "numpy":
                impls.append({**_nnx_impl("nnx-loop/numpy", name, None, "cpu"), "step": "loop"})
                impls.append({**_nnx_impl("nnx-loop-dx/numpy", name, None, "cpu"),
                              "step": "loop-dx"})
    ref_tokens = ["cpu", "cuda"] if args.torch_devices == "auto" else (
        [] if args.torch_devices == "none" else _split(args.torch_devices))
    refs = []
    for dev in ref_tokens:
        reason = probe("torch")
        if reason is None and dev.startswith("cuda") and not cuda:
            reason = "torch has no usable CUDA device here"
        if reason is not None:
            if not (args.torch_devices == "auto" and dev == "cuda"):
                skipped.append({"impl": f"torch/{dev}", "reason": reason})
            continue
        refs.append({"name": f"torch/{dev}", "kind": "torch", "backend": None, "device": dev,
                     "cls": "cuda" if dev.startswith("cuda") else "cpu"})
    ref_by_cls = {r["cls"]: r["name"] for r in refs}
    for impl in impls:
        impl["reference"] = ref_by_cls.get(impl["cls"])
    return _interleave(impls, refs), skipped


def _nnx_impl(name: str, backend: str, device: str | None, cls: str) -> dict[str, Any]:
    return {"name": name, "kind": "nnx", "backend": backend, "device": device, "cls": cls}


def _interleave(impls: list[dict[str, Any]], refs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per device class: first nnx impl, then PyTorch, then the other nnx impls."""
    order: list[dict[str, Any]] = []
    for cls in ("cpu", "cuda"):
        nn = [i for i in impls if i["cls"] == cls]
        rr = [r for r in refs if r["cls"] == cls]
        order.extend(nn[:1] + rr + nn[1:])
    return order


#: glibc's malloc settles on these once a process has freed a large block (its mmap
#: threshold rises to 32 MiB, the trim threshold to twice that), as every training
#: process has after loading its data. A bench process that never did keeps mmap-ing
#: and page-faulting its per-step buffers: PyTorch's LeNet-5 step at batch 128 measured
#: 8-10 ms that way against 5-6 ms settled on this machine (NumPy keeps its own cache
#: and barely changes). Both implementations' measurement processes get them.
SETTLED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}


def child_env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    if not args.fresh_malloc:
        for name, value in SETTLED_MALLOC.items():
            env.setdefault(name, value)
    if args.unset_openblas_env:
        for name in OPENBLAS_ENV_VARS:
            env.pop(name, None)
    return env


def _busy_seconds() -> float | None:
    """CPU-seconds all processes on this machine have spent busy, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu() -> float:
    """CPU-seconds used by this process and its finished children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    return total


def run_child(module: str, argv: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Run ``python -m module argv`` in a fresh process; its BENCH_RESULT JSON, or an error.

    Also measures the *foreign load*: the CPU cores other processes kept busy
    meanwhile (machine-wide busy time minus this process's and the child's CPU time,
    per second of wall time).
    """
    cmd = [sys.executable, "-m", module, *argv]
    busy0, cpu0, t0 = _busy_seconds(), _own_cpu(), time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=machine.ROOT, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "wall_s": timeout}
    wall = time.perf_counter() - t0
    busy1, cpu1 = _busy_seconds(), _own_cpu()
    foreign = None
    if busy0 is not None and busy1 is not None and wall > 0:
        foreign = round(max(0.0, (busy1 - busy0) - (cpu1 - cpu0)) / wall, 3)
    out: dict[str, Any] = {"wall_s": round(wall, 3), "foreign_load": foreign}
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            out["result"] = json.loads(line[len("BENCH_RESULT "):])
    if proc.returncode != 0 or "result" not in out:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        out["error"] = f"exit {proc.returncode}: {tail}"
        out.pop("result", None)
    return out


def worker_argv(args: argparse.Namespace, impl: dict[str, Any], model: str, batch: int) -> list[str]:
    argv = ["--impl", impl["kind"], "--model", model, "--batch", str(batch),
            "--steps", str(args.steps), "--warmup", str(args.warmup),
            "--max-time", str(args.max_time), "--lr", str(args.lr),
            "--weight-decay", str(args.weight_decay)]
    if impl["kind"] == "nnx":
        argv += ["--nnx-threads", str(args.nnx_threads), "--step", impl.get("step", "trainer")]
    if impl["backend"]:
        argv += ["--backend", impl["backend"]]
    if impl["device"]:
        argv += ["--device", impl["device"]]
    return argv


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Interrupted(Exception):
    """SIGTERM or Ctrl-C: stop measuring and report what was measured so far."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Interrupted(f"signal {signum}")


def measure_all(args: argparse.Namespace, impls: list[dict[str, Any]],
                measurements: list[dict[str, Any]]) -> None:
    """Every (round, model, batch, impl) in its own process, PyTorch and nnx alternating.

    Appends to ``measurements`` as it goes, so an interrupted run keeps what it measured.
    """
    env = child_env(args)
    total = args.rounds * len(args.models) * len(args.batches) * len(impls)
    n = 0
    for rnd in range(args.rounds):
        order = impls if rnd % 2 == 0 else impls[::-1]
        for model in args.models:
            for batch in args.batches:
                for impl in order:
                    n += 1
                    m = run_child("bench.worker", worker_argv(args, impl, model, batch), env,
                                  args.timeout)
                    m.update({"round": rnd, "model": model, "batch": batch, "impl": impl["name"]})
                    measurements.append(m)
                    shown = (f"{m['result']['median_ms']:.2f} ms" if "result" in m
                             else f"FAILED: {m['error']}")
                    _log(f"[{n}/{total}] round {rnd + 1} {model} b{batch} {impl['name']}: {shown}"
                         f" (foreign load {m.get('foreign_load')})")


def seed_conv(args: argparse.Namespace) -> dict[str, Any]:
    argv = ["--seed-repeats", "1" if args.quick else "3", "--nnx-repeats", "10" if args.quick else "50"]
    m = run_child("bench.seed_conv", argv, child_env(args), min(args.timeout, 300.0))
    if "result" in m:
        return {**m["result"], "foreign_load": m.get("foreign_load")}
    return {"error": m["error"]}


def build_document(args: argparse.Namespace) -> dict[str, Any]:
    """Run everything and return the results document (see bench/README.md)."""
    t0 = time.perf_counter()
    desc = machine.describe_machine()
    impls, skipped = plan_impls(args)
    for s in skipped:
        _log(f"bench: skipping {s['impl']}: {s['reason']}")
    if not impls:
        raise SystemExit("bench: nothing to measure (no usable backend or reference)")
    measurements: list[dict[str, Any]] = []
    interrupted = None
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        measure_all(args, impls, measurements)
        seed = seed_conv(args) if args.seed_conv else None
    except (Interrupted, KeyboardInterrupt) as exc:
        interrupted = str(exc) or type(exc).__name__
        seed = None
        _log(f"bench: interrupted ({interrupted}); reporting the {len(measurements)} measurements done")
    finally:
        signal.signal(signal.SIGTERM, previous)
    results = report.summarise(measurements, impls, args.models, args.batches)
    comparisons = report.compare(results)
    desc["load_average_end"] = machine.load_average()
    return {
        "schema": SCHEMA,
        "machine": desc,
        "settings": {
            "models": args.models, "batches": args.batches, "rounds": args.rounds,
            "steps": args.steps, "warmup": args.warmup, "max_time_s": args.max_time,
            "implementations": [{k: v for k, v in i.items() if k != "cls"} for i in impls],
            "optimizer": {"type": "SGD", "lr": args.lr, "momentum": 0.9,
                          "weight_decay": args.weight_decay},
            "loss": "cross-entropy", "dtype": "float32",
            "unset_openblas_env": args.unset_openblas_env, "fresh_malloc": args.fresh_malloc,
            "command": " ".join(["python -m bench", *sys.argv[1:]]),
        },
        "skipped": skipped,
        "results": results,
        "comparisons": comparisons,
        "targets": report.check_targets(comparisons),
        "scaling": report.scaling(results),
        "seed_conv": seed,
        "interrupted": interrupted,
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    doc = build_document(args)
    text = json.dumps(doc, indent=1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
        _log(f"bench: wrote {args.out}")
    elif not args.table:
        print(text)
    tab = report.table(doc)
    print(tab, file=sys.stdout if args.table else sys.stderr, flush=True)
    if doc["interrupted"]:
        return 2
    return 1 if any(r["errors"] for r in doc["results"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
