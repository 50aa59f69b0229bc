"""What a hostile new user tried against `nnx train` / `nnx evaluate`, each a test through the
real command: SIGTERM, late and ignored signals, checkpoints from elsewhere, odd lock files,
a lock removed by hand, inconsistent metadata, closed pipes."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import numpy as np
import pytest
from clitools import NNX, cli_env, interrupt, nnx_cli, nnx_start, one_line_error, wait_for_line
from test_cli_runs import QUICK, snapshot, train

import nnx
from nnx.checkpoint import load_file, save_file


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from clitools import write_mnist_folder

    return write_mnist_folder(tmp_path_factory.mktemp("mnist"), 600, 200)


def test_sigterm_saves_a_resumable_checkpoint_and_exits_143(data, tmp_path):
    out = tmp_path / "run"
    proc = nnx_start("train", *QUICK, "--data", str(data), "--epochs", "500", "--out", str(out))
    wait_for_line(proc, "epoch 1/500")
    proc.send_signal(signal.SIGTERM)
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "SIGTERM: finishing this step" in stdout and "resume with" in stdout
    assert "Traceback" not in err and not (out / ".nnx.lock").exists()
    res = train(data, "--out", str(out), "--resume", epochs=nnx.load(
        out / "last.safetensors").meta["trainer"]["epoch"] + 1)
    assert res.returncode == 0, res.stderr


def test_sigterm_at_start_up_leaves_no_trace(data, tmp_path):
    from clitools import write_mnist_folder

    big = write_mnist_folder(tmp_path / "big", 60000, 10000, gz_test=False, seed=1)
    first = train(data, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = os.readlink(tmp_path / "runs" / "latest")
    proc = nnx_start("train", *QUICK, "--backend", "auto", "--data", str(big), cwd=tmp_path)
    try:
        wait_for_line(proc, "backend:")  # printed just before the data are read
    except AssertionError:
        proc.kill()
        raise
    proc.send_signal(signal.SIGTERM)
    stdout, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip() == "nnx train: terminated" and "training " not in stdout
    assert os.readlink(tmp_path / "runs" / "latest") == before
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted([before, "latest"])


def test_a_ctrl_c_after_the_done_line_keeps_exit_status_0(data, tmp_path):
    proc = nnx_start("train", *QUICK, "--data", str(data), "--epochs", "2",
                     "--out", str(tmp_path / "run"))
    wait_for_line(proc, "done in")
    stdout, err = interrupt(proc)
    assert proc.returncode == 0, err


def test_a_signal_the_process_ignores_stays_ignored(data, tmp_path):
    proc = subprocess.Popen([*NNX, "train", *QUICK, "--data", str(data), "--epochs", "3", "--out",
                             str(tmp_path / "run")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    wait_for_line(proc, "epoch 1/3")
    stdout, err = interrupt(proc)
    assert proc.returncode == 0, err
    assert "epoch 3/3" in stdout


def test_the_resume_hint_is_quoted_for_the_shell_and_keeps_the_backend(data, tmp_path):
    out = tmp_path / "my run"
    proc = nnx_start("train", *QUICK, "--data", str(data), "--epochs", "500", "--out", str(out))
    wait_for_line(proc, "epoch 1/500")
    stdout, _ = interrupt(proc)
    # --backend was given: resuming without it would fall back to auto (another device)
    assert f"resume with: nnx train --resume --out '{out}' --backend numpy\n" in stdout


def test_a_bad_nnx_distributed_value_is_one_line(data, tmp_path):
    res = nnx_cli("train", *QUICK, "--data", str(data), "--epochs", "1", "--distributed",
                  "--out", str(tmp_path / "run"), env={"NNX_DISTRIBUTED": "maybe"})
    assert res.returncode == 1
    assert one_line_error(res) == (
        "nnx train: error: environment variable NNX_DISTRIBUTED='maybe' is not a yes/no value; "
        "use 1, true, yes, on or 0, false, no, off")
    assert not (tmp_path / "run").exists()


# -- checkpoints from elsewhere ------------------------------------------------------------------
def test_a_checkpoint_of_the_python_trainer_is_not_resumed_by_the_cli(data, tmp_path):
    from nnx.data import DataLoader, load_mnist

    d = load_mnist(data)
    nnx.manual_seed(0)
    model = nnx.models.MLP()
    trainer = nnx.Trainer(model, nnx.optim.SGD(model, lr=0.05, momentum=0.9), out_dir=tmp_path,
                          progress=False, log=lambda line: None)
    trainer.fit(DataLoader(d.train_images, d.train_labels, 50), None, epochs=1)
    saved = snapshot(tmp_path)
    line = one_line_error(nnx_cli("train", "--resume", "--out", str(tmp_path), "--epochs", "2",
                                  "--model", "mlp", "--backend", "numpy"))
    assert "was not written by nnx train" in line and "nnx.Trainer.resume" in line
    assert snapshot(tmp_path) == saved


def test_resuming_another_runs_checkpoint_in_place_is_refused(data, tmp_path):
    x, y = tmp_path / "x", tmp_path / "y"
    assert train(data, "--out", str(x), "--seed", "1").returncode == 0
    assert train(data, "--out", str(y), "--seed", "2", epochs=3).returncode == 0
    (y / "x.safetensors").write_bytes((x / "last.safetensors").read_bytes())
    saved = snapshot(y)
    for ckpt in (y / "x.safetensors", y / "best.safetensors"):
        line = one_line_error(nnx_cli("train", "--resume", str(ckpt), "--epochs", "4",
                                      "--backend", "numpy"))
        assert "would replace that run's later results" in line and "--out DIR" in line
    assert snapshot(y) == saved
    res = nnx_cli("train", "--resume", str(y / "x.safetensors"), "--out", str(tmp_path / "z"),
                  "--epochs", "2", "--backend", "numpy", "--no-progress")
    assert res.returncode == 0, res.stderr


def test_resume_of_a_missing_checkpoint_says_so(tmp_path):
    line = one_line_error(nnx_cli("train", "--resume", str(tmp_path / "nothere" / "x.safetensors")))
    assert "no checkpoint at" in line
    assert not (tmp_path / "nothere").exists()


def tamper(path, edit):
    """Rewrite a checkpoint with its metadata (and tensors) changed by ``edit(meta, tensors)``."""
    tensors, metadata = load_file(path)
    meta = json.loads(metadata["nnx"])
    edit(meta, tensors)
    save_file(path, tensors, {"nnx": json.dumps(meta)})


@pytest.mark.parametrize("edit, words", [
    (lambda m, t: m["trainer"].update(step_in_epoch=10**6), "beyond the 12 steps of an epoch"),
    (lambda m, t: m["scheduler"].update(last_epoch=10**12), "the checkpoint is inconsistent"),
    (lambda m, t: [t.pop(k) for k in list(t) if k.startswith("optimizer.")],
     "lacks momentum_buffer"),
    (lambda m, t: m.update(model_config={"name": "MLP", "sizes": [784, 30, 10],
                                         "weight_decay": None}), "the checkpoint is inconsistent"),
    (lambda m, t: t.update({"model.1.weight": np.zeros((600, 11), np.float32)}), "1.weight"),
])
def test_inconsistent_checkpoints_are_refused_naming_the_file(data, tmp_path, edit, words):
    out = tmp_path / "run"
    assert train(data, "--out", str(out)).returncode == 0
    tamper(out / "last.safetensors", edit)
    line = one_line_error(train(data, "--out", str(out), "--resume", epochs=2))
    assert words in line and str(out) in line


# -- lock files --------------------------------------------------------------------------------------
def test_odd_lock_files_are_named_and_never_followed(data, tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / ".nnx.lock").symlink_to(target)
    line = one_line_error(train(data, "--out", str(tmp_path / "a")))
    assert ".nnx.lock is a link or a folder" in line
    assert target.read_text() == "keep me"
    (tmp_path / "b").mkdir()
    os.mkfifo(tmp_path / "b" / ".nnx.lock")
    line = one_line_error(nnx_cli("train", *QUICK, "--data", str(data), "--out",
                                  str(tmp_path / "b"), timeout=60))
    assert "not a regular file" in line
    (tmp_path / "c" / ".nnx.lock").mkdir(parents=True)
    assert ".nnx.lock is a link or a folder" in one_line_error(train(data, "--out",
                                                                     str(tmp_path / "c")))


def test_a_lock_removed_by_hand_stops_the_run_before_it_writes(data, tmp_path):
    out = tmp_path / "run"
    proc = nnx_start("train", *QUICK, "--data", str(data), "--epochs", "500", "--out", str(out))
    wait_for_line(proc, "epoch 1/500")
    (out / ".nnx.lock").unlink()  # what a user who believes the lock is stale might do
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "was removed or replaced while this run held it" in err


def test_overwrite_keeps_the_old_run_when_the_new_one_fails_before_saving(data, tmp_path):
    out = tmp_path / "run"
    assert train(data, "--out", str(out)).returncode == 0
    saved = snapshot(out)
    line = one_line_error(train(data, "--out", str(out), "--overwrite", "--lr", "1e308"))
    assert "loss became" in line
    assert snapshot(out) == saved


# -- smaller things ------------------------------------------------------------------------------
def test_nnx_backend_is_the_cli_default(data, tmp_path):
    res = nnx_cli("train", "--model", "mlp", "--batch-size", "50", "--epochs", "1", "--data",
                  str(data), "--out", str(tmp_path / "run"), "--no-progress",
                  env={"NNX_BACKEND": "array_api_strict"})
    assert res.returncode == 0, res.stderr
    assert "on array_api_strict" in res.stdout
    line = one_line_error(nnx_cli("evaluate", str(tmp_path / "run/best.safetensors"),
                                  env={"NNX_BACKEND": "bogus"}))
    assert "bogus" in line


def test_evaluate_a_run_folder_points_to_its_checkpoint(data, tmp_path):
    assert train(data, "--out", str(tmp_path / "run")).returncode == 0
    line = one_line_error(nnx_cli("evaluate", str(tmp_path / "run")))
    assert "is a folder" in line and "best.safetensors" in line


def test_empty_data_flag_is_an_error(tmp_path):
    assert "--data must name a folder" in one_line_error(nnx_cli("train", "--data=", "--out",
                                                                 str(tmp_path / "r")))


def test_a_closed_stdout_does_not_stop_training(data, tmp_path):
    out = tmp_path / "run"
    cmd = " ".join([*NNX, "train", *QUICK, "--data", str(data), "--epochs", "3", "--out",
                    str(out)])
    res = subprocess.run(f"{cmd} | head -1", shell=True, capture_output=True, text=True,
                         env=cli_env(), timeout=300)
    assert res.returncode == 0
    assert len(json.loads((out / "history.json").read_text())["epochs"]) == 3


def test_python_api_gaps():
    from nnx.data import DataLoader

    model, other = nnx.models.MLP((784, 8, 10)), nnx.models.MLP((784, 8, 10))
    with pytest.raises(ValueError, match="not parameters of the MLP"):
        nnx.Trainer(model, nnx.optim.SGD(other, lr=0.1))
    trainer = nnx.Trainer(model, nnx.optim.SGD(model, lr=0.1), log=lambda line: None)
    with pytest.raises(ValueError, match="yields no batches"):
        trainer.fit([], None, epochs=1)
    x = DataLoader(np.zeros((4, 28, 28), np.uint8), np.zeros(4, np.int64), 2, dtype=np.float64)
    assert x.dtype == "float64"
