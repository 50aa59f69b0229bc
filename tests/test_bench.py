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

import pytest

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


@pytest.mark.parametrize("argv,message", [
    (["--models", "Nope"], "--models: unknown 'Nope'"),
    (["--batches", "64,x"], "--batches: a comma list of positive ints"),
    (["--batches", "0"], "--batches: a comma list of positive ints"),
    (["--rounds", "0"], "--rounds must be >= 1"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--data", "/nonexistent/mnist"], "--data: /nonexistent/mnist is not a folder"),
])
def test_e2e_refuses_bad_arguments_before_running_anything(argv, message, capsys):
    from bench import e2e

    with pytest.raises(SystemExit) as exc:
        e2e.parse_args(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_e2e_makes_the_out_folder_first(tmp_path):
    from bench import e2e

    out = tmp_path / "new" / "e2e.json"
    args = e2e.parse_args(["--out", str(out), "--models", "MLP,LeNet5", "--batches", "64,128"])
    assert out.parent.is_dir() and args.models == ["MLP", "LeNet5"] and args.batches == [64, 128]


def test_e2e_summary_takes_medians_of_rounds():
    from bench import e2e

    def row(r, nnx_wall, torch_wall, nnx_epochs, torch_epochs):
        return {"round": r, "model": "MLP", "batch": 64, "ratio": nnx_wall / torch_wall,
                "nnx": {"wall": nnx_wall, "epoch_seconds": nnx_epochs},
                "torch": {"wall": torch_wall, "epoch_seconds": torch_epochs}}

    rows = [row(0, 4.0, 5.0, [1.0, 3.0], [1.0, 1.0]), row(1, 6.0, 5.0, [2.0, 2.0], [4.0, 4.0]),
            row(2, 5.0, 5.0, [1.0, 1.0], [1.0, 1.0])]
    s = e2e.summarise(rows)["MLP batch 64"]
    assert (s["ratio_median"], s["ratio_min"], s["ratio_max"]) == (1.0, 0.8, 1.2)
    assert s["epoch_ratio_median"] == 1.0  # per round 2.0, 0.5, 1.0
    assert s["nnx_wall_median"] == 5.0 and s["torch_wall_median"] == 5.0
