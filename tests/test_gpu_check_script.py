"""bench/gpu_check.sh: stops at once without its wheels, and otherwise runs every step and
keeps OUT/summary.json valid JSON at every moment (here on a CPU: the CuPy parts say why
CuPy is unavailable).

The wheels are built offline from this environment's installed copies of the packages
bench/gpu_wheels.sh downloads, so the script installs them exactly as it would on the GPU
machine (``pip install --no-index --target``).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.sh"
pytestmark = [
    pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                       reason="needs bash and coreutils' timeout"),
    pytest.mark.skipif(os.environ.get("NNX_GPU_CHECK_RUNNING") == "1",
                       reason="inside bench/gpu_check.sh's own test run"),
]


def wheel_specs() -> list[str]:
    """The distributions bench/gpu_wheels.sh fetches for every run (not the CUDA extras)."""
    text = (ROOT / "bench" / "gpu_wheels.sh").read_text()
    block = re.search(r"^specs=\((.*?)\)", text, re.S | re.M).group(1)
    return re.findall(r'"([A-Za-z0-9_.-]+)==', block)


def wheel_from_installed(name: str, out: Path) -> Path:
    """A wheel of the installed distribution ``name`` (its files, dist-info and RECORD)."""
    dist = importlib.metadata.distribution(name)
    tags = [line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "").splitlines()
            if line.startswith("Tag:")]
    files = [f for f in dist.files or [] if not str(f).startswith("..")]
    info = next(str(f).split("/")[0] for f in files if str(f).split("/")[0].endswith(".dist-info"))
    stem = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    path = out / f"{stem}-{dist.version}-{tags[0] if tags else 'py3-none-any'}.whl"
    skip = ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")
    records = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            name_in = str(f)
            if "__pycache__" in name_in or name_in.endswith(".pyc") or name_in.endswith(skip):
                continue
            src = Path(f.locate())
            if not src.is_file():
                continue
            data = src.read_bytes()
            z.writestr(name_in, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append(f"{name_in},sha256={digest},{len(data)}")
        records.append(f"{info}/RECORD,,")
        z.writestr(f"{info}/RECORD", "\n".join(records) + "\n")
    return path


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    out = tmp_path_factory.mktemp("whl")
    for spec in wheel_specs():
        try:
            wheel_from_installed(spec, out)
        except importlib.metadata.PackageNotFoundError:
            pytest.skip(f"{spec} is not installed here, so its wheel cannot be built offline")
    return out


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("NNX_", "PYTEST_"))}
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    e["PYTHON"] = sys.executable
    e.update(extra)
    return e


def test_the_fetched_list_includes_the_runtime_dependencies():
    specs = {s.lower().replace("_", "-") for s in wheel_specs()}
    assert {"array-api-compat", "array-api-strict", "tqdm", "safetensors", "threadpoolctl"} <= specs


def test_without_wheels_it_stops_at_once_with_one_line(tmp_path):
    empty = tmp_path / "nowheels"
    empty.mkdir()
    t0 = time.monotonic()
    res = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], capture_output=True,
                         text=True, timeout=60, env=env(NNX_GPU_WHEELS=str(empty)))
    assert time.monotonic() - t0 < 10
    assert res.returncode == 3
    lines = (res.stdout + res.stderr).strip().splitlines()
    assert len(lines) == 1 and "gpu_wheels.sh" in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_when_array_api_compat_cannot_be_imported_it_stops_with_one_line(tmp_path, wheels):
    """Wheels that install but leave array_api_compat unimportable (here: only tqdm's, and a
    broken array_api_compat further down the path) stop the script before any step."""
    some = tmp_path / "some"
    some.mkdir()
    shutil.copy(next(wheels.glob("tqdm-*.whl")), some)
    broken = tmp_path / "broken" / "array_api_compat"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('array_api_compat is broken here')\n")
    res = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], capture_output=True,
                         text=True, timeout=120,
                         env=env(NNX_GPU_WHEELS=str(some), PYTHONPATH=str(broken.parent)))
    lines = (res.stdout + res.stderr).strip().splitlines()
    assert res.returncode == 3, res.stdout + res.stderr
    assert len(lines) == 1 and "array_api_compat or nnx cannot be imported" in lines[0], lines
    assert "array_api_compat is broken here" in lines[0]


def test_every_timeout_interrupts_so_pytest_still_reports():
    text = SCRIPT.read_text()
    calls = re.findall(r"\btimeout (-[^\n]*)", text)
    assert calls and all(c.startswith("-s INT") for c in calls), calls


def test_an_interrupted_pytest_prints_its_summary_and_report(tmp_path):
    """What `timeout -s INT` buys: pytest cut by SIGINT still prints its summary line and
    writes its junit report (with SIGTERM it prints neither). The signal is sent once the
    slow test has started, however long pytest took to get there."""
    started = tmp_path / "started"
    (tmp_path / "test_sleep.py").write_text(
        "import pathlib, time\n\ndef test_quick():\n    pass\n\ndef test_slow():\n"
        f"    pathlib.Path({str(started)!r}).touch()\n    time.sleep(60)\n")
    xml = tmp_path / "r.xml"
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             f"--junitxml={xml}", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env())
    try:
        t0 = time.monotonic()
        while not started.exists() and proc.poll() is None and time.monotonic() - t0 < 120:
            time.sleep(0.05)
        assert started.exists(), "the slow test never started"
        proc.send_signal(signal.SIGINT)  # what timeout -s INT sends when time is up
        stdout, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2  # pytest's "interrupted"
    assert "1 passed" in stdout and "interrupted" in stdout.lower(), stdout[-500:]
    assert xml.is_file()


def test_fast_run_on_a_cpu_runs_every_step_and_keeps_the_summary_valid(tmp_path, wheels):
    out = tmp_path / "out"
    proc = subprocess.Popen(["bash", str(SCRIPT), str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env=env(NNX_GPU_WHEELS=str(wheels), NNX_GPU_CHECK_FAST="1"))
    seen, t0 = 0, time.monotonic()
    summary = out / "summary.json"
    while proc.poll() is None and time.monotonic() - t0 < 300:
        if summary.is_file():
            json.loads(summary.read_text())  # valid at every moment we look
            seen += 1
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
    log = proc.stdout.read()
    assert proc.returncode == 0, log[-3000:]
    assert seen > 5
    doc = json.loads(summary.read_text())
    assert doc["finished"] is True and doc["mode"] == "fast", doc
    steps = doc["steps"]
    assert list(steps) == ["versions", "train", "layer_tests", "bench", "full_suite"]
    assert all(s["status"] == "ok" for s in steps.values()), steps
    assert doc["cupy"].startswith("unavailable: "), doc["cupy"]
    assert steps["train"]["backend"] == "numpy" and steps["train"]["cupy"] == doc["cupy"]
    assert "accuracy" in steps["train"]["evaluate"]
    assert steps["train"]["history"]["epochs"][0]["val_acc"] > 0.3
    layers = steps["layer_tests"]["result"]
    assert layers["passed"] > 0 and layers["failures"] == layers["errors"] == 0, layers
    assert steps["full_suite"]["result"]["passed"] > 0
    bench = steps["bench"]["result"]
    assert [s["impl"] for s in bench["skipped"]] == ["nnx/cupy"]
    assert any(r["impl"] == "nnx/numpy" and r["median_ms"] > 0 for r in bench["rows"])
    versions = json.loads((out / "versions.json").read_text())
    assert versions["cupy_probe"] == doc["cupy"] and "numpy" in versions["available_backends"]
    assert doc["total_s"] < doc["budget_s"]
    assert (out / "gpu_check.log").is_file() and not (out / "run" / "last.safetensors").exists()
