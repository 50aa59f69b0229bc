"""Command line: ``nnx train``, ``nnx evaluate CHECKPOINT``, ``nnx info``.

Errors end the program with one readable line on stderr and exit status 1
(2 for bad arguments); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

DEFAULTS = {
    "model": "lenet5", "epochs": 10, "batch_size": 64, "lr": 0.05, "optimizer": "sgd",
    "momentum": 0.9, "weight_decay": 1e-4, "scheduler": "multistep", "milestones": "5,8",
    "gamma": 0.1, "step_size": 5, "seed": 0, "out": "runs/latest",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nnx", description="Train and evaluate nnx models on MNIST.")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command")

    t = sub.add_parser("train", help="train a model (default: LeNet-5 on the bundled MNIST sample)")
    t.add_argument("--model", default=DEFAULTS["model"], choices=["mlp", "lenet5", "widecnn"])
    t.add_argument("--backend", default="auto",
                   help="numpy, torch, cupy, array_api_strict or auto (default: auto)")
    t.add_argument("--device", default=None, help="device for the backend (e.g. 1, cuda:0)")
    t.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    t.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    t.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    t.add_argument("--optimizer", default=DEFAULTS["optimizer"], choices=["sgd", "momentum"],
                   help="sgd: PyTorch's SGD (with --momentum); momentum: the seed's MomentGD")
    t.add_argument("--momentum", type=float, default=DEFAULTS["momentum"])
    t.add_argument("--nesterov", action="store_true")
    t.add_argument("--weight-decay", type=float, default=DEFAULTS["weight_decay"])
    t.add_argument("--scheduler", default=DEFAULTS["scheduler"],
                   choices=["none", "step", "multistep", "exponential"])
    t.add_argument("--step-size", type=int, default=DEFAULTS["step_size"], help="StepLR period")
    t.add_argument("--milestones", default=DEFAULTS["milestones"],
                   help="MultiStepLR milestones, comma separated (default 5,8)")
    t.add_argument("--gamma", type=float, default=DEFAULTS["gamma"])
    t.add_argument("--scheduler-interval", default="epoch", choices=["epoch", "step"])
    t.add_argument("--data", default=None,
                   help="folder with the four MNIST IDX files (default: bundled 5,000-image sample)")
    t.add_argument("--out", default=DEFAULTS["out"], help="output folder (default runs/latest)")
    t.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    t.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    t.add_argument("--resume", nargs="?", const="", default=None, metavar="CHECKPOINT",
                   help="resume from CHECKPOINT (default: OUT/last.safetensors)")
    t.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="force a progress bar")
    t.add_argument("--no-progress", dest="progress", action="store_false")
    t.add_argument("--threads", default="auto",
                   help="split each batch across this many threads on the NumPy backend "
                        "(default auto: one per core; 1 turns it off)")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI (launch with mpiexec -n N nnx train --distributed)")

    t.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks on errors")
    e = sub.add_parser("evaluate", help="accuracy and loss of a checkpoint on its held-out split")
    e.add_argument("checkpoint")
    e.add_argument("--backend", default="auto")
    e.add_argument("--device", default=None)
    e.add_argument("--data", default=None, help="override the data folder stored in the checkpoint")
    e.add_argument("--batch-size", type=int, default=500)
    e.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks on errors")

    sub.add_parser("info", help="backends usable here, devices and versions")
    return p


class CliError(Exception):
    """An error to report as one line."""


def _backend(name: str, device: Any) -> Any:
    import nnx

    if device is not None and str(device).isdigit():
        device = int(device)
    return nnx.set_backend(name, device)


def _load_data(root: str | None) -> Any:
    from .data import load_mnist

    return load_mnist(root)


def _optimizer(args: argparse.Namespace, model: Any) -> Any:
    from . import optim

    if args.optimizer == "momentum":
        return optim.MomentGD(model, lr=args.lr, mu=args.momentum, weight_decay=args.weight_decay)
    return optim.SGD(model, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
                     nesterov=args.nesterov)


def _scheduler(args: argparse.Namespace, opt: Any) -> Any:
    from . import lr_scheduler as ls

    if args.scheduler == "step":
        return ls.StepLR(opt, step_size=args.step_size, gamma=args.gamma)
    if args.scheduler == "multistep":
        try:
            milestones = [int(m) for m in str(args.milestones).split(",") if m.strip()]
        except ValueError:
            raise CliError(f"--milestones must be integers separated by commas, "
                           f"got {args.milestones!r}") from None
        return ls.MultiStepLR(opt, milestones=milestones, gamma=args.gamma)
    if args.scheduler == "exponential":
        return ls.ExponentialLR(opt, gamma=args.gamma)
    return None


def cmd_train(args: argparse.Namespace) -> int:
    import nnx

    from .data import DataLoader
    from .models import CLI_NAMES, MODELS

    dist = None
    if args.distributed:
        from . import distributed as dist

        dist.init()
    main = dist is None or dist.rank() == 0
    say = (lambda line: print(line, flush=True)) if main else (lambda line: None)

    backend = _backend(args.backend, args.device)
    if backend.note and main:
        say(f"backend: {backend.note}")
    out = Path(args.out)
    resume_path = None
    if args.resume is not None:
        resume_path = Path(args.resume) if args.resume else out / "last.safetensors"
        if not resume_path.is_file():
            raise CliError(f"--resume: no checkpoint at {resume_path}")
    data = _load_data(args.data)
    nnx.manual_seed(args.seed)
    name = MODELS[CLI_NAMES[args.model]]
    model = name(weight_decay=None, dtype=args.dtype)
    opt = _optimizer(args, model)
    sched = _scheduler(args, opt)
    world = 1 if dist is None else dist.world_size()
    rank = 0 if dist is None else dist.rank()
    if dist is not None:
        dist.local_batch_size(args.batch_size)  # a clear error for a bad launch
        dist.broadcast_parameters(model)
    train = DataLoader(data.train_images, data.train_labels, args.batch_size, shuffle=True,
                       seed=args.seed, rank=rank, world_size=world)
    # every rank evaluates the whole held-out split: exact figures, identical on all ranks
    val = DataLoader(data.test_images, data.test_labels, 500, shuffle=False)
    config = {
        "model": args.model, "data": args.data, "data_source": data.source, "seed": args.seed,
        "batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr,
        "momentum": args.momentum, "weight_decay": args.weight_decay,
        "scheduler": args.scheduler, "epochs": args.epochs, "world_size": world,
    }
    trainer = nnx.Trainer(model, opt, scheduler=sched, scheduler_interval=args.scheduler_interval,
                          out_dir=out, progress=args.progress, config=config, log=say,
                          distributed=dist is not None, threads=_threads(args.threads))
    if resume_path is not None:
        _check_resume_config(resume_path, config)
        trainer.resume(resume_path)
        say(f"resumed from {resume_path} at epoch {trainer.epoch}, step {trainer.step_in_epoch}")
    n_params = sum(int(_numel(p.shape)) for p in model.parameters())
    say(f"training {type(model).__name__} ({n_params:,} parameters) on {backend.name} "
        f"[{backend.device}], {len(data.train_labels)} train / {len(data.test_labels)} held-out "
        f"images, {args.epochs} epochs, batch {args.batch_size}" +
        (f" over {world} ranks" if world > 1 else "") +
        (f", {trainer.threads} threads" if trainer.threads > 1 else ""))
    t0 = time.perf_counter()
    try:
        history = trainer.fit(train, val, epochs=args.epochs)
    except KeyboardInterrupt as exc:
        say(f"{exc}; resume with: nnx train --resume {out / 'last.safetensors'} --out {out}")
        return 130
    best = trainer.best_epoch
    best_rec = next((r for r in history["epochs"] if r["epoch"] == best), None)
    score = "" if best_rec is None else f"; best epoch {best}: val_acc {best_rec['val_acc']:.4f}"
    say(f"done in {time.perf_counter() - t0:.1f} s{score}; wrote {out}/best.safetensors, "
        "last.safetensors, history.json")
    return 0


#: Run settings a resumed run must share with its checkpoint (they fix the data order).
RESUME_KEYS = {"model": "--model", "batch_size": "--batch-size", "seed": "--seed",
               "data": "--data"}


def _check_resume_config(path: Path, config: dict[str, Any]) -> None:
    from .checkpoint import load

    saved = load(path).meta.get("config") or {}
    diffs = [f"{flag} {saved[key]!r} there, {config[key]!r} here"
             for key, flag in RESUME_KEYS.items() if key in saved and saved[key] != config[key]]
    if diffs:
        raise CliError(f"--resume: {path} was trained with other settings ({'; '.join(diffs)}); "
                       "pass the same values, or train into a new --out")


def _threads(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise CliError(f"--threads must be 'auto' or a positive integer, got {value!r}")
    return n


def _numel(shape: Any) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def cmd_evaluate(args: argparse.Namespace) -> int:
    import nnx

    from .checkpoint import load, load_model
    from .data import DataLoader

    path = Path(args.checkpoint)
    if not path.is_file():
        raise CliError(f"no checkpoint at {path}")
    backend = _backend(args.backend, args.device)
    meta = load(path).meta
    config = meta.get("config") or {}
    root = args.data if args.data is not None else config.get("data")
    data = _load_data(root)
    model = load_model(path, backend=backend)
    val = DataLoader(data.test_images, data.test_labels, args.batch_size, shuffle=False)
    trainer = nnx.Trainer(model, nnx.optim.SGD(model, lr=0.0), log=lambda line: None, threads=1)
    metrics = trainer.evaluate(val)
    print(f"accuracy: {metrics['acc']:.4f}")
    print(f"loss: {metrics['loss']:.4f}")
    print(f"({metrics['n']} held-out images from {data.source}, backend {backend.name})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import platform

    import nnx
    from nnx import backends as B

    print(f"nnx {nnx.__version__}, Python {platform.python_version()} on {platform.machine()}")
    for name in B.KNOWN_BACKENDS:
        reason = B.probe(name)
        if reason is not None:
            print(f"  {name:17s} unavailable: {reason}")
            continue
        try:
            be = B.create_backend(name)
            versions = ", ".join(f"{k} {v}" for k, v in be.versions().items())
            print(f"  {name:17s} ok   device {be.device}  ({versions})")
        except Exception as exc:  # noqa: BLE001 - report, don't crash
            print(f"  {name:17s} unavailable: {exc}")
    auto = B.create_backend("auto")
    print(f"auto -> {auto.name}: {auto.note}")
    print(json.dumps({"available": B.available_backends()}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.getLogger("nnx").setLevel(logging.WARNING)  # the CLI prints its own lines
    commands = {"train": cmd_train, "evaluate": cmd_evaluate, "info": cmd_info}
    try:
        return commands[args.command](args)
    except Exception as exc:  # noqa: BLE001 - one readable line unless --debug
        if args.debug:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if getattr(args, "distributed", False):
            from . import distributed

            if distributed.world_size() > 1:  # the other ranks would wait forever
                distributed.abort(f"nnx {args.command}: error: {message}")
        print(f"nnx {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
