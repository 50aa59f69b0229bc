"""`mpiexec -n 2 nnx train --distributed`: same curve as one process, rank-0-only files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nnx
import nnx.distributed as dist
from nnx.data import load_mnist
from nnx.data.idx import write_idx

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    __import__("importlib").util.find_spec("mpi4py") is None or dist.find_mpiexec() is None,
    reason="mpi4py or mpiexec missing (pip install 'nnx-array[mpi]')")


def clean_env():
    from nnx.distributed import _world

    env = {k: v for k, v in os.environ.items() if k not in _world.LAUNCH_VARS
           and k not in ("NNX_BACKEND", _world.FORCE_ENV)}
    env["OMP_NUM_THREADS"] = "1"
    env["OPENBLAS_NUM_THREADS"] = "1"
    return env


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    d = load_mnist()
    write_idx(root / "train-images-idx3-ubyte", d.train_images[:400])
    write_idx(root / "train-labels-idx1-ubyte", d.train_labels[:400].astype(np.uint8))
    write_idx(root / "t10k-images-idx3-ubyte", d.test_images[:200])
    write_idx(root / "t10k-labels-idx1-ubyte", d.test_labels[:200].astype(np.uint8))
    return root


def train_args(data_dir, out, *extra):
    return ["-m", "nnx", "train", "--model", "mlp", "--backend", "numpy", "--epochs", "2",
            "--batch-size", "40", "--data", str(data_dir), "--out", str(out), "--no-progress",
            *extra]


def test_two_ranks_follow_the_single_process_curve(data_dir, tmp_path):
    single = subprocess.run([sys.executable, *train_args(data_dir, tmp_path / "one")],
                            capture_output=True, text=True, env=clean_env(), timeout=300)
    assert single.returncode == 0, single.stderr
    cmd = dist.mpiexec_command(2, [sys.executable,
                                   *train_args(data_dir, tmp_path / "two", "--distributed")])
    double = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=300)
    assert double.returncode == 0, double.stdout + double.stderr
    assert double.stdout.count("epoch 2/2") == 1  # only rank 0 prints and writes
    assert "over 2 ranks" in double.stdout
    one = json.loads((tmp_path / "one" / "history.json").read_text())
    two = json.loads((tmp_path / "two" / "history.json").read_text())
    np.testing.assert_allclose([s["loss"] for s in two["steps"]],
                               [s["loss"] for s in one["steps"]], rtol=1e-4)
    for a, b in zip(one["epochs"], two["epochs"]):
        assert a["val_acc"] == pytest.approx(b["val_acc"], abs=0.006)  # at most one image
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
    files = sorted(p.name for p in (tmp_path / "two").iterdir())
    assert {"best.safetensors", "last.safetensors", "history.json"} <= set(files)
    assert not [f for f in files if f.endswith(".tmp")]


def test_world_larger_than_the_batch_fails_fast(data_dir, tmp_path):
    cmd = dist.mpiexec_command(2, [sys.executable, *train_args(data_dir, tmp_path, "--distributed",
                                                               "--batch-size", "1")])
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=120)
    assert res.returncode != 0
    assert time.perf_counter() - t0 < 60
    assert "batch" in (res.stderr + res.stdout).lower()


def _rank_pids(mpiexec_pid: int, marker: str, timeout: float = 60) -> list[int]:
    """The pids of the ranks started under ``mpiexec_pid`` whose command line has ``marker``."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == mpiexec_pid:
                continue
            try:
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker.encode() in cmd and any(b"nnx" in c for c in cmd) \
                    and not any(b"mpiexec" in c or b"hydra" in c for c in cmd):
                pids.append(int(entry.name))
        if len(pids) == 2:
            return sorted(pids)
        time.sleep(0.1)
    raise AssertionError(f"did not find two ranks with {marker!r}")


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc to find the ranks")
@pytest.mark.parametrize("which", [0, 1])
def test_ctrl_c_to_one_rank_stops_every_rank_with_a_resumable_checkpoint(data_dir, tmp_path, which):
    """SIGINT to a single rank: all ranks agree to stop after the same step (no rank left
    spinning in a collective), rank 0 saves last.safetensors, and the run resumes."""
    out = tmp_path / "run"
    args = train_args(data_dir, out, "--distributed", "--epochs", "1000")
    proc = subprocess.Popen(dist.mpiexec_command(2, [sys.executable, *args]),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env())
    try:
        deadline = time.time() + 120
        while not (out / "history.json").exists() and time.time() < deadline:
            time.sleep(0.05)  # at least one epoch is done
        pids = _rank_pids(proc.pid, str(out))
        # the rank processes in launch order are not ranks; SIGINT one of the two either way
        t0 = time.perf_counter()
        os.kill(pids[which], signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.perf_counter() - t0 < 30
    assert proc.returncode != 0, stdout
    assert "training interrupted" in stdout and "rank" not in stderr.lower(), stdout + stderr
    state = nnx.load(out / "last.safetensors").meta["trainer"]
    assert state["epoch"] >= 1
    cmd = dist.mpiexec_command(2, [sys.executable, "-m", "nnx", "train", "--resume", "--out",
                                   str(out), "--distributed", "--backend", "numpy",
                                   "--no-progress", "--data", str(data_dir),
                                   "--epochs", str(state["epoch"] + 1)])
    res = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(), timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    history = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == list(range(1, state["epoch"] + 2))
