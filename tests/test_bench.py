"""Smoke test of the benchmark harness (bench/): it runs and its JSON has the fields.

Never asserts on timings — only on the structure of the output, on the
pairing of nnx with PyTorch per round, and on the course report's nested-loop
convolution agreeing with nnx's.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ is not an installed package
    sys.path.insert(0, str(ROOT))

from bench import report  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None


def test_quick_run_writes_complete_json(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "bench", "--quick", "--models", "MLP", "--batches", "32",
           "--rounds", "1", "--steps", "3", "--warmup", "1", "--loop", "--out", str(out)]
    cmd += ["--backends", "numpy,torch:cpu", "--torch", "cpu"] if HAS_TORCH else \
        ["--backends", "numpy", "--torch", "none"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "MLP" in proc.stderr and "ms/step" in proc.stderr  # the table went to stderr
    doc = json.loads(out.read_text())

    assert doc["schema"] == "nnx-bench/1"
    m = doc["machine"]
    for key in ("date", "cpu_model", "cpu_count", "memory_gib", "python", "packages", "numpy_blas",
                "git", "load_average_start", "load_average_end"):
        assert key in m, key
    assert set(m["env"]) >= {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"}
    assert doc["settings"]["optimizer"] == {"type": "SGD", "lr": 0.01, "momentum": 0.9,
                                            "weight_decay": 1e-4}

    impls = {r["impl"]: r for r in doc["results"]}
    loops = {"nnx-loop/numpy", "nnx-loop-dx/numpy"}  # the README's loop, and with backward()
    expected = {"nnx/numpy", "torch/cpu", "nnx/torch-cpu"} if HAS_TORCH else {"nnx/numpy"}
    assert set(impls) == expected | loops
    for r in impls.values():
        assert (r["model"], r["batch"], r["errors"]) == ("MLP", 32, 0)
        assert r["median_ms"] > 0 and r["images_per_s"] > 0 and r["peak_rss_mb"] > 0
        assert r["loss_finite"] is True
        assert len(r["rounds"]) == 1 and r["rounds"][0]["steps"] == 3
    assert impls["nnx/numpy"]["torch_imported"] is False  # its RSS is nnx's alone
    for r in impls.values():  # both sides' processes run with glibc's malloc settled
        assert r["child_env"]["MALLOC_MMAP_THRESHOLD_"] == str(32 << 20)
        assert r["child_env"]["MALLOC_TRIM_THRESHOLD_"] == str(64 << 20)
    if HAS_TORCH:
        assert impls["torch/cpu"]["torch_num_threads"] >= 1
        comps = {c["impl"]: c for c in doc["comparisons"]}
        assert set(comps) == {"nnx/numpy", "nnx/torch-cpu"} | loops
        for c in comps.values():
            assert c["reference"] == "torch/cpu" and len(c["ratio_per_round"]) == 1
            assert c["ratio_median"] > 0 and c["nnx_peak_rss_mb"] > 0 and c["torch_peak_rss_mb"] > 0

    seed = doc["seed_conv"]
    assert seed["output_shape"] == [8, 6, 28, 28]
    assert seed["max_abs_diff"] < 1e-4 and seed["speedup"] > 0


def test_fresh_malloc_leaves_glibc_alone(monkeypatch):
    from bench import run

    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "123")  # the user's own setting wins
    settled = run.child_env(run.parse_args([]))
    assert settled["MALLOC_MMAP_THRESHOLD_"] == str(32 << 20)
    assert settled["MALLOC_TRIM_THRESHOLD_"] == "123"
    fresh = run.child_env(run.parse_args(["--fresh-malloc"]))
    assert "MALLOC_MMAP_THRESHOLD_" not in fresh and fresh["MALLOC_TRIM_THRESHOLD_"] == "123"


def _measure(rnd, impl, ms, rss=100.0):
    return {"round": rnd, "model": "MLP", "batch": 32, "impl": impl, "foreign_load": 0.0,
            "result": {"median_ms": ms, "min_ms": ms, "steps": 5, "peak_rss_mb": rss,
                       "loss_finite": True, "device": "cpu"}}


def test_report_pairs_rounds_and_takes_medians():
    impls = [{"name": "nnx/numpy", "kind": "nnx", "backend": "numpy", "device": None,
              "reference": "torch/cpu"},
             {"name": "torch/cpu", "kind": "torch", "backend": None, "device": "cpu"}]
    ms = [_measure(0, "nnx/numpy", 4.0, 50.0), _measure(0, "torch/cpu", 2.0, 200.0),
          _measure(1, "nnx/numpy", 9.0, 60.0), _measure(1, "torch/cpu", 10.0, 200.0),
          _measure(2, "nnx/numpy", 3.0, 55.0), _measure(2, "torch/cpu", 2.0, 210.0)]
    results = report.summarise(ms, impls, ["MLP"], [32])
    (c,) = report.compare(results)
    assert c["ratio_per_round"] == [2.0, 0.9, 1.5]
    assert c["ratio_median"] == 1.5  # the median of per-round ratios, not a ratio of medians
    assert c["nnx_median_ms"] == 4.0 and c["torch_median_ms"] == 2.0
    assert c["nnx_peak_rss_mb"] == 60.0 and c["torch_peak_rss_mb"] == 210.0
    assert abs(c["rss_ratio"] - 60.0 / 210.0) < 1e-12
