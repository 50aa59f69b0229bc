"""``nnx train``: a recipe, a run folder, a Trainer, and lines that tell the truth.

The out folder and its lock are :mod:`nnx.run_folder`'s; the recipe and the rule
for ``--resume`` are :mod:`nnx.recipe`'s. Ctrl-C finishes the current step,
saves a resumable ``last.safetensors`` and exits with status 130 (a second
Ctrl-C stops at once); under ``--distributed`` the ranks agree on the step to
stop at.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from .cli import CliError, data_label, load_data, recorded_data, set_backend
from .recipe import DEFAULTS, RecipeError, resolve, saved_recipe
from .run_folder import RunFolderError, open_run_folder

#: ``--epochs`` when neither given nor recorded in a resumed run.
DEFAULT_EPOCHS = 10


def _optimizer(recipe: dict[str, Any], model: Any) -> Any:
    from . import optim

    params: Any = model
    if recipe["no_decay_bias_norm"]:
        params = optim.weight_decay_groups(model, recipe["weight_decay"])
    kind, lr, wd = recipe["optimizer"], recipe["lr"], recipe["weight_decay"]
    if kind == "momentum":
        return optim.MomentGD(params, lr=lr, mu=recipe["momentum"], weight_decay=wd)
    if kind in ("adam", "adamw"):
        cls = optim.Adam if kind == "adam" else optim.AdamW
        return cls(params, lr=lr, betas=tuple(recipe["betas"]), eps=recipe["eps"],
                   weight_decay=wd)
    if kind == "rmsprop":
        return optim.RMSprop(params, lr=lr, eps=recipe["eps"], weight_decay=wd,
                             momentum=recipe["momentum"])
    return optim.SGD(params, lr=lr, momentum=recipe["momentum"], weight_decay=wd,
                     nesterov=recipe["nesterov"])


def _scheduler(recipe: dict[str, Any], opt: Any, epochs: int, steps_per_epoch: int) -> Any:
    """The recipe's schedule; counted in epochs or batches (``--scheduler-interval``), with
    ``--warmup-epochs`` of linear warm-up from lr/10 first."""
    from . import lr_scheduler as ls

    kind, gamma = recipe["scheduler"], recipe["gamma"]
    per = steps_per_epoch if recipe["scheduler_interval"] == "step" else 1
    warm = recipe["warmup_epochs"] * per
    if kind == "onecycle":
        # MomentGD's mu is not a "momentum" OneCycleLR can cycle
        return ls.OneCycleLR(opt, max_lr=recipe["lr"], total_steps=epochs * per,
                             cycle_momentum=recipe["optimizer"] != "momentum")
    if kind == "plateau":
        return ls.ReduceLROnPlateau(opt, mode="min", factor=gamma, patience=recipe["patience"])
    if kind == "step":
        main = ls.StepLR(opt, step_size=recipe["step_size"] * per, gamma=gamma)
    elif kind == "multistep":
        main = ls.MultiStepLR(opt, milestones=[m * per for m in recipe["milestones"]], gamma=gamma)
    elif kind == "exponential":
        main = ls.ExponentialLR(opt, gamma=gamma ** (1 / per))
    elif kind == "cosine":
        main = ls.CosineAnnealingLR(opt, T_max=max(1, epochs * per - warm))
    else:
        main = None
    if not warm:
        return main
    warmup = ls.LinearLR(opt, start_factor=0.1, end_factor=1.0, total_iters=warm)
    if main is None:
        return warmup
    return ls.SequentialLR(opt, [warmup, main], milestones=[warm])


def _threads(value: str, model: Any, local_batch: int, distributed: bool) -> int:
    """The thread count to train with; an error rather than threads that would never run."""
    from .backends.cpu_threads import usable_cores
    from .parallel import MIN_PER_THREAD, auto_threads

    if value == "auto":
        return 1 if distributed else auto_threads(model, local_batch)
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise CliError(f"--threads must be 'auto' or a positive integer, got {value!r}")
    cores = usable_cores()
    if n > cores:
        raise CliError(f"--threads {n}: this process may use {cores} CPU cores; use --threads "
                       f"{cores} or less, or auto")
    if n > 1 and local_batch < n * MIN_PER_THREAD:
        per = " per rank" if distributed else ""
        raise CliError(f"--threads {n} gives each thread at least {MIN_PER_THREAD} samples: it "
                       f"needs a batch of {n * MIN_PER_THREAD} or more{per}, and the batch is "
                       f"{local_batch}; use --threads auto or 1, or a larger --batch-size")
    return n


def _data(args: argparse.Namespace, dataset: str, meta: dict[str, Any] | None,
          checkpoint: Path | None, say: Any, dist: Any) -> tuple[str | None, Any, dict[str, Any]]:
    """(absolute data folder or None for the sample / the cache, the data, its fingerprint);
    a resumed run must get the data it was trained on. Distributed, rank 0 downloads first."""
    from .data.fingerprint import differences, fingerprint

    config = (meta or {}).get("config") or {}
    recorded = recorded_data(config, checkpoint)
    root = args.data if args.data is not None else recorded
    if root is not None:
        root = str(Path(root).expanduser().resolve())
    if dist is not None and dist.world_size() > 1:
        if dist.rank() == 0:
            data = load_data(dataset, root, say)
        dist.barrier()  # the cache is complete before the other ranks read it
        if dist.rank() != 0:
            data = load_data(dataset, root)
    else:
        data = load_data(dataset, root, say)
    prints = fingerprint(data)
    if meta is None:
        return root, data, prints
    if "data_fingerprint" in config:
        diffs = differences(config["data_fingerprint"], prints)
        if diffs:
            raise CliError(f"--resume: the data in {data_label(dataset, root)} is not what "
                           f"{checkpoint} was trained on ({diffs[0]}); resume with the same data "
                           "(--data DIR)")
    elif args.data is not None and recorded is not None \
            and Path(recorded).resolve() != Path(args.data).resolve():
        raise CliError(f"--resume: {checkpoint} was trained with --data {recorded}, not "
                       f"{args.data}")
    return root, data, prints


def _transforms(recipe: dict[str, Any], data: Any, meta: dict[str, Any] | None
                ) -> tuple[Any, Any]:
    """(training transform, evaluation transform): augmentation on the training batches
    only, the same normalisation on both (a resumed run keeps its recorded values)."""
    from .data import transforms as T

    recorded = (((meta or {}).get("config") or {}).get("transforms") or {})
    if recorded.get("train") is not None or recorded.get("eval") is not None:
        train = None if recorded.get("train") is None else T.from_config(recorded["train"])
        val = None if recorded.get("eval") is None else T.from_config(recorded["eval"])
        return train, val
    norm = [T.Normalize(data.mean, data.std)] if recipe["normalize"] else []
    augment = []
    if recipe["augment"]:
        colour = data.shape[0] == 3  # digits are not mirror-symmetric; photos are
        augment = [T.RandomCrop(4 if colour else 2)] + ([T.RandomHorizontalFlip()] if colour
                                                        else [])
    train = T.Compose(augment + norm) if augment or norm else None
    val = T.Compose(norm) if norm else None
    return train, val


def _best_line(trainer: Any, folder: Path, checkpoint: Path | None) -> str:
    best = trainer.best_epoch
    rec = next((r for r in trainer.history["epochs"] if r["epoch"] == best), None)
    if rec is None:
        return ""
    score = rec["val_acc"] if rec["val_acc"] is not None else rec["train_acc"]
    line = f"; best epoch {best}: {'val_acc' if rec['val_acc'] is not None else 'train_acc'} " \
           f"{score:.4f}"
    if "best.safetensors" in trainer.written:
        return line
    for place in (folder, None if checkpoint is None else checkpoint.parent):
        if place is not None and (place / "best.safetensors").is_file():
            return line + f" (in {place / 'best.safetensors'}, saved before this resume)"
    return line + " (its checkpoint is not in this folder)"


def cmd_train(args: argparse.Namespace) -> int:
    import nnx

    from .checkpoint import load
    from .data import DataLoader
    from .models import CLI_MODELS, for_images

    dist = None
    if args.distributed:
        from . import distributed as dist

        dist.init()
    world = 1 if dist is None else dist.world_size()
    rank = 0 if dist is None else dist.rank()
    main = rank == 0
    say = _printer() if main else (lambda line: None)
    warnings.simplefilter("ignore", RuntimeWarning)  # overflow in a diverging step: reported below
    if args.data is not None and not args.data.strip():
        raise CliError("--data must name a folder, got an empty string")

    try:
        run = open_run_folder(args.out, args.resume, args.overwrite) if main else None
    except RunFolderError as exc:
        raise CliError(str(exc)) from None
    with run if run is not None else contextlib.nullcontext():
        folder, checkpoint = (run.path, run.checkpoint) if run is not None else (None, None)
        if world > 1:
            folder, checkpoint = dist.broadcast_object((folder, checkpoint))
        meta = load(checkpoint).meta if checkpoint is not None else None
        if meta is not None:
            _check_resumable(meta, checkpoint)
        given = {**{k: getattr(args, k) for k in DEFAULTS}, "data": args.data}
        try:
            recipe = resolve(given, saved_recipe(meta) if meta is not None else None,
                             str(checkpoint))
        except RecipeError as exc:
            raise CliError(str(exc)) from None
        saved_config = (meta or {}).get("config") or {}
        saved_epochs = saved_config.get("epochs")
        epochs = args.epochs or (saved_epochs if isinstance(saved_epochs, int)
                                 and saved_epochs >= 1 else DEFAULT_EPOCHS)
        # a schedule shaped by the run's length (cosine, onecycle) keeps its first horizon
        horizon = saved_config.get("schedule_epochs", saved_epochs) if meta is not None \
            else epochs
        if not isinstance(horizon, int) or horizon < 1:
            horizon = epochs
        if meta is None and recipe["warmup_epochs"] >= epochs:
            raise CliError(f"--warmup-epochs {recipe['warmup_epochs']}: the warm-up would take "
                           f"the whole run of {epochs} epoch{'s' if epochs > 1 else ''} and the "
                           "learning rate would never reach --lr; use fewer warm-up epochs or "
                           "more --epochs")
        if recipe["scheduler"] in ("cosine", "onecycle") and epochs > horizon:
            raise CliError(f"--epochs {epochs}: the {recipe['scheduler']} schedule of "
                           f"{checkpoint} was planned for {horizon} epochs and ends there; "
                           "train longer in a new run")

        device = args.device
        if device is None and dist is not None:  # one GPU per rank: local_rank % n (NNX_DEVICE wins)
            device = dist.device_for_rank(args.backend or os.environ.get("NNX_BACKEND", "").strip()
                                          or "auto")
        backend = set_backend(args.backend, device)
        if backend.note:
            say(f"backend: {backend.note}")
        root, data, prints = _data(args, recipe["dataset"], meta, checkpoint, say, dist)
        train_transform, eval_transform = _transforms(recipe, data, meta)
        nnx.manual_seed(recipe["seed"])
        model_name, model_args = CLI_MODELS[recipe["model"]]
        model = for_images(model_name, data.shape, len(data.classes), dtype=recipe["dtype"],
                           **model_args)
        opt = _optimizer(recipe, model)
        local_batch = recipe["batch_size"]
        if dist is not None:
            local_batch = dist.local_batch_size(recipe["batch_size"])  # clear error for a bad launch
            dist.broadcast_parameters(model)
        threads = _threads(args.threads, model, local_batch, dist is not None)
        train = DataLoader(data.train_images, data.train_labels, recipe["batch_size"],
                           shuffle=True, seed=recipe["seed"], rank=rank, world_size=world,
                           transform=train_transform)
        # every rank evaluates the whole held-out split: exact figures, identical on all ranks
        val = DataLoader(data.test_images, data.test_labels, 500, shuffle=False,
                         transform=eval_transform)
        sched = _scheduler(recipe, opt, horizon, len(train))
        config = {**recipe, "epochs": epochs, "schedule_epochs": horizon, "world_size": world,
                  "data": root,
                  "data_source": data.source, "data_fingerprint": prints,
                  "data_facts": data.facts(),
                  "transforms": {"train": None if train_transform is None
                                 else train_transform.config(),
                                 "eval": None if eval_transform is None
                                 else eval_transform.config()}}
        if meta is not None and meta.get("model_config") not in (None, model.config):
            raise CliError(f"--resume: {checkpoint} holds a {meta['model_config']} model, not "
                           f"the {model.config} its recorded recipe builds; the checkpoint is "
                           "inconsistent")
        if run is not None:
            run.log = say
        trainer = nnx.Trainer(model, opt, loss_fn=nnx.CrossEntropyLoss(
                                  label_smoothing=recipe["label_smoothing"]),
                              eval_loss_fn=nnx.CrossEntropyLoss(), scheduler=sched,
                              scheduler_interval=recipe["scheduler_interval"], out_dir=folder,
                              progress=args.progress, config=config, log=say,
                              distributed=dist is not None, threads=threads,
                              on_write=_write_guard(run),
                              clip_grad_norm=recipe["clip_grad_norm"] or None)
        if checkpoint is not None:
            trainer.resume(checkpoint)
            if trainer.step_in_epoch > len(train):
                raise CliError(f"--resume: {checkpoint} stands at step {trainer.step_in_epoch} of "
                               f"epoch {trainer.epoch + 1}, beyond the {len(train)} steps of an "
                               "epoch; the checkpoint is inconsistent")
            say(f"resumed from {checkpoint} at epoch {trainer.epoch}, step {trainer.step_in_epoch}")
        if trainer.epoch >= epochs:
            say(f"nothing to train: {checkpoint} has completed {trainer.epoch} epochs; pass "
                "--epochs N to train further")
            return 0
        if run is not None:
            for note in run.notes:
                say(note)
            if run.fresh:
                say(f"run folder {folder} (runs/latest points to it once it has saved)")
        n_params = sum(int(_numel(p.shape)) for p in model.parameters())
        say(f"data: {len(data.train_labels)} train / {len(data.test_labels)} held-out images "
            f"of {'×'.join(map(str, data.shape))} ({data.source})"
            + (f"; augmented: {train_transform!r}" if recipe["augment"] else "")
            + ("; normalised per channel" if recipe["normalize"] else ""))
        say(f"training {type(model).__name__} ({n_params:,} parameters, {recipe['dtype']}) on "
            f"{backend.name} [{backend.device}], {epochs} epoch{'s' if epochs > 1 else ''}, batch "
            f"{recipe['batch_size']}" + (f" over {world} ranks" if world > 1 else "") +
            (f", {trainer.threads} threads" if trainer.threads > 1 else ""))
        t0 = time.perf_counter()
        try:
            trainer.fit(train, val, epochs=epochs)
        except KeyboardInterrupt as exc:
            return _interrupted(say, exc, trainer, folder, world, args.backend)
        for s in (signal.SIGINT, signal.SIGTERM):  # finished: a late signal must not say otherwise
            signal.signal(s, signal.SIG_IGN)  # (nnx.cli.main restores the handlers it found)
        say(f"done in {time.perf_counter() - t0:.1f} s{_best_line(trainer, folder, checkpoint)}"
            + _wrote(folder, trainer.written))
        return 0


def _wrote(folder: Path, names: list[str]) -> str:
    names = [n for n in names if n != "curves.png"]  # the Trainer says so itself
    if not names:
        return ""
    return f"; wrote {folder / names[0]}" + "".join(f", {n}" for n in names[1:])


def _interrupted(say: Any, exc: KeyboardInterrupt, trainer: Any, folder: Path | None,
                 world: int, backend: str | None = None) -> int:
    """Tell what was saved and how to resume; the exit status of the signal (130 or 143)."""
    from .trainer import TrainingInterrupted

    if isinstance(exc, TrainingInterrupted):
        say(str(exc))
    else:  # a second signal: stopped inside a step
        epoch = trainer.last_saved_epoch
        kept = (f"the last checkpoint holds epoch {epoch}" if epoch is not None
                else "nothing of this run was saved")
        say(f"training stopped at once (second signal); the steps since the last checkpoint are "
            f"lost ({kept})")
    if folder is not None and (folder / "last.safetensors").is_file():
        launch = f"mpiexec -n {world} " if world > 1 else ""
        tail = " --distributed" if world > 1 else ""
        if backend:  # chosen by --backend: the resumed run must not fall back to auto
            tail += f" --backend {shlex.quote(backend)}"
        say(f"resume with: {launch}nnx train --resume --out {shlex.quote(str(folder))}{tail}")
    return 143 if trainer.stop_signal == signal.SIGTERM else 130


def _write_guard(run: Any) -> Any:
    """The Trainer's ``on_write``: the run folder's checks, as one-line CLI errors."""
    if run is None:
        return None

    def guard(name: str) -> None:
        try:
            run.before_write(name)
        except RunFolderError as exc:
            raise CliError(str(exc)) from None

    return guard


def _printer() -> Any:
    """print, flushed; once stdout is closed (``nnx train | head -1``) lines are dropped and
    training goes on."""
    state = {"open": True}

    def say(line: str) -> None:
        if not state["open"]:
            return
        try:
            print(line, flush=True)
        except BrokenPipeError:
            state["open"] = False
            with contextlib.suppress(OSError):
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process

    return say


#: What nnx train records in every checkpoint it writes; without it a checkpoint (e.g.
#: from nnx.Trainer in Python) cannot be resumed by the command line.
CLI_CONFIG_KEYS = ("model", "batch_size", "seed", "optimizer", "lr")


def _check_resumable(meta: dict[str, Any], checkpoint: Path | None) -> None:
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    missing = [k for k in CLI_CONFIG_KEYS if k not in config]
    if missing:
        raise CliError(f"--resume: {checkpoint} was not written by nnx train (its config lacks "
                       f"{', '.join(missing)}: the recipe and data order cannot be recovered); "
                       "resume it in Python with nnx.Trainer.resume")


def _numel(shape: Any) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


__all__ = ["cmd_train"]
