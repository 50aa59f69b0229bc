"""Command line: ``nnx train``, ``nnx evaluate CHECKPOINT``, ``nnx info``,
``nnx export CHECKPOINT OUT.onnx``, ``nnx predict CHECKPOINT FILE...``.

Errors end the program with one readable line on stderr and exit status 1
(2 for bad arguments); ``--debug`` shows the traceback instead. Ctrl-C ends
any command with ``interrupted`` and exit status 130, SIGTERM with ``terminated``
and 143 (``nnx train`` first saves a resumable checkpoint, see
:mod:`nnx.cli_train`). ``--backend`` defaults to ``$NNX_BACKEND``, else ``auto``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from .backends import KNOWN_BACKENDS
from .recipe import CHOICES, DEFAULTS, show


class CliError(Exception):
    """An error to report as one line."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _recipe_flag(parser: argparse.ArgumentParser, key: str, help: str, **kw: Any) -> None:
    """A recipe flag: its default is applied later (None here means "not given"), so that
    ``--resume`` can tell a flag given from a flag left out."""
    parser.add_argument("--" + key.replace("_", "-"), dest=key, default=None,
                        help=f"{help} (default: {show(DEFAULTS[key])})", **kw)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nnx", description="Train and evaluate nnx models on MNIST, "
                                "Fashion-MNIST and CIFAR-10.")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command")

    t = sub.add_parser(
        "train", help="train a model (default: LeNet-5 on the bundled MNIST sample)",
        description="Train a model. Recipe flags (model, dtype, seed, batch size, optimizer, "
                    "lr, momentum, nesterov, weight decay, scheduler and its settings) left out "
                    "of a --resume are taken from the checkpoint; given with other values, "
                    "they are an error.")
    _recipe_flag(t, "dataset", "sample (bundled, offline), mnist, fashion-mnist or cifar10 "
                 "(downloaded once into the cache, or read from --data DIR)",
                 choices=CHOICES["dataset"])
    _recipe_flag(t, "normalize", "normalise each channel with the training data's mean and std",
                 action="store_const", const=True)
    t.add_argument("--no-normalize", dest="normalize", action="store_const", const=False,
                   help="feed pixels scaled to [0, 1] as they are (the course report's recipe)")
    _recipe_flag(t, "augment", "random crops of the zero-padded image (2 px for digits, 4 for "
                 "CIFAR-10) and, for CIFAR-10, horizontal flips, on the training batches",
                 action="store_const", const=True)
    _recipe_flag(t, "model", "network", choices=CHOICES["model"])
    t.add_argument("--backend", default=None,
                   help=f"{', '.join(KNOWN_BACKENDS)} or auto (default: $NNX_BACKEND, else "
                        "auto)")
    t.add_argument("--device", default=None,
                   help="device for the backend (e.g. 1, cuda:0); default under --distributed: GPU "
                        "local_rank %% count (NNX_DEVICE per process wins)")
    t.add_argument("--epochs", type=_positive_int, default=None,
                   help="train until this many epochs are done (default: 10, or the resumed "
                        "run's)")
    _recipe_flag(t, "batch_size", "global batch size", type=_positive_int)
    _recipe_flag(t, "lr", "initial learning rate", type=float)
    _recipe_flag(t, "optimizer", "sgd: PyTorch's SGD (with --momentum); momentum: the course "
                 "report's momentum form (MomentGD); adam, adamw, rmsprop: PyTorch's (their lr and "
                 "weight decay default to PyTorch's: 1e-3 / 0, 1e-3 / 1e-2, 1e-2 / 0)",
                 choices=CHOICES["optimizer"])
    _recipe_flag(t, "momentum", "momentum μ (sgd, momentum, rmsprop; rmsprop's default: 0.0)",
                 type=float)
    _recipe_flag(t, "nesterov", "Nesterov momentum (--optimizer sgd)", action="store_const",
                 const=True)
    _recipe_flag(t, "weight_decay", "weight decay λ (L2; decoupled for adamw)", type=float)
    _recipe_flag(t, "betas", "Adam's β1,β2 (adam, adamw)")
    _recipe_flag(t, "eps", "the denominator's ε (adam, adamw, rmsprop)", type=float)
    _recipe_flag(t, "no_decay_bias_norm", "no weight decay on biases and normalisation "
                 "parameters (every 1-D parameter)", action="store_const", const=True)
    _recipe_flag(t, "scheduler", "learning-rate schedule", choices=CHOICES["scheduler"])
    _recipe_flag(t, "step_size", "StepLR period", type=_positive_int)
    _recipe_flag(t, "milestones", "MultiStepLR milestones, comma separated")
    _recipe_flag(t, "gamma", "the schedule's decay factor (plateau: the reduction factor)",
                 type=float)
    _recipe_flag(t, "patience", "plateau: epochs without improvement before a reduction",
                 type=int)
    _recipe_flag(t, "warmup_epochs", "a linear warm-up from lr/10 over this many epochs before "
                 "the schedule", type=int)
    _recipe_flag(t, "scheduler_interval", "step the schedule per epoch or per batch (onecycle: "
                 "per batch)", choices=CHOICES["scheduler_interval"])
    _recipe_flag(t, "clip_grad_norm", "clip the gradients' total 2-norm to this (0: off)",
                 type=float)
    _recipe_flag(t, "label_smoothing", "cross-entropy label smoothing ε in training",
                 type=float)
    t.add_argument("--data", default=None,
                   help="folder with the dataset's files (without --dataset: the four MNIST IDX "
                        "files, either naming, raw or .gz)")
    t.add_argument("--out", default=None,
                   help="output folder (default: a new runs/<date-time> folder, with runs/latest "
                        "pointing to the newest run); a folder holding a run needs --resume or "
                        "--overwrite")
    t.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (its files are deleted when training "
                        "starts)")
    _recipe_flag(t, "seed", "seed of the initial weights and the batch order", type=int)
    _recipe_flag(t, "dtype", "parameter and batch dtype", choices=CHOICES["dtype"])
    t.add_argument("--resume", nargs="?", const="", default=None, metavar="CHECKPOINT",
                   help="continue a run from CHECKPOINT (default: OUT/last.safetensors, or the "
                        "run runs/latest points to)")
    t.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="force a progress bar")
    t.add_argument("--no-progress", dest="progress", action="store_false")
    t.add_argument("--threads", default="auto",
                   help="split each batch across this many threads on the NumPy backend "
                        "(default auto: one per core for conv nets, at least 32 samples each; "
                        "1 turns it off)")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI (launch with mpiexec -n N nnx train --distributed)")
    t.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks on errors")

    e = sub.add_parser("evaluate", help="accuracy and loss of a checkpoint on its held-out split")
    e.add_argument("checkpoint")
    e.add_argument("--backend", default=None,
                   help="default: $NNX_BACKEND, else auto")
    e.add_argument("--device", default=None)
    e.add_argument("--data", default=None,
                   help="evaluate on the data in this folder instead of the recorded one")
    e.add_argument("--batch-size", type=_positive_int, default=500)
    e.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks on errors")

    sub.add_parser("info", help="backends usable here, devices and versions")

    x = sub.add_parser(
        "export", help="write a checkpoint's model as an ONNX file",
        description="Write the checkpoint's model as an ONNX graph. Its input 'input' is float32 "
                    "(batch, C, H, W) pixels scaled to [0, 1] (the normalisation recorded in the "
                    "checkpoint is the graph's first step); its output 'logits' is (batch, "
                    "classes). With onnxruntime installed, the file is checked against nnx.")
    x.add_argument("checkpoint")
    x.add_argument("output", help="the .onnx file to write (replaced if it exists)")
    x.add_argument("--opset", type=int, default=17,
                   help="ONNX opset, 17 or newer (from 20, GELU is ONNX's Gelu; default: 17)")
    x.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks on errors")

    r = sub.add_parser(
        "predict", help="classify image files (PNG, JPEG, .npy) with a checkpoint",
        description="Print the most probable class of each image: its index, its name and its "
                    "probability. Images are converted to the model's channel count, resized "
                    "to its input size, scaled to [0, 1] and normalised as the checkpoint "
                    "records. PNG and JPEG files need Pillow (pip install 'nnx-array[predict]'); "
                    ".npy files hold uint8 pixels or floats in [0, 1], one image or a stack.")
    r.add_argument("checkpoint")
    r.add_argument("files", nargs="+", metavar="FILE")
    r.add_argument("--top", type=_positive_int, default=1,
                   help="print the K most probable classes (default: 1)")
    r.add_argument("--invert", action="store_true",
                   help="invert the pixels (dark strokes on a light background, for models "
                        "trained on MNIST's light-on-dark digits)")
    r.add_argument("--backend", default=None, help="default: $NNX_BACKEND, else auto")
    r.add_argument("--device", default=None)
    r.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks on errors")
    return p


