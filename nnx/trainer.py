"""Trainer: fit, evaluate, history, checkpoints, resume; and :func:`evaluate` on its own.

One epoch: for every batch, forward → loss → backward → (gradient all-reduce
when distributed) → optimizer step, with the scheduler stepped per iteration or
per epoch. After each epoch the model is evaluated on the validation loader,
``history.json`` is written, ``best.safetensors`` is replaced when ``val_acc``
improves (the earliest epoch wins ties) and ``last.safetensors`` always. A
non-finite loss stops training before the update with :class:`TrainingDiverged`
and writes nothing, so the last good checkpoints stay. Ctrl-C finishes the
current step, saves a resumable ``last.safetensors`` and raises
:class:`TrainingInterrupted` (a KeyboardInterrupt); SIGTERM (``kill``, ``timeout``,
a batch scheduler) is handled the same way. Distributed, the ranks agree on
stopping at the same step, so an interrupt that reaches one rank stops them all.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from . import backends as _backends
from ._array import dtype_name, namespace_of
from .atomic import write_json_atomic
from .backend import device_scope
from .loss import CrossEntropyLoss
from .lr_scheduler import LRScheduler
from .module import Module, Sequential, backend_of
from .optim.optimizer import Optimizer
from .parallel import auto_threads, correct_count


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names epoch, step and lr."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM: ``signum``) stopped training after a step; ``checkpoint`` is the
    resumable file saved then (None when the Trainer writes no files)."""

    def __init__(self, message: str, checkpoint: Path | None,
                 signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint
        self.signum = int(signum)


#: The signals that stop training gracefully: finish the step, save, stop.
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM") if hasattr(signal, n))


def model_placement(model: Module) -> tuple[Any, str | None]:
    """(Backend, dtype name) of the model's parameters; (None, None) without parameters."""
    params = model.parameters()
    if not params:
        return None, None
    return backend_of(params[0].data), dtype_name(params[0].dtype)


def evaluate(model: Module, loader: Iterable[tuple[Any, Any]], loss_fn: Any = None
             ) -> dict[str, float]:
    """Mean loss (over samples) and accuracy of ``model`` on ``loader``, in eval mode.

    ``loss_fn`` defaults to :class:`~nnx.CrossEntropyLoss` (a mean over its batch:
    each batch's mean is weighted by its size). An nnx DataLoader yields its
    batches on the model's backend and in its dtype. Returns ``{"loss", "acc", "n"}``;
    the model's training mode is restored afterwards.
    """
    loss_fn = loss_fn if loss_fn is not None else CrossEntropyLoss()
    was_training = model.training
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    if hasattr(loader, "batches"):
        backend, dtype = model_placement(model)
        batches = loader.batches(0, backend=None if loader.backend else backend, dtype=dtype)
    else:
        batches = loader
    params = model.parameters()
    # the label check is read with the sums (one transfer), not once per batch
    defer = hasattr(loss_fn, "defer_label_check")
    deferred_before = defer and loss_fn.defer_label_check
    with device_scope(params[0].data if params else None):  # CuPy: on the model's GPU
        try:
            if defer:
                loss_fn.defer_label_check = True
            for x, y in batches:
                out = model(x)
                n = int(out.shape[0])
                loss_sum = loss_sum + loss_fn(out, y) * n  # stays on the device
                correct = correct + correct_count(out, y, as_int=False)
                count += n
        finally:
            model.train(was_training)
            if defer:
                loss_fn.defer_label_check = deferred_before
        if count == 0:
            raise ValueError("evaluate: the loader yielded no batches")
        flag = loss_fn.label_error() if defer else None
        values = read_host([loss_sum, correct] + ([flag] if flag is not None else []))
        if flag is not None:
            loss_fn.raise_label_error(bool(values.pop()))
        loss_sum, correct = values  # one transfer for the whole pass
    return {"loss": loss_sum / count, "acc": int(correct) / count, "n": int(count)}


def read_host(values: list[Any]) -> list[float]:
    """Python floats of ``values`` (numbers, or 0-d arrays of one device), with at most one
    device-to-host transfer for all of them."""
    arrays = [v for v in values if not isinstance(v, (int, float))]
    if not arrays:
        return [float(v) for v in values]
    xp = namespace_of(arrays[0])
    host = iter(_backends.to_numpy(xp.stack([xp.astype(xp.reshape(a, ()), xp.float64)
                                             for a in arrays])).tolist())
    return [float(v) if isinstance(v, (int, float)) else next(host) for v in values]


class Trainer:
    """Train ``model`` with ``optimizer`` on batches of (images, integer labels).

    Parameters
    ----------
    model, optimizer, loss_fn, scheduler
        ``loss_fn`` defaults to :class:`~nnx.CrossEntropyLoss`.
    scheduler_interval : ``"epoch"`` or ``"step"``
        Whether ``scheduler.step()`` runs after every epoch or every iteration.
    out_dir : folder for ``best.safetensors``, ``last.safetensors``, ``history.json``
        and ``curves.png`` (None: write nothing).
    progress : show a tqdm bar (default: when stderr is a terminal); otherwise one
        plain log line per epoch.
    config : JSON-able facts stored in checkpoints (model, data, recipe) so that
        ``nnx evaluate`` and ``--resume`` can rebuild the run.
    log : where lines go (default: print to stdout).
    threads : ``"auto"`` splits each batch across the CPU cores on the NumPy backend for
        convolutional nets (:mod:`nnx.parallel`; same gradients up to float summation
        order); an int sets the count, 1 turns it off. The Trainer sets the model's
        ``threads``, so a plain loop over the model afterwards runs the same way.
    on_write : called with the file name before each file the Trainer writes into
        ``out_dir``; an exception from it stops training before the write (``nnx
        train`` checks its folder lock there).
    clip_grad_norm : when set, the gradients' total 2-norm is clipped to it before each
        update (:func:`nnx.optim.clip_grad_norm_`).
    eval_loss_fn : the loss reported on validation data (default: ``loss_fn``; with label
        smoothing in training, a plain cross-entropy keeps ``val_loss`` comparable).
    sync_every : how often training reads the device: ``1`` checks every step's loss
        before its update; ``N`` keeps the losses, the sums and the NaN and label checks
        on the device and reads them every N steps (a non-finite loss still stops
        training within N steps, before anything is saved); ``"epoch"`` once per epoch.
        Default: 1 on host backends (reading is free there), ``"epoch"`` on devices.

    A scheduler with ``needs_metric`` (ReduceLROnPlateau) is stepped once per epoch with
    the validation loss (mode "min") or accuracy (mode "max"), or the training figures
    when there is no validation loader.
    """

    def __init__(self, model: Module, optimizer: Optimizer, loss_fn: Any = None,
                 scheduler: LRScheduler | None = None, *, scheduler_interval: str = "epoch",
                 out_dir: str | os.PathLike[str] | None = None, progress: bool | None = None,
                 config: dict[str, Any] | None = None,
                 log: Callable[[str], None] | None = None, distributed: bool = False,
                 threads: int | str = "auto",
                 on_write: Callable[[str], None] | None = None,
                 clip_grad_norm: float | None = None, eval_loss_fn: Any = None,
                 sync_every: int | str | None = None) -> None:
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"Trainer: scheduler_interval must be 'epoch' or 'step', "
                             f"got {scheduler_interval!r}")
        mine = {id(p) for p in model.parameters()}
        foreign = [i for i, p in enumerate(optimizer.params) if id(p) not in mine]
        if foreign:
            raise ValueError(f"Trainer: the optimizer's parameters {foreign[:5]} are not "
                             f"parameters of the {type(model).__name__} (was the optimizer "
                             "built for another model?)")
        if scheduler is not None and scheduler.optimizer is not optimizer:
            raise ValueError("Trainer: the scheduler drives another optimizer than this one")
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn if loss_fn is not None else CrossEntropyLoss()
        self.eval_loss_fn = eval_loss_fn if eval_loss_fn is not None else self.loss_fn
        if clip_grad_norm is not None and (isinstance(clip_grad_norm, bool) or not isinstance(
                clip_grad_norm, (int, float)) or not clip_grad_norm > 0):
            raise ValueError(f"Trainer: clip_grad_norm must be a number > 0 or None, got "
                             f"{clip_grad_norm!r}")
        self.clip_grad_norm = None if clip_grad_norm is None else float(clip_grad_norm)
        self.scheduler = scheduler
        self.scheduler_interval = scheduler_interval
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.config = dict(config or {})
        self.log = log or (lambda line: print(line, flush=True))
        self.distributed = distributed
        self.history: dict[str, list[dict[str, Any]]] = {"epochs": [], "steps": []}
        self.epoch = 0            # completed epochs
        self.step_in_epoch = 0    # batches done in the current (unfinished) epoch
        self.global_step = 0
        self.best_val_acc = -math.inf
        self.best_epoch: int | None = None
        self._partial = {"loss_sum": 0.0, "correct": 0, "count": 0}
        if sync_every is not None and sync_every != "epoch" and (
                isinstance(sync_every, bool) or not isinstance(sync_every, int) or sync_every < 1):
            raise ValueError(f"Trainer: sync_every must be an int >= 1, 'epoch' or None, got "
                             f"{sync_every!r}")
        self.sync_every = sync_every
        self._every: int | None = 1  # resolved by fit(); 1: read each step (train_step alone)
        self._pending: list[dict[str, Any]] = []  # step records whose loss is on the device
        self.on_write = on_write
        self.stop_signal = signal.SIGINT  # the signal that asked to stop (SIGINT, SIGTERM)
        self._last_saved_epoch: int | None = None
        self._stop_requested = False  # set by Ctrl-C on this process
        self._stop_agreed = False     # every rank stops (distributed: reduced each step)
        self._finished = False        # all epochs done: Ctrl-C no longer interrupts training
        self._finishing = False       # the last epoch's steps are done (saves may follow)
        self.written: list[str] = []  # files this Trainer wrote, in order, without repeats
        if threads == "auto":  # MPI ranks on one machine already share their cores
            if distributed and isinstance(model, Sequential):
                model.threads = 1
            threads = 1 if distributed else auto_threads(model)
        elif not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
            raise ValueError(f"Trainer: threads must be 'auto' or an int >= 1, got {threads!r}")
        elif isinstance(model, Sequential):
            odd = sorted({type(m).__name__ for m in model.modules() if not m.splittable})
            if threads > 1 and odd:
                raise ValueError(f"Trainer: threads={threads}, but {type(model).__name__} has "
                                 f"{', '.join(odd)}, whose output depends on the whole batch or "
                                 "on random draws; a batch cannot be split across threads "
                                 "through it (use threads=1)")
            model.threads = threads  # the model splits its batches itself (nnx.parallel)
        self.threads = threads

    # -- the processes it trains with ------------------------------------------
    @property
    def world(self) -> Any:
        """The processes this Trainer trains with: :mod:`nnx.distributed` when
        ``distributed``, else a one-process world whose collectives return their input
        (the same calls either way)."""
        if self.distributed:
            from . import distributed

            return distributed
        from .distributed._world import SINGLE_PROCESS

        return SINGLE_PROCESS

    def _is_main(self) -> bool:
        return self.world.rank() == 0

    def _reduce_sum(self, values: list[float]) -> list[float]:
        return [float(v) for v in self.world.allreduce_sum(values)]

    # -- one step -----------------------------------------------------------
    def train_step(self, x: Any, y: Any) -> tuple[Any, Any]:
        """Forward, loss, backward, update on one batch; returns (loss, correct).

        ``correct`` may be a 0-d array still on the device (read it with ``int()``), and so
        may ``loss`` while ``fit`` defers its reads (``sync_every``): a GPU step does not
        wait for the device. Called alone, the loss is read and checked before the update.

        Distributed, the returned loss is the mean over ranks (one small collective),
        so every rank sees the same value and stops together on a non-finite loss.
        """
        with self._device_scope():  # CuPy: forward, loss, backward and update on the model's GPU
            return self._train_step(x, y)

    def _device_scope(self) -> Any:
        """The model's device made current (:func:`nnx.backend.device_scope`)."""
        return device_scope(self.optimizer.params[0].data)

    def _train_step(self, x: Any, y: Any) -> tuple[Any, Any]:
        out = self.model(x)
        loss = self.loss_fn(out, y)  # a 0-d array, left on the device unless read below
        world = self.world
        if self._multi_rank():
            # one collective: the mean loss, and whether any rank was interrupted
            loss_sum, stops = world.allreduce_sum([float(loss), float(self._stop_requested)])
            loss = loss_sum / world.world_size()
            self._stop_agreed = stops > 0
        if self._every == 1 or isinstance(loss, (int, float)):
            loss = float(loss)
            self._check_finite(loss, self.epoch + 1, self.step_in_epoch)
        self.model.backward_params_only(self.loss_fn.backward())  # the data needs no gradient
        correct = correct_count(out, y, as_int=False)
        world.allreduce_gradients(self.model)  # the mean over ranks (one rank: as they are)
        if self.clip_grad_norm is not None:
            from .optim import clip_grad_norm_

            clip_grad_norm_(self.optimizer.params, self.clip_grad_norm)
        self.optimizer.step()
        return loss, correct

    def _check_finite(self, loss: float, epoch_no: int, step: int) -> None:
        if not math.isfinite(loss):
            raise TrainingDiverged(
                f"loss became {loss} at epoch {epoch_no}, step {step + 1} (lr "
                f"{self.optimizer.lr:g}); no checkpoint was written for this epoch. Try a "
                "smaller --lr.")

    def _sync(self, extra: list[Any] = ()) -> list[float]:
        """Read the pending step losses, the loss's deferred label check and ``extra`` from
        the device in one transfer; raise for a non-finite loss or bad labels."""
        flag = self.loss_fn.label_error() if getattr(self.loss_fn, "defer_label_check",
                                                     False) else None
        pending, self._pending = self._pending, []
        values = read_host([r["loss"] for r in pending] + list(extra)
                           + ([flag] if flag is not None else []))
        if flag is not None:
            self.loss_fn.raise_label_error(bool(values.pop()))
        for record, value in zip(pending, values):
            record["loss"] = value
            self._check_finite(value, record["epoch"], record["step"])
        return values[len(pending):]

    def _resolve_sync(self) -> int | None:
        every = self.sync_every
        if every is None:
            backend, _ = model_placement(self.model)
            every = 1 if backend is None or backend.is_host else "epoch"
        return None if every == "epoch" else every

    # -- loops --------------------------------------------------------------
    def evaluate(self, loader: Iterable[tuple[Any, Any]]) -> dict[str, float]:
        """Mean loss and accuracy over ``loader`` (eval mode, no updates): :func:`evaluate`
        with this Trainer's model and loss.

        Distributed, give every rank the whole (unsharded) validation loader: the
        figures are then exact and the same everywhere, with no collective."""
        return evaluate(self.model, loader, self.eval_loss_fn)

    def fit(self, train_loader: Any, val_loader: Any = None, epochs: int = 1) -> dict[str, Any]:
        """Train until ``epochs`` epochs are complete (counting epochs already done when
        resumed) and return the history."""
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"Trainer.fit: epochs must be a positive int, got {epochs!r}")
        if hasattr(train_loader, "__len__"):
            steps = len(train_loader)
            if steps == 0:
                raise ValueError("Trainer.fit: the training loader yields no batches")
            if self.step_in_epoch > steps:
                raise ValueError(f"Trainer.fit: the resumed position (step {self.step_in_epoch} "
                                 f"of epoch {self.epoch + 1}) is beyond the loader's {steps} "
                                 "steps per epoch")
        if self.out_dir is not None and self._is_main():
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.model.train()
        self._finished = self._finishing = False
        self._every = self._resolve_sync()
        if self._every != 1 and hasattr(self.loss_fn, "defer_label_check"):
            self.loss_fn.defer_label_check = True  # read with the losses, not every step
        with self._signals_save(), self._device_scope():  # the epoch's sums stay on its GPU
            while self.epoch < epochs:
                self._run_epoch(train_loader, val_loader, epochs)
                if self.epoch < epochs and self._agree_stop():  # the same test on every rank
                    checkpoint = self._checkpoint()
                    raise TrainingInterrupted(self._interrupt_message(checkpoint), checkpoint,
                                              self.stop_signal)
            self._finished = True  # from here on Ctrl-C cannot lose training: draw the plot
            self._write_plot()
        return self.history

    def _settle_partial(self) -> None:
        """Bring the epoch's running sums (and pending losses) to the host: one transfer."""
        part = self._partial
        part["loss_sum"], correct = self._sync([part["loss_sum"], part["correct"]])
        part["correct"] = int(correct)

    def _multi_rank(self) -> bool:
        """More than one rank: each step makes one small collective (loss and stop)."""
        return self.world.world_size() > 1

    def _stop_now(self) -> bool:
        """After a step: stop? Distributed, what the ranks agreed in the step's collective."""
        return self._stop_agreed if self._multi_rank() else self._stop_requested

    def _agree_stop(self) -> bool:
        """At the end of an epoch: stop? Distributed, one small collective so that every
        rank decides the same (an interrupt may have reached one rank during evaluation)."""
        self._stop_agreed = self.world.allreduce_sum(float(self._stop_requested)) > 0
        return self._stop_agreed

    def _checkpoint(self) -> Path | None:
        if self.out_dir is None or not self._is_main():
            return None
        path = self.out_dir / "last.safetensors"
        return path if path.is_file() else None

    def _batches(self, loader: Any) -> Iterator[tuple[Any, Any]]:
        if hasattr(loader, "iter_from"):  # nnx's DataLoader: on the model's backend and dtype
            backend, dtype = model_placement(self.model)
            return loader.iter_from(self.epoch, self.step_in_epoch,
                                    backend=None if loader.backend else backend, dtype=dtype)
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(self.epoch)
        it = iter(loader)
        for _ in range(self.step_in_epoch):  # resuming inside an epoch: same order, skip done
            next(it)
        return it

    def _run_epoch(self, train_loader: Any, val_loader: Any, epochs: int) -> None:
        epoch_no = self.epoch + 1
        t0 = time.perf_counter()
        if self.step_in_epoch == 0:
            self._partial["lr"] = self.optimizer.lr  # the epoch's lr, kept across a resume
        lr_at_start = self._partial.get("lr", self.optimizer.lr)
        total = len(train_loader) if hasattr(train_loader, "__len__") else None
        bar = self._bar(total, epoch_no, epochs)
        part = self._partial
        try:
            for x, y in self._batches(train_loader):
                lr = self.optimizer.lr
                loss, correct = self.train_step(x, y)
                n = int(x.shape[0])
                part["loss_sum"] = part["loss_sum"] + loss * n
                part["correct"] = part["correct"] + correct
                part["count"] += n
                step = {"epoch": epoch_no, "step": self.step_in_epoch,
                        "global_step": self.global_step, "loss": loss, "lr": lr}
                self.history["steps"].append(step)
                if not isinstance(loss, (int, float)):
                    self._pending.append(step)
                    if self._every is not None and len(self._pending) >= self._every:
                        self._sync()
                self.step_in_epoch += 1
                self.global_step += 1
                if self.scheduler is not None and self.scheduler_interval == "step" and \
                        not getattr(self.scheduler, "needs_metric", False):
                    self.scheduler.step()
                if bar is not None:
                    bar.update(1)
                    shown = step["loss"] if isinstance(step["loss"], float) else None
                    bar.set_postfix(lr=f"{lr:.3g}", **({} if shown is None else
                                                       {"loss": f"{shown:.4f}"}))
                if self._stop_now():
                    self._settle_partial()
                    self._save("last.safetensors")
                    return
        finally:
            if bar is not None:
                bar.close()
        if part["count"] == 0:
            raise ValueError("Trainer.fit: the training loader yielded no batches")
        if epoch_no == epochs:
            self._finishing = True  # every step is done: an interrupt now only ends the run
        self._settle_partial()
        loss_sum, correct, count = self._reduce_sum(
            [part["loss_sum"], part["correct"], part["count"]])
        record: dict[str, Any] = {
            "epoch": epoch_no, "lr": lr_at_start,
            "train_loss": loss_sum / max(count, 1), "train_acc": correct / max(count, 1),
            "val_loss": None, "val_acc": None,
        }
        # every rank evaluates and rank 0 saves the same statistics (one rank: nothing to do)
        self.world.broadcast_buffers(self.model)
        if val_loader is not None:
            metrics = self.evaluate(val_loader)
            record["val_loss"], record["val_acc"] = metrics["loss"], metrics["acc"]
            if not math.isfinite(metrics["loss"]):
                raise TrainingDiverged(
                    f"validation loss became {metrics['loss']} after epoch {epoch_no} "
                    f"(lr {lr_at_start:g}); the model of this epoch was not saved. "
                    "Try a smaller --lr.")
        record["seconds"] = time.perf_counter() - t0
        self.history["epochs"].append(record)
        self.epoch = epoch_no
        self.step_in_epoch = 0
        self._partial = {"loss_sum": 0.0, "correct": 0, "count": 0}
        if self.scheduler is not None and getattr(self.scheduler, "needs_metric", False):
            self.scheduler.step(_plateau_metric(self.scheduler, record))
        elif self.scheduler is not None and self.scheduler_interval == "epoch":
            self.scheduler.step()
        score = record["val_acc"] if record["val_acc"] is not None else record["train_acc"]
        improved = score > self.best_val_acc
        if improved:
            self.best_val_acc, self.best_epoch = score, epoch_no
        self.log(_epoch_line(record, epochs))
        if improved:
            self._save("best.safetensors")
        self._save("last.safetensors")
        self._write_history()

    # -- progress -----------------------------------------------------------
    def _bar(self, total: int | None, epoch_no: int, epochs: int) -> Any:
        show = self.progress if self.progress is not None else sys.stderr.isatty()
        if not show or not self._is_main():
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
        return tqdm(total=total, desc=f"epoch {epoch_no}/{epochs}", leave=False, unit="batch",
                    file=sys.stderr, initial=self.step_in_epoch)

    # -- files --------------------------------------------------------------
    def trainer_state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "best_val_acc": None if self.best_epoch is None else self.best_val_acc,
            "best_epoch": self.best_epoch,
            "partial": {**self._partial, "correct": int(self._partial["correct"])},
            "scheduler_interval": self.scheduler_interval,
        }

    def _save(self, name: str) -> None:
        if self.out_dir is None or not self._is_main():
            return
        from .checkpoint import save

        self._before_write(name)
        save(self.out_dir / name, self.model, self.optimizer, self.scheduler,
             trainer=self.trainer_state(), history=self.history, config=self.config)
        self._wrote(name)
        if name == "last.safetensors":
            self._last_saved_epoch = self.epoch

    def _before_write(self, name: str) -> None:
        if self.on_write is not None:
            self.on_write(name)

    def _wrote(self, name: str) -> None:
        if name not in self.written:
            self.written.append(name)

    def _write_history(self) -> None:
        if self.out_dir is not None and self._is_main():
            self._before_write("history.json")
            write_json_atomic(self.out_dir / "history.json", self.history)
            self._wrote("history.json")

    def _write_plot(self) -> None:
        if self.out_dir is None or not self._is_main():
            return
        from .plot import PLOT_HINT, plot_history

        try:
            self._before_write("curves.png")
            drawn = plot_history(self.history, self.out_dir / "curves.png")
        except KeyboardInterrupt:  # a second Ctrl-C: the run itself is complete
            self.log("curves.png not drawn (interrupted); training is complete and the "
                     "checkpoints and history.json are written")
            return
        except Exception as exc:  # noqa: BLE001 - a plot must not fail a finished run
            self.log(f"could not draw curves.png ({type(exc).__name__}: {exc}); the checkpoints "
                     "and history.json are written")
            return
        if drawn:
            self._wrote("curves.png")
        self.log(f"wrote {self.out_dir / 'curves.png'}" if drawn else f"no curves.png: {PLOT_HINT}")

    def resume(self, path: str | os.PathLike[str]) -> None:
        """Restore model, optimizer, scheduler, RNG, history and position from a checkpoint
        written by this class (on any backend)."""
        from .checkpoint import load

        ckpt = load(path)
        state = ckpt.meta.get("trainer") or {}
        saved_interval = state.get("scheduler_interval", self.scheduler_interval)
        if self.scheduler is not None and saved_interval != self.scheduler_interval:
            raise ValueError(f"{path}: the scheduler was stepped per {saved_interval} there, "
                             f"per {self.scheduler_interval} here (scheduler_interval)")
        sched = ckpt.meta.get("scheduler")
        if self.scheduler is not None and isinstance(sched, dict):
            expected = state.get("epoch" if saved_interval == "epoch" else "global_step")
            if expected is not None and sched.get("last_epoch") != expected:
                raise ValueError(f"{path}: the scheduler has taken {sched.get('last_epoch')} "
                                 f"steps but the trainer's position says {expected} "
                                 f"({saved_interval}s); the checkpoint is inconsistent")
        ckpt.restore(self.model, self.optimizer, self.scheduler)
        meta = ckpt.meta
        self.history = {"epochs": [], "steps": [], **(meta.get("history") or {})}
        self.epoch = int(state.get("epoch", 0))
        self.step_in_epoch = int(state.get("step_in_epoch", 0))
        self.global_step = int(state.get("global_step", 0))
        best = state.get("best_val_acc")
        self.best_val_acc = -math.inf if best is None else float(best)
        self.best_epoch = state.get("best_epoch")
        self._partial = dict(state.get("partial") or {"loss_sum": 0.0, "correct": 0, "count": 0})
        self._stop_requested = self._stop_agreed = False

    # -- Ctrl-C and SIGTERM ---------------------------------------------------
    @contextlib.contextmanager
    def _signals_save(self) -> Iterator[None]:
        """First Ctrl-C or SIGTERM: finish the step, save, stop. Second: stop at once.
        A signal the process was started to ignore (``nohup``, ``cmd &`` in a script)
        stays ignored."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

        def handler(signum: int, frame: Any) -> None:
            if self._stop_requested:
                for s, h in previous.items():
                    signal.signal(s, h)
                raise KeyboardInterrupt
            self._stop_requested = True
            self.stop_signal = signum
            name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
            if self._finished:
                self.log(f"{name}: training is complete; finishing curves.png ({name} again to "
                         "skip it)")
            elif self._finishing:
                self.log(f"{name}: the last epoch is done; finishing its checkpoints")
            else:
                self.log(f"{name}: finishing this step and saving a resumable checkpoint "
                         f"({name} again to stop at once)")

        for s, h in previous.items():
            if h is not signal.SIG_IGN:
                signal.signal(s, handler)
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    @property
    def last_saved_epoch(self) -> int | None:
        """The epoch count in the newest last.safetensors this Trainer wrote (None: none)."""
        return self._last_saved_epoch

    def _interrupt_message(self, checkpoint: Path | None) -> str:
        where = (f"after epoch {self.epoch}" if self.step_in_epoch == 0 else
                 f"at epoch {self.epoch + 1}, step {self.step_in_epoch}")
        saved = f"; state saved in {checkpoint}" if checkpoint is not None else ""
        return f"training interrupted {where}{saved}"


def _plateau_metric(scheduler: Any, record: dict[str, Any]) -> float:
    """What a ReduceLROnPlateau follows: the loss (mode "min") or accuracy (mode "max"),
    on validation data when there is any."""
    kind = "acc" if getattr(scheduler, "mode", "min") == "max" else "loss"
    value = record[f"val_{kind}"]
    return record[f"train_{kind}"] if value is None else value


def _epoch_line(r: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {r['epoch']}/{epochs}", f"lr {r['lr']:.4g}",
             f"train_loss {r['train_loss']:.4f}", f"train_acc {r['train_acc']:.4f}"]
    if r["val_loss"] is not None:
        parts += [f"val_loss {r['val_loss']:.4f}", f"val_acc {r['val_acc']:.4f}"]
    parts.append(f"({r['seconds']:.1f} s)")
    return "  ".join(parts)


__all__ = ["STOP_SIGNALS", "Trainer", "TrainingDiverged", "TrainingInterrupted", "evaluate",
           "model_placement", "read_host"]
