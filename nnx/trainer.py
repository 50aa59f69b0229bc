"""Trainer: the seed report's RunnerM — fit, evaluate, history, checkpoints, resume.

One epoch: for every batch, forward → loss → backward → (gradient all-reduce
when distributed) → optimizer step, with the scheduler stepped per iteration or
per epoch. After each epoch the model is evaluated on the validation loader,
``history.json`` is written, ``best.safetensors`` is replaced when ``val_acc``
improves (the earliest epoch wins ties) and ``last.safetensors`` always. A
non-finite loss stops training before the update with :class:`TrainingDiverged`
and writes nothing, so the last good checkpoints stay. Ctrl-C finishes the
current step, saves a resumable ``last.safetensors`` and raises KeyboardInterrupt.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .atomic import atomic_writer
from .loss import CrossEntropyLoss
from .lr_scheduler import LRScheduler
from .module import Module, Sequential, backend_of
from .optim.optimizer import Optimizer
from .parallel import ThreadedDataParallel, auto_threads, correct_count


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names epoch, step and lr."""


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temp file in the same folder and an atomic rename."""
    with atomic_writer(path, binary=False) as f:
        json.dump(data, f, indent=1, allow_nan=False)  # strict JSON: NaN is not JSON


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
    threads : ``"auto"`` splits each batch across the CPU cores on the NumPy backend
        (:class:`~nnx.parallel.ThreadedDataParallel`; same gradients up to float
        summation order); an int sets the count, 1 turns it off.
    """

    def __init__(self, model: Module, optimizer: Optimizer, loss_fn: Any = None,
                 scheduler: LRScheduler | None = None, *, scheduler_interval: str = "epoch",
                 out_dir: str | os.PathLike[str] | None = None, progress: bool | None = None,
                 config: dict[str, Any] | None = None,
                 log: Callable[[str], None] | None = None, distributed: bool = False,
                 threads: int | str = "auto") -> None:
        if scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"Trainer: scheduler_interval must be 'epoch' or 'step', "
                             f"got {scheduler_interval!r}")
        self.model = model
        self.optimizer = optimizer
        self.loss_fn = loss_fn if loss_fn is not None else CrossEntropyLoss()
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
        self._stop_requested = False
        if threads == "auto":  # MPI ranks on one machine already share its cores
            threads = 1 if distributed else auto_threads(model)
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"Trainer: threads must be 'auto' or an int >= 1, got {threads!r}")
        self.threads = threads
        self._parallel = ThreadedDataParallel(model, self.loss_fn, threads) if threads > 1 \
            else None

    # -- distributed hooks --------------------------------------------------
    def _world(self) -> Any:
        if not self.distributed:
            return None
        from . import distributed

        return distributed

    def _is_main(self) -> bool:
        world = self._world()
        return world is None or world.rank() == 0

    def _reduce_sum(self, values: list[float]) -> list[float]:
        world = self._world()
        if world is None or world.world_size() == 1:
            return values
        return [float(v) for v in world.allreduce_sum(values)]

    # -- one step -----------------------------------------------------------
    def train_step(self, x: Any, y: Any) -> tuple[float, Any]:
        """Forward, loss, backward, update on one batch; returns (loss, correct).

        ``correct`` may be a 0-d array still on the device (read it with ``int()``): a GPU
        step does not wait for the device to count it.

        Distributed, the returned loss is the mean over ranks (one small collective),
        so every rank sees the same value and stops together on a non-finite loss.
        """
        parallel = self._parallel
        if parallel is not None and parallel.applies(int(x.shape[0])):
            loss_value, correct = parallel.step(x, y)  # gradients are set already
        else:
            parallel = None
            out = self.model(x)
            loss_value = float(self.loss_fn(out, y))
        world = self._world()
        if world is not None and world.world_size() > 1:
            loss_value = float(world.allreduce_mean(loss_value))
        if not math.isfinite(loss_value):
            raise TrainingDiverged(
                f"loss became {loss_value} at epoch {self.epoch + 1}, step {self.step_in_epoch + 1} "
                f"(lr {self.optimizer.lr:g}); no checkpoint was written for this epoch. "
                "Try a smaller --lr."
            )
        if parallel is None:
            grad = self.loss_fn.backward()
            if isinstance(self.model, Sequential):
                self.model.backward(grad, need_input_grad=False)  # the data needs no gradient
            else:
                self.model.backward(grad)
            correct = correct_count(out, y, as_int=False)
        if world is not None and world.world_size() > 1:
            world.allreduce_gradients(self.model)
        self.optimizer.step()
        return loss_value, correct

    # -- loops --------------------------------------------------------------
    def evaluate(self, loader: Iterable[tuple[Any, Any]]) -> dict[str, float]:
        """Mean loss and accuracy over ``loader`` (eval mode, no updates).

        Distributed, give every rank the whole (unsharded) validation loader: the
        figures are then exact and the same everywhere, with no collective."""
        was_training = self.model.training
        self.model.eval()
        loss_sum, correct, count = 0.0, 0, 0
        batches = loader.batches(0, backend=None if loader.backend else self._model_backend()) \
            if hasattr(loader, "batches") else loader
        try:
            for x, y in batches:
                out = self.model(x)
                n = int(out.shape[0])
                loss_sum += float(self.loss_fn(out, y)) * n
                correct += correct_count(out, y)
                count += n
        finally:
            self.model.train(was_training)
        if count == 0:
            raise ValueError("Trainer.evaluate: the loader yielded no batches")
        return {"loss": loss_sum / count, "acc": correct / count, "n": int(count)}

    def fit(self, train_loader: Any, val_loader: Any = None, epochs: int = 1) -> dict[str, Any]:
        """Train until ``epochs`` epochs are complete (counting epochs already done when
        resumed) and return the history."""
        if not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"Trainer.fit: epochs must be a positive int, got {epochs!r}")
        if self.out_dir is not None and self._is_main():
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.model.train()
        with self._sigint_saves():
            while self.epoch < epochs:
                self._run_epoch(train_loader, val_loader, epochs)
                if self._stop_requested:
                    break
        if self._stop_requested:
            raise KeyboardInterrupt(self._interrupt_message())
        self._write_plot()
        return self.history

    def _model_backend(self) -> Any:
        params = self.model.parameters()
        return backend_of(params[0].data) if params else None

    def _batches(self, loader: Any) -> Iterator[tuple[Any, Any]]:
        if hasattr(loader, "iter_from"):  # nnx's DataLoader: batches on the model's backend
            return loader.iter_from(self.epoch, self.step_in_epoch,
                                    backend=None if loader.backend else self._model_backend())
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
                part["loss_sum"] += loss * n
                part["correct"] += correct
                part["count"] += n
                self.history["steps"].append({"epoch": epoch_no, "step": self.step_in_epoch,
                                              "global_step": self.global_step, "loss": loss,
                                              "lr": lr})
                self.step_in_epoch += 1
                self.global_step += 1
                if self.scheduler is not None and self.scheduler_interval == "step":
                    self.scheduler.step()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.3g}")
                if self._stop_requested:
                    self._save("last.safetensors")
                    return
        finally:
            if bar is not None:
                bar.close()
        part["correct"] = int(part["correct"])
        loss_sum, correct, count = self._reduce_sum(
            [part["loss_sum"], part["correct"], part["count"]])
        record: dict[str, Any] = {
            "epoch": epoch_no, "lr": lr_at_start,
            "train_loss": loss_sum / max(count, 1), "train_acc": correct / max(count, 1),
            "val_loss": None, "val_acc": None,
        }
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
        if self.scheduler is not None and self.scheduler_interval == "epoch":
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

        save(self.out_dir / name, self.model, self.optimizer, self.scheduler,
             trainer=self.trainer_state(), history=self.history, config=self.config)

    def _write_history(self) -> None:
        if self.out_dir is not None and self._is_main():
            write_json_atomic(self.out_dir / "history.json", self.history)

    def _write_plot(self) -> None:
        if self.out_dir is None or not self._is_main():
            return
        from .plot import PLOT_HINT, plot_history

        try:
            drawn = plot_history(self.history, self.out_dir / "curves.png")
        except Exception as exc:  # noqa: BLE001 - a plot must not fail a finished run
            self.log(f"could not draw curves.png ({type(exc).__name__}: {exc}); the checkpoints "
                     "and history.json are written")
            return
        self.log(f"wrote {self.out_dir / 'curves.png'}" if drawn else f"no curves.png: {PLOT_HINT}")

    def resume(self, path: str | os.PathLike[str]) -> None:
        """Restore model, optimizer, scheduler, RNG, history and position from a checkpoint
        written by this class (on any backend)."""
        from .checkpoint import load

        ckpt = load(path)
        ckpt.restore(self.model, self.optimizer, self.scheduler)
        meta = ckpt.meta
        state = meta.get("trainer") or {}
        self.history = meta.get("history") or {"epochs": [], "steps": []}
        self.epoch = int(state.get("epoch", 0))
        self.step_in_epoch = int(state.get("step_in_epoch", 0))
        self.global_step = int(state.get("global_step", 0))
        best = state.get("best_val_acc")
        self.best_val_acc = -math.inf if best is None else float(best)
        self.best_epoch = state.get("best_epoch")
        self._partial = dict(state.get("partial") or {"loss_sum": 0.0, "correct": 0, "count": 0})
        self._stop_requested = False

    # -- Ctrl-C ---------------------------------------------------------------
    @contextlib.contextmanager
    def _sigint_saves(self) -> Iterator[None]:
        """First Ctrl-C: finish the step, save, stop. Second: stop at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum: int, frame: Any) -> None:
            if self._stop_requested:
                signal.signal(signal.SIGINT, previous)
                raise KeyboardInterrupt
            self._stop_requested = True
            self.log("interrupt: finishing this step and saving a resumable checkpoint "
                     "(Ctrl-C again to stop at once)")

        signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _interrupt_message(self) -> str:
        where = f" in {self.out_dir / 'last.safetensors'}" if self.out_dir is not None else ""
        return (f"training interrupted at epoch {self.epoch + 1}, step {self.step_in_epoch}; "
                f"state saved{where}")


def _epoch_line(r: dict[str, Any], epochs: int) -> str:
    parts = [f"epoch {r['epoch']}/{epochs}", f"lr {r['lr']:.4g}",
             f"train_loss {r['train_loss']:.4f}", f"train_acc {r['train_acc']:.4f}"]
    if r["val_loss"] is not None:
        parts += [f"val_loss {r['val_loss']:.4f}", f"val_acc {r['val_acc']:.4f}"]
    parts.append(f"({r['seconds']:.1f} s)")
    return "  ".join(parts)


__all__ = ["Trainer", "TrainingDiverged", "write_json_atomic"]