def set_backend(name: str | None, device: Any) -> Any:
    import nnx

    if name is None:
        name = os.environ.get("NNX_BACKEND", "").strip() or "auto"
    if device is not None and str(device).isdigit():
        device = int(device)
    return nnx.set_backend(name, device)


def load_data(dataset: str, root: str | None, say: Any = None) -> Any:
    from .datasets import load

    return load(dataset, root, log=say)


def recorded_dataset(config: dict[str, Any], recorded_root: str | None) -> str:
    """The dataset a checkpoint was trained on (nnx 0.1 recorded only the folder)."""
    name = config.get("dataset")
    if name is None:
        return "sample" if recorded_root is None else "mnist"
    if name not in CHOICES["dataset"]:
        raise CliError(f"config.dataset must be one of {', '.join(CHOICES['dataset'])}, got "
                       f"{name!r}")
    return name


def recorded_data(config: dict[str, Any], path: Any) -> str | None:
    """The data folder a checkpoint's config records (None: the bundled sample)."""
    recorded = config.get("data")
    if recorded is not None and not isinstance(recorded, str):
        raise CliError(f"{path}: config.data must be a folder name or null, got {recorded!r}")
    return recorded


def data_label(dataset: str, root: str | None) -> str:
    if root is not None:
        return str(root)
    return "the bundled sample" if dataset == "sample" else f"the cached {dataset}"


