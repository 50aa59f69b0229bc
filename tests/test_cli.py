"""The command line: train, evaluate, info, errors (run as a user would, in subprocesses)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from clitools import NNX, cli_env, nnx_cli, one_line_error, write_mnist_folder


@pytest.fixture(scope="module")
def small_mnist(tmp_path_factory):
    """A folder with the four standard IDX files: 600 train / 200 test bundled images."""
    return write_mnist_folder(tmp_path_factory.mktemp("mnist"), 600, 200)


@pytest.fixture(scope="module")
def tiny_run(small_mnist, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    res = nnx_cli("train", "--model", "mlp", "--epochs", "2", "--batch-size", "50",
                  "--backend", "numpy", "--data", str(small_mnist), "--out", str(out),
                  "--scheduler", "step", "--step-size", "1", "--gamma", "0.5")
    assert res.returncode == 0, res.stderr + res.stdout
    return out, res


def test_train_writes_outputs(tiny_run):
    out, res = tiny_run
    for name in ("best.safetensors", "last.safetensors", "history.json"):
        assert (out / name).is_file(), name
    history = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert [e["lr"] for e in history["epochs"]] == pytest.approx([0.05, 0.025])
    for e in history["epochs"]:
        assert set(e) >= {"epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc"}
    assert len(history["steps"]) == 2 * 12
    assert "epoch 2/2" in res.stdout


def test_train_draws_curves_when_matplotlib_is_there(tiny_run):
    pytest.importorskip("matplotlib")
    out, _ = tiny_run
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


@pytest.mark.parametrize("backend", ["numpy", "torch", "array_api_strict"])
def test_evaluate_reproduces_the_best_val_acc(tiny_run, backend):
    if backend == "torch":
        pytest.importorskip("torch")
    out, _ = tiny_run
    history = json.loads((out / "history.json").read_text())
    best = max(e["val_acc"] for e in history["epochs"])
    res = nnx_cli("evaluate", str(out / "best.safetensors"), "--backend", backend)
    assert res.returncode == 0, res.stderr
    assert f"accuracy: {best:.4f}" in res.stdout


def test_evaluate_builds_no_trainer_and_no_optimizer(tiny_run):
    """nnx evaluate runs nnx.evaluate on the model alone: building a Trainer or an optimizer
    fails in this process, and the figures are still printed."""
    out, _ = tiny_run
    code = ("import sys, nnx.trainer, nnx.optim.optimizer\n"
            "def refuse(self, *args, **kwargs):\n"
            "    raise AssertionError(f'nnx evaluate built a {type(self).__name__}')\n"
            "nnx.trainer.Trainer.__init__ = refuse\n"
            "nnx.optim.optimizer.Optimizer.__init__ = refuse\n"
            "from nnx.cli import main\n"
            "sys.exit(main(['evaluate', sys.argv[1], '--backend', 'numpy', '--debug']))\n")
    res = subprocess.run([sys.executable, "-c", code, str(out / "best.safetensors")],
                         capture_output=True, text=True, env=cli_env(), timeout=300)
    assert res.returncode == 0, res.stderr
    assert re.search(r"^accuracy: 0\.\d{4}$", res.stdout, re.M), res.stdout


def test_train_accepts_exactly_the_models_it_can_build():
    """Every --model choice (shown in the help) builds a model, and every name the CLI can
    build is a choice: no unreachable alias, no choice without a model."""
    from nnx.cli import _parser
    from nnx.models import CLI_MODELS, MODELS
    from nnx.recipe import CHOICES

    assert set(CHOICES["model"]) == set(CLI_MODELS)
    assert all(cls in MODELS for cls, _ in CLI_MODELS.values())
    train = _parser()._subparsers._group_actions[0].choices["train"]
    model = next(a for a in train._actions if a.dest == "model")
    assert tuple(model.choices) == CHOICES["model"]
    assert "{" + ",".join(CHOICES["model"]) + "}" in train.format_help()


def test_resume_continues_to_more_epochs(tiny_run, small_mnist, tmp_path):
    out, _ = tiny_run
    for name in ("last.safetensors", "history.json"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    res = nnx_cli("train", "--model", "mlp", "--epochs", "3", "--batch-size", "50",
                  "--backend", "numpy", "--data", str(small_mnist), "--out", str(tmp_path),
                  "--scheduler", "step", "--step-size", "1", "--gamma", "0.5", "--resume")
    assert res.returncode == 0, res.stderr
    assert "resumed from" in res.stdout and "epoch 3/3" in res.stdout
    history = json.loads((tmp_path / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2, 3]
    assert history["epochs"][2]["lr"] == pytest.approx(0.0125)


def test_errors_are_one_line(tmp_path):
    line = one_line_error(nnx_cli("evaluate", str(tmp_path / "nope.safetensors")))
    assert "nope.safetensors" in line
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00.")
    line = one_line_error(nnx_cli("evaluate", str(tmp_path / "model.pkl")))
    assert "pickle" in line.lower()
    line = one_line_error(nnx_cli("train", "--data", str(tmp_path / "missing"), "--epochs", "1",
                                  "--backend", "numpy"))
    assert "missing" in line


def test_debug_shows_the_traceback(tmp_path):
    res = nnx_cli("evaluate", str(tmp_path / "nope.safetensors"), "--debug")
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_unavailable_backend_is_one_line():
    from nnx.backends import probe

    if probe("cupy") is None:
        pytest.skip("a GPU is present")
    line = one_line_error(nnx_cli("train", "--backend", "cupy", "--epochs", "1"))
    assert "cupy" in line.lower()


def test_info_lists_backends():
    res = nnx_cli("info")
    assert res.returncode == 0, res.stderr
    assert "numpy" in res.stdout and "array_api_strict" in res.stdout
    available = json.loads(res.stdout.strip().splitlines()[-1])["available"]
    assert "numpy" in available


@pytest.mark.slow
def test_default_train_reaches_95_percent(tmp_path):
    """The README's main job: `nnx train` with no arguments (LeNet-5, bundled sample)."""
    res = nnx_cli("train", cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr + res.stdout
    out = tmp_path / "runs" / "latest"
    history = json.loads((out / "history.json").read_text())
    best = max(e["val_acc"] for e in history["epochs"])
    assert len(history["epochs"]) == 10
    assert best >= 0.95, history["epochs"]
    ev = nnx_cli("evaluate", str(out / "best.safetensors"))
    assert f"accuracy: {best:.4f}" in ev.stdout


def test_resume_refuses_other_data_settings(tiny_run, small_mnist, tmp_path):
    out, _ = tiny_run
    (tmp_path / "last.safetensors").write_bytes((out / "last.safetensors").read_bytes())
    line = one_line_error(nnx_cli("train", "--model", "mlp", "--epochs", "3", "--batch-size", "60",
                                  "--backend", "numpy", "--data", str(small_mnist),
                                  "--out", str(tmp_path), "--resume"))
    assert "--batch-size 50 there, 60 here" in line


def test_ctrl_c_saves_a_resumable_checkpoint(small_mnist, tmp_path):
    """A real SIGINT in the middle of training: finish the step, save, exit 130, resume."""
    import signal
    import time

    proc = subprocess.Popen(
        [*NNX, "train", "--model", "mlp", "--epochs", "200",
         "--batch-size", "50", "--backend", "numpy", "--data", str(small_mnist),
         "--out", str(tmp_path), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env())
    deadline = time.time() + 120
    while not (tmp_path / "history.json").exists() and time.time() < deadline:
        time.sleep(0.05)  # wait until at least one epoch is done
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert re.search(r"training interrupted (at|after) epoch", out), out
    assert "resume with: nnx train --resume" in out
    assert "Traceback" not in err
    from nnx.checkpoint import load

    state = load(tmp_path / "last.safetensors").meta["trainer"]
    done = state["epoch"]
    assert 1 <= done < 200
    res = nnx_cli("train", "--model", "mlp", "--epochs", str(done + 1), "--batch-size", "50",
                  "--backend", "numpy", "--data", str(small_mnist), "--out", str(tmp_path),
                  "--no-progress", "--resume")
    assert res.returncode == 0, res.stderr
    history = json.loads((tmp_path / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == list(range(1, done + 2))
