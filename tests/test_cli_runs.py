"""`nnx train` never destroys another run's results, and every line it prints is true.

Each test runs the real ``nnx`` command in a subprocess (real SIGINT / SIGKILL where it
matters): run folders and locks, --overwrite, the --resume rule for recipe flags, data
recorded by fingerprint, float64 end to end, Ctrl-C at every stage, flags that would be
ignored.
"""

from __future__ import annotations

import json
import re
import signal
import time

import numpy as np
import pytest
from clitools import (
    interrupt,
    nnx_cli,
    nnx_start,
    one_line_error,
    wait_for_line,
    write_mnist_folder,
)

import nnx
from nnx.backends.cpu_threads import usable_cores
from nnx.data.idx import write_idx

QUICK = ("--model", "mlp", "--batch-size", "50", "--backend", "numpy", "--no-progress")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """600 train / 200 test bundled images in the four standard IDX files."""
    return write_mnist_folder(tmp_path_factory.mktemp("mnist"), 600, 200)


def train(data, *args, cwd=None, epochs=1):
    return nnx_cli("train", *QUICK, "--data", str(data), "--epochs", str(epochs), *args, cwd=cwd)


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def wrote_paths(stdout, cwd):
    """Every path named after 'wrote' in the output, resolved against ``cwd``."""
    paths = []
    for m in re.finditer(r"wrote (\S+?)(?:,|$| )((?: \S+?,?)*)$", stdout, re.M):
        first = cwd / m.group(1).rstrip(",")
        paths.append(first)
        paths += [first.parent / n.strip(",") for n in m.group(2).split() if n.strip(",")]
    return paths