def eval_transform(config: dict[str, Any], path: Any) -> Any:
    """The evaluation transform recorded in a checkpoint's config (None: none)."""
    from .data.transforms import from_config

    spec = (config.get("transforms") or {}).get("eval")
    if spec is None:
        return None
    try:
        return from_config(spec)
    except ValueError as exc:
        raise CliError(f"{path}: config.transforms.eval: {exc}") from None


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .checkpoint import load, load_model
    from .data import DataLoader
    from .data.fingerprint import differences, fingerprint
    from .trainer import evaluate

    path = Path(args.checkpoint)
    if path.is_dir():
        hint = f"; evaluate {path / 'best.safetensors'}" if (path / "best.safetensors").is_file() \
            else ""
        raise CliError(f"{path} is a folder, not a checkpoint{hint}")
    if not path.is_file():
        raise CliError(f"no checkpoint at {path}")
    backend = set_backend(args.backend, args.device)
    config = load(path).meta.get("config") or {}
    recorded = recorded_data(config, path)
    dataset = recorded_dataset(config, recorded)
    root = args.data if args.data is not None else recorded
    data = load_data(dataset, root)
    if "data_fingerprint" in config:
        diffs = differences(config["data_fingerprint"], fingerprint(data), splits=("test",))
        if diffs and args.data is None:
            raise CliError(f"the data in {data_label(dataset, root)} is not what {path} was trained on "
                           f"({diffs[0]}); to evaluate on other data, pass --data DIR")
        if diffs:
            print(f"note: {data_label(dataset, root)} holds other data than {path} was trained on "
                  f"({diffs[0]})")
    elif args.data is None and recorded is not None and not Path(recorded).is_absolute():
        print(f"note: {path} records the data folder {recorded!r} relative to where it was "
              f"trained and no fingerprint (nnx 0.1); it was read from {Path(recorded).resolve()} "
              "and could not be checked")
    model = load_model(path, backend=backend)
    val = DataLoader(data.test_images, data.test_labels, args.batch_size, shuffle=False,
                     transform=eval_transform(config, path))
    metrics = evaluate(model, val)
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


def _checkpoint_path(text: str) -> Path:
    path = Path(text)
    if path.is_dir():
        hint = f"; use {path / 'best.safetensors'}" if (path / "best.safetensors").is_file() else ""
        raise CliError(f"{path} is a folder, not a checkpoint{hint}")
    if not path.is_file():
        raise CliError(f"no checkpoint at {path}")
    return path


