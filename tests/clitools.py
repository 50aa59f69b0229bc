"""Running the real ``nnx`` command in a subprocess, as a user would, and the data it reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from nnx.data import load_mnist
from nnx.data.idx import write_idx

#: The console script pip installed next to this Python (``python -m nnx`` without one).
NNX = [str(Path(sys.executable).with_name("nnx"))] \
    if Path(sys.executable).with_name("nnx").is_file() else [sys.executable, "-m", "nnx"]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NNX_BACKEND"}
    return {**env, **(extra or {})}


def nnx_cli(*args: str, cwd: str | os.PathLike[str] | None = None, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``nnx ARGS...``: the finished process with its stdout and stderr as text."""
    return subprocess.run([*NNX, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env=cli_env(env))


def nnx_start(*args: str, cwd: str | os.PathLike[str] | None = None) -> subprocess.Popen:
    """``nnx ARGS...`` started in the background (read its lines with :func:`wait_for_line`)."""
    return subprocess.Popen([*NNX, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=cwd, env=cli_env({"PYTHONUNBUFFERED": "1"}))


def wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 120) -> list[str]:
    """Read ``proc``'s stdout until a line contains ``text``; the lines read."""
    lines: list[str] = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"nnx ended before printing {text!r}: {''.join(lines)}"
                                 f"{proc.stderr.read()}")
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"no line with {text!r} within {timeout} s: {''.join(lines)}")


def interrupt(proc: subprocess.Popen, times: int = 1, timeout: float = 60) -> tuple[str, str]:
    """Send SIGINT ``times`` times (0.05 s apart) and collect the rest of the output."""
    for i in range(times):
        if i:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=timeout)
    return out, err


def one_line_error(res: subprocess.CompletedProcess) -> str:
    """The single stderr line of a failed command (asserting there is one, no traceback)."""
    assert res.returncode != 0, res.stdout
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


def write_mnist_folder(root: Path, n_train: int, n_test: int, gz_test: bool = True,
                       seed: int | None = None) -> Path:
    """The four standard IDX files of ``n_train`` / ``n_test`` bundled sample images, or of
    random images and labels when ``seed`` is given."""
    root.mkdir(parents=True, exist_ok=True)
    if seed is None:
        d = load_mnist()
        tri, trl, tei, tel = d.train_images, d.train_labels, d.test_images, d.test_labels
    else:
        rng = np.random.default_rng(seed)
        tri = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
        tei = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
        trl, tel = rng.integers(0, 10, n_train), rng.integers(0, 10, n_test)
    gz = ".gz" if gz_test else ""
    write_idx(root / "train-images-idx3-ubyte", tri[:n_train])
    write_idx(root / "train-labels-idx1-ubyte", trl[:n_train].astype(np.uint8))
    write_idx(root / f"t10k-images-idx3-ubyte{gz}", tei[:n_test])
    write_idx(root / f"t10k-labels-idx1-ubyte{gz}", tel[:n_test].astype(np.uint8))
    return root