# -- run folders ------------------------------------------------------------------------
def test_each_default_run_gets_its_own_folder_and_latest_follows(data, tmp_path):
    first = train(data, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    latest = tmp_path / "runs" / "latest"
    assert latest.is_symlink()
    one = latest.resolve()
    saved = snapshot(one)
    second = train(data, "--seed", "1", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    two = latest.resolve()
    assert two != one and two.parent == one.parent == (tmp_path / "runs").resolve()
    assert snapshot(one) == saved  # the first run is untouched
    assert {"best.safetensors", "last.safetensors", "history.json"} <= set(snapshot(two))
    assert f"run folder runs/{two.name}" in second.stdout
    ev = nnx_cli("evaluate", "runs/latest/best.safetensors", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr


def test_a_folder_holding_a_run_is_refused_and_left_as_it_was(data, tmp_path):
    out = tmp_path / "run"
    assert train(data, "--out", str(out)).returncode == 0
    saved = snapshot(out)
    line = one_line_error(train(data, "--out", str(out), "--seed", "3"))
    assert str(out) in line and "--resume" in line and "--overwrite" in line
    assert snapshot(out) == saved


def test_overwrite_replaces_the_whole_earlier_run(data, tmp_path):
    out = tmp_path / "run"
    assert train(data, "--out", str(out), epochs=2).returncode == 0
    (out / "curves.png").write_bytes(b"an old plot")
    res = train(data, "--out", str(out), "--overwrite", "--seed", "5")
    assert res.returncode == 0, res.stderr
    assert "--overwrite: removed" in res.stdout
    history = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1]
    assert nnx.load(out / "last.safetensors").meta["config"]["seed"] == 5
    curves = out / "curves.png"
    assert not curves.exists() or curves.read_bytes() != b"an old plot"


def test_a_second_run_into_a_busy_folder_refuses_with_the_holders_pid(data, tmp_path):
    out = tmp_path / "run"
    first = nnx_start("train", *QUICK, "--data", str(data), "--epochs", "500", "--out", str(out))
    try:
        wait_for_line(first, "epoch 1/500")
        line = one_line_error(train(data, "--out", str(out), "--overwrite"))
        assert f"pid {first.pid}" in line and "in use" in line
    finally:
        out_text, err = interrupt(first)
    assert first.returncode == 130, err
    # the first run's checkpoint is intact and resumable
    assert nnx.load(out / "last.safetensors").meta["config"]["epochs"] == 500


def test_a_stale_lock_of_a_killed_run_is_taken_over(data, tmp_path):
    out = tmp_path / "run"
    proc = nnx_start("train", *QUICK, "--data", str(data), "--epochs", "500", "--out", str(out))
    wait_for_line(proc, "epoch 2/500")  # epoch 1's checkpoint is on disk by now
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert (out / ".nnx.lock").exists()  # left behind by kill -9
    res = train(data, "--out", str(out), "--resume", epochs=4)
    assert res.returncode == 0, res.stderr
    assert f"took over the stale lock of {out} (pid {proc.pid}" in res.stdout
    assert not (out / ".nnx.lock").exists()


def test_a_failed_start_leaves_no_empty_folder(data, tmp_path):
    line = one_line_error(train(data, "--optimizer", "momentum", "--nesterov", cwd=tmp_path))
    assert "--nesterov" in line
    assert not (tmp_path / "runs").exists()  # nor the runs/ folder it made for itself
    (tmp_path / "runs").mkdir()  # a runs/ that was there before stays
    one_line_error(train(data, "--optimizer", "momentum", "--nesterov", cwd=tmp_path))
    assert list((tmp_path / "runs").iterdir()) == []


def test_out_must_be_a_writable_folder(data, tmp_path):
    (tmp_path / "afile").write_text("x")
    t0 = time.perf_counter()
    line = one_line_error(train(data, "--out", str(tmp_path / "afile" / "run"), epochs=50))
    assert time.perf_counter() - t0 < 30  # found before training, not after epoch 1
    assert "afile" in line and ".tmp" not in line
    line = one_line_error(train(data, "--out="))
    assert "--out" in line and "empty" in line


# -- --resume never lies ------------------------------------------------------------------
@pytest.mark.parametrize("flag, value, shown", [
    ("--lr", "0.1", "--lr 0.02 there, 0.1 here"),
    ("--momentum", "0.5", "--momentum 0.9 there, 0.5 here"),
    ("--weight-decay", "0", "--weight-decay 0.0001 there, 0.0 here"),
    ("--scheduler-interval", "epoch", "--scheduler-interval step there, epoch here"),
    ("--dtype", "float64", "--dtype float32 there, float64 here"),
])
def test_resume_refuses_a_changed_recipe_flag(data, tmp_path, flag, value, shown):
    out = tmp_path / "run"
    res = train(data, "--out", str(out), "--lr", "0.02", "--scheduler", "exponential",
                "--gamma", "0.9", "--scheduler-interval", "step")
    assert res.returncode == 0, res.stderr
    saved = snapshot(out)
    line = one_line_error(train(data, "--out", str(out), "--resume", flag, value, epochs=2))
    assert shown in line
    assert snapshot(out) == saved


def test_resume_continues_the_recorded_recipe(data, tmp_path):
    out = tmp_path / "run"
    assert train(data, "--out", str(out), "--lr", "0.02", "--scheduler", "step",
                 "--step-size", "1", "--gamma", "0.5", epochs=3).returncode == 0
    # continue the finished 3-epoch run to 4 epochs without repeating its flags
    res = nnx_cli("train", "--resume", "--out", str(out), "--epochs", "4", "--no-progress",
                  "--backend", "numpy")
    assert res.returncode == 0, res.stderr
    history = json.loads((out / "history.json").read_text())
    assert [e["lr"] for e in history["epochs"]] == pytest.approx([0.02, 0.01, 0.005, 0.0025])
    config = nnx.load(out / "last.safetensors").meta["config"]
    assert (config["lr"], config["scheduler"], config["step_size"], config["gamma"]) == \
        (0.02, "step", 1, 0.5)
    assert config["epochs"] == 4


def test_resume_with_the_same_flags_is_fine(data, tmp_path):
    out = tmp_path / "run"
    assert train(data, "--out", str(out), "--lr", "0.02").returncode == 0
    res = train(data, "--out", str(out), "--resume", "--lr", "0.02", epochs=2)
    assert res.returncode == 0, res.stderr


def test_resume_into_another_folder_says_only_true_things(data, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    # lr 0: the accuracy never improves after epoch 1, so epoch 3 writes no best.safetensors
    assert train(data, "--out", str(a), "--lr", "0", epochs=2).returncode == 0
    res = train(data, "--resume", str(a / "last.safetensors"), "--out", str(b), epochs=3)
    assert res.returncode == 0, res.stderr
    named = wrote_paths(res.stdout, tmp_path)
    assert named, res.stdout
    for path in named:
        assert path.is_file(), (path, res.stdout)
    assert not (b / "best.safetensors").exists()
    assert f"in {a / 'best.safetensors'}" in res.stdout


def test_a_finished_run_resumed_says_there_is_nothing_to_train(data, tmp_path):
    out = tmp_path / "run"
    assert train(data, "--out", str(out), epochs=2).returncode == 0
    saved = snapshot(out)
    res = nnx_cli("train", "--resume", "--out", str(out), "--no-progress", "--backend", "numpy")
    assert res.returncode == 0, res.stderr
    assert "nothing to train" in res.stdout and "wrote" not in res.stdout
    assert snapshot(out) == saved


# -- data recorded by fingerprint ------------------------------------------------------------
def test_evaluate_reads_the_recorded_data_from_any_folder(data, tmp_path):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    write_mnist_folder(home / "data", 600, 200)
    write_mnist_folder(elsewhere / "data", 600, 200, seed=7)  # other digits, same name
    res = train("data", "--out", "run", cwd=home)
    assert res.returncode == 0, res.stderr
    best = max(e["val_acc"] for e in json.loads((home / "run/history.json").read_text())["epochs"])
    ev = nnx_cli("evaluate", str(home / "run/best.safetensors"), cwd=elsewhere)
    assert ev.returncode == 0, ev.stderr
    assert f"accuracy: {best:.4f}" in ev.stdout


def test_evaluate_refuses_data_that_changed_and_notes_data_chosen_on_purpose(data, tmp_path):
    folder = write_mnist_folder(tmp_path / "data", 600, 200)
    assert train(folder, "--out", str(tmp_path / "run")).returncode == 0
    ckpt = str(tmp_path / "run/best.safetensors")
    labels = np.asarray(nnx.data.read_idx(folder / "t10k-labels-idx1-ubyte.gz"))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", ((labels + 1) % 10).astype(np.uint8))
    line = one_line_error(nnx_cli("evaluate", ckpt))
    assert "not what" in line and "--data" in line and "labels" in line
    other = write_mnist_folder(tmp_path / "other", 600, 200, seed=3)
    ev = nnx_cli("evaluate", ckpt, "--data", str(other))
    assert ev.returncode == 0, ev.stderr
    assert "note:" in ev.stdout and "accuracy:" in ev.stdout


def test_resume_refuses_other_data(data, tmp_path):
    out = tmp_path / "run"
    assert train(data, "--out", str(out)).returncode == 0
    other = write_mnist_folder(tmp_path / "other", 600, 200, seed=3)
    line = one_line_error(train(other, "--out", str(out), "--resume", epochs=2))
    assert "not what" in line and "--data" in line


# -- float64 -------------------------------------------------------------------------------
def test_float64_trains_and_evaluates_end_to_end(data, tmp_path):
    out = tmp_path / "run"
    res = train(data, "--out", str(out), "--dtype", "float64", "--model", "lenet5",
                "--batch-size", "64", "--threads", "1")
    assert res.returncode == 0, res.stderr
    ckpt = nnx.load(out / "best.safetensors")
    assert ckpt.meta["dtype"] == "float64" and ckpt.tensors["model.0.weight"].dtype == np.float64
    best = json.loads((out / "history.json").read_text())["epochs"][0]["val_acc"]
    ev = nnx_cli("evaluate", str(out / "best.safetensors"))
    assert ev.returncode == 0, ev.stderr
    assert f"accuracy: {best:.4f}" in ev.stdout


# -- Ctrl-C ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """60,000 / 10,000 random images: reading them keeps start-up busy for a while."""
    return write_mnist_folder(tmp_path_factory.mktemp("big"), 60000, 10000, gz_test=False,
                              seed=1)


def test_ctrl_c_during_start_up_says_interrupted(big, tmp_path):
    proc = nnx_start("train", *QUICK, "--backend", "auto", "--epochs", "1", "--data", str(big),
                     "--out", str(tmp_path / "run"))
    try:
        lines = wait_for_line(proc, "backend:")  # auto's choice, printed before the data are read
    except AssertionError:
        proc.kill()
        raise
    out, err = interrupt(proc)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    assert "training " not in "".join(lines) + out and "resume with" not in out
    assert not (tmp_path / "run").exists()  # the folder this run made is gone again


def test_ctrl_c_during_evaluate_says_interrupted(data, big, tmp_path):
    out = tmp_path / "run"
    assert train(data, "--out", str(out), "--model", "lenet5").returncode == 0
    proc = nnx_start("evaluate", str(out / "best.safetensors"), "--data", str(big),
                     "--batch-size", "1")  # 10,000 batches of one: seconds of evaluation
    time.sleep(1.5)
    assert proc.poll() is None
    _, err = interrupt(proc)
    assert proc.returncode == 130, err
    assert err.strip() == "nnx evaluate: interrupted"


def test_ctrl_c_while_the_plot_is_drawn_keeps_a_finished_run_finished(data, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    proc = nnx_start("train", *QUICK, "--data", str(data), "--epochs", "2", "--out", str(out))
    wait_for_line(proc, "epoch 2/2")
    stdout, err = interrupt(proc)
    assert proc.returncode == 0, stdout + err
    assert "done in" in stdout and "resume with" not in stdout and "Traceback" not in err
    assert len(json.loads((out / "history.json").read_text())["epochs"]) == 2


def test_a_second_ctrl_c_inside_the_first_step_names_no_missing_file(big, tmp_path):
    out = tmp_path / "run"
    proc = nnx_start("train", *QUICK, "--data", str(big), "--model", "widecnn",
                     "--batch-size", "600", "--threads", "1", "--out", str(out))  # long steps
    wait_for_line(proc, "training ")
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    wait_for_line(proc, "finishing this step")  # the first one is handled, inside the step
    stdout, err = interrupt(proc)  # the second one stops at once
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert not (out / "last.safetensors").exists()
    assert "resume with" not in stdout and ".safetensors" not in stdout
    assert "nothing of this run was saved" in stdout
    assert not out.exists()  # nothing was saved, so the folder this run made is gone


# -- flags that would be ignored ---------------------------------------------------------
@pytest.mark.parametrize("args, words", [
    (("--optimizer", "momentum", "--nesterov"), ("--nesterov", "--optimizer sgd")),
    (("--threads", "999"), ("--threads 999", "cores")),
    (("--threads", "2", "--batch-size", "32"), ("--threads 2", "64")),
    (("--scheduler", "multistep", "--step-size", "3"), ("--step-size", "--scheduler step")),
    (("--scheduler", "none", "--gamma", "0.5"), ("--gamma",)),
    (("--milestones", "5,x"), ("--milestones",)),
])
def test_flags_that_would_do_nothing_are_errors(data, tmp_path, args, words):
    if "--batch-size" in args and usable_cores() < 2:
        pytest.skip("needs 2 cores (with one, --threads 2 is refused for the cores)")
    line = one_line_error(train(data, "--out", str(tmp_path / "run"), *args))
    for w in words:
        assert w in line, line
