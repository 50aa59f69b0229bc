"""The modern recipe flags through the real command: adaptive optimizers, schedules with
warm-up, plateau, one-cycle, clipping, label smoothing, weight-decay groups; all recorded
and kept by --resume."""

from __future__ import annotations

import json

import pytest
from clitools import nnx_cli, one_line_error, write_mnist_folder

import nnx


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_mnist_folder(tmp_path_factory.mktemp("mnist"), 300, 100)


def train(data, out, *args, epochs=2):
    return nnx_cli("train", "--model", "mlp", "--batch-size", "50", "--backend", "numpy",
                   "--no-progress", "--data", str(data), "--out", str(out), "--epochs",
                   str(epochs), *args)


def lrs(out):
    h = json.loads((out / "history.json").read_text())
    return [s["lr"] for s in h["steps"]], [e["lr"] for e in h["epochs"]]


def test_adamw_cosine_with_warm_up_clipping_smoothing_and_decay_groups(data, tmp_path):
    out = tmp_path / "run"
    res = train(data, out, "--optimizer", "adamw", "--scheduler", "cosine",
                "--scheduler-interval", "step", "--warmup-epochs", "1", "--clip-grad-norm", "1",
                "--label-smoothing", "0.1", "--no-decay-bias-norm", "--betas", "0.8,0.99")
    assert res.returncode == 0, res.stderr
    ckpt = nnx.load(out / "last.safetensors")
    config, opt = ckpt.meta["config"], ckpt.meta["optimizer"]
    assert opt["type"] == "AdamW" and config["lr"] == 1e-3 and config["weight_decay"] == 1e-2
    assert config["betas"] == [0.8, 0.99] and config["label_smoothing"] == 0.1
    assert [g["weight_decay"] for g in opt["param_groups"]] == [1e-2, 0.0]
    steps, _ = lrs(out)
    assert len(steps) == 12
    assert steps[0] == pytest.approx(1e-4) and steps[5] == pytest.approx(1e-3 * (0.1 + 0.9 * 5 / 6))
    assert steps[6] == pytest.approx(1e-3) and steps[-1] < steps[7]  # cosine after warm-up
    res = train(data, out, "--resume", epochs=2)
    assert "nothing to train" in res.stdout
    line = one_line_error(train(data, out, "--resume", epochs=3))
    assert "cosine schedule" in line and "planned for 2 epochs" in line


def test_plateau_runs_from_the_command_line(data, tmp_path):
    out = tmp_path / "run"
    res = train(data, out, "--scheduler", "plateau", "--patience", "0", "--gamma", "0.5")
    assert res.returncode == 0, res.stderr
    sched = nnx.load(out / "last.safetensors").meta["scheduler"]
    history = json.loads((out / "history.json").read_text())
    assert sched["type"] == "ReduceLROnPlateau" and sched["last_epoch"] == 2
    assert sched["best"] == pytest.approx(min(e["val_loss"] for e in history["epochs"]))


@pytest.mark.parametrize("mode, scripted, want", [
    ("min", [1.0, 1.0, 1.0, 0.5], [0.1, 0.1, 0.05, 0.025]),
    ("max", [0.5, 0.6, 0.6, 0.6], [0.1, 0.1, 0.1, 0.05]),
])
def test_the_trainer_steps_plateau_with_the_validation_metric(mode, scripted, want):
    """The Trainer feeds ReduceLROnPlateau the validation loss (mode min) or accuracy (max)
    once per epoch; PyTorch's rule then reduces the lr after `patience` bad epochs."""
    from test_trainer import make_run

    trainer, train_loader, val = make_run()
    opt = trainer.optimizer
    opt.lr = 0.1
    trainer.scheduler = nnx.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=0.5,
                                                           patience=0)
    values = iter(scripted)
    key = "loss" if mode == "min" else "acc"
    real = trainer.evaluate
    trainer.evaluate = lambda loader: {**real(loader), key: next(values)}
    history = trainer.fit(train_loader, val, epochs=4)
    assert [e["lr"] for e in history["epochs"]] == pytest.approx(want)


def test_onecycle_steps_per_batch_and_cycles_momentum(data, tmp_path):
    out = tmp_path / "run"
    res = train(data, out, "--scheduler", "onecycle", "--lr", "0.2")
    assert res.returncode == 0, res.stderr
    steps, _ = lrs(out)
    assert steps[0] == pytest.approx(0.2 / 25) and max(steps) == pytest.approx(0.2, rel=0.05)
    sched = nnx.load(out / "last.safetensors").meta["scheduler"]
    assert sched["type"] == "OneCycleLR"


@pytest.mark.parametrize("args, words", [
    (("--betas", "0.9,0.99"), ("--betas", "adam")),
    (("--optimizer", "adam", "--momentum", "0.5"), ("--momentum",)),
    (("--scheduler", "plateau", "--gamma", "2"), ("plateau", "(0, 1)")),
    (("--scheduler", "onecycle", "--warmup-epochs", "1"), ("--warmup-epochs",)),
    (("--label-smoothing", "1.5"), ("--label-smoothing",)),
    (("--betas", "0.9"), ("--betas",)),
    # the run would sit at onecycle's last, tiny lr (seen: epoch 1 at lr 2e-07)
    (("--scheduler", "onecycle", "--scheduler-interval", "epoch"),
     ("onecycle", "--scheduler-interval epoch does not apply")),
    # warm-up for the whole run: lr never reaches --lr (epochs=2 in train())
    (("--warmup-epochs", "2"), ("--warmup-epochs 2", "whole run of 2 epochs")),
])
def test_bad_recipe_flags_are_one_line(data, tmp_path, args, words):
    line = one_line_error(train(data, tmp_path / "run", *args))
    for w in words:
        assert w in line, line
    assert not (tmp_path / "run").exists()


def test_every_optimizer_trains(data, tmp_path):
    for name in ("adam", "rmsprop", "momentum"):
        res = train(data, tmp_path / name, "--optimizer", name, epochs=1)
        assert res.returncode == 0, res.stderr