def cmd_export(args: argparse.Namespace) -> int:
    """``nnx export CHECKPOINT OUT.onnx``: the model as ONNX, with the recorded normalisation
    as its first step; checked against nnx with onnxruntime when it is installed."""
    import numpy as np

    from .checkpoint import load
    from .onnx_export import INPUT_NAME, OUTPUT_NAME, export_onnx
    from .predict import input_spec

    path = _checkpoint_path(args.checkpoint)
    out = Path(args.output)
    if out.is_dir():
        raise CliError(f"{out} is a folder; give the .onnx file to write")
    ck = load(path)
    spec = input_spec(ck)
    model = ck.build_model("numpy")
    meta = {"nnx_checkpoint": path.name, "classes": json.dumps(list(spec.classes)),
            "model_config": json.dumps(ck.meta.get("model_config"))}
    out.parent.mkdir(parents=True, exist_ok=True)  # as nnx train --out does
    export_onnx(model, out, spec.shape, normalize=spec.normalize, opset=args.opset, metadata=meta)
    dims = ", ".join(map(str, spec.shape))
    norm = "normalised in the graph" if spec.normalize is not None else "no normalisation"
    print(f"wrote {out}: {type(model).__name__}, opset {args.opset}, input {INPUT_NAME!r} float32 "
          f"(batch, {dims}) pixels in [0, 1] ({norm}), output {OUTPUT_NAME!r} (batch, "
          f"{len(spec.classes) or '?'})")
    print(f"(input shape and classes {spec.source})")
    try:
        import onnxruntime
    except ImportError:
        print("(pip install onnxruntime to check the file against nnx)")
        return 0
    from .predict import probabilities

    x = np.random.default_rng(0).random((4, *spec.shape), dtype=np.float32)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0].astype(np.float64)
    got = np.exp(got - got.max(axis=1, keepdims=True))
    got /= got.sum(axis=1, keepdims=True)
    want = probabilities(model, x, spec)
    diff = float(np.abs(got - want).max())
    if not diff <= 1e-4:
        raise CliError(f"onnxruntime's probabilities for {out} differ from nnx's by {diff:.3g} on "
                       "random inputs; please report this")
    print(f"onnxruntime {onnxruntime.__version__} agrees with nnx: probabilities within "
          f"{diff:.1e} on 4 random inputs")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """``nnx predict CHECKPOINT FILE... [--top K]``: one line per image."""
    from .predict import format_prediction, predict_files

    path = _checkpoint_path(args.checkpoint)
    backend = set_backend(args.backend, args.device)
    for p in predict_files(path, args.files, top=args.top, backend=backend, invert=args.invert):
        print(format_prediction(p))
    return 0


def _abort_other_ranks(args: argparse.Namespace | None, message: str) -> None:
    """Distributed, end every rank (the others would wait forever in a collective)."""
    if getattr(args, "distributed", False):
        from . import distributed
        from .distributed import _world

        # the world as it stands: starting MPI here could fail again (a bad NNX_DISTRIBUTED)
        if _world._WORLD.initialized and _world._WORLD.size > 1:
            distributed.abort(message)


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into an exception so that clean-up (locks, empty folders) runs."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated


def _message(exc: BaseException) -> str:
    """One line for an error: an OSError as its reason and file, without "[Errno N]"."""
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    else:
        text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the command line (``argv`` None: this process's arguments, and the process ends
    after: late signals are ignored; otherwise the signal handlers are restored)."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    if handlers[signal.SIGTERM] is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    parser = _parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
        if args.command is None:
            parser.print_help()
            return 2
        logging.getLogger("nnx").setLevel(logging.WARNING)  # the CLI prints its own lines
        from .cli_train import cmd_train

        commands = {"train": cmd_train, "evaluate": cmd_evaluate, "info": cmd_info,
                    "export": cmd_export, "predict": cmd_predict}
        return commands[args.command](args)
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated) or \
            getattr(exc, "signum", signal.SIGINT) == signal.SIGTERM
        word = "terminated" if terminated else "interrupted"
        command = getattr(locals().get("args"), "command", None) or ""
        _abort_other_ranks(locals().get("args"), f"nnx {command}: {word}")
        print(f"nnx {command}: {word}".replace("nnx : ", "nnx: "), file=sys.stderr)
        return 143 if terminated else 130
    except Exception as exc:  # noqa: BLE001 - one readable line unless --debug
        if args.debug:
            raise
        message = _message(exc)
        _abort_other_ranks(args, f"nnx {args.command}: error: {message}")
        print(f"nnx {args.command}: error: {message}", file=sys.stderr)
        return 1
    finally:  # the work is done: a late Ctrl-C must not turn the exit status into 130
        for s, h in handlers.items():
            signal.signal(s, signal.SIG_IGN if argv is None else h)


if __name__ == "__main__":
    sys.exit(main())
