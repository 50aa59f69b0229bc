"""Turn the raw per-process measurements into results, comparisons and a table.

A *measurement* is one child process: one (round, model, batch, impl). A
*result* gathers one (model, batch, impl) over the rounds. A *comparison*
pairs an nnx result with PyTorch's own on the same kind of device, with the
nnx/PyTorch step-time ratio of each round (both measured minutes apart in
the same round) and the median of those ratios.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

TARGET_BATCH = 128
TARGET_IMPL = "nnx/numpy"
TARGET_REFERENCE = "torch/cpu"
TARGETS = {"MLP": 1.0, "LeNet5": 1.6, "WideCNN": 1.3}
"""The speed targets: nnx-on-NumPy / PyTorch-CPU median step-time ratio at batch 128."""

BUSY_LOAD = 0.25
"""Foreign load (CPU cores busy with other processes) above which a row is flagged."""


def _median(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _max(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return max(vals) if vals else None


def summarise(measurements: list[dict[str, Any]], impls: list[dict[str, Any]],
              models: list[str], batches: list[int]) -> list[dict[str, Any]]:
    """One result per (model, batch, impl), in plan order, from the measurements."""
    results = []
    for model in models:
        for batch in batches:
            for impl in impls:
                runs = sorted((m for m in measurements if m["model"] == model
                               and m["batch"] == batch and m["impl"] == impl["name"]),
                              key=lambda m: m["round"])
                if runs:
                    results.append(_result(model, batch, impl, runs))
    return results


def _result(model: str, batch: int, impl: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    rounds = []
    for m in runs:
        r = m.get("result") or {}
        rounds.append({
            "round": m["round"], "median_ms": r.get("median_ms"), "min_ms": r.get("min_ms"),
            "steps": r.get("steps"), "peak_rss_mb": r.get("peak_rss_mb"),
            "rss_after_setup_mb": r.get("rss_after_setup_mb"), "gpu_peak_mb": r.get("gpu_peak_mb"),
            "foreign_load": m.get("foreign_load"), "wall_s": m.get("wall_s"),
            "last_loss": r.get("last_loss"), "error": m.get("error"),
        })
    ok = [m["result"] for m in runs if m.get("result")]
    median_ms = _median(r["median_ms"] for r in rounds)
    first = ok[0] if ok else {}
    return {
        "model": model, "batch": batch, "impl": impl["name"], "kind": impl["kind"],
        "backend": impl.get("backend"), "device": first.get("device", impl.get("device")),
        "reference": impl.get("reference"),
        "median_ms": median_ms,
        "images_per_s": batch * 1000.0 / median_ms if median_ms else None,
        "peak_rss_mb": _max(r["peak_rss_mb"] for r in rounds),
        "rss_after_setup_mb": _max(r["rss_after_setup_mb"] for r in rounds),
        "gpu_peak_mb": _max(r["gpu_peak_mb"] for r in rounds),
        "max_foreign_load": _max(r["foreign_load"] for r in rounds),
        "errors": sum(1 for r in rounds if r["error"]),
        "loss_finite": all(r.get("loss_finite", False) for r in ok) if ok else None,
        "torch_imported": any(r.get("torch_imported") for r in ok),
        "torch_num_threads": first.get("torch_num_threads"),
        "parameters": first.get("parameters"),
        "versions": first.get("versions"),
        "numpy_blas_runtime": first.get("numpy_blas_runtime"),
        "allow_tf32": first.get("allow_tf32"),
        "child_env": first.get("env"),
        "rounds": rounds,
    }


def compare(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """nnx vs PyTorch per (model, batch, nnx impl) with a reference in this run."""
    index = {(r["model"], r["batch"], r["impl"]): r for r in results}
    out = []
    for r in results:
        if r["kind"] != "nnx" or not r.get("reference"):
            continue
        ref = index.get((r["model"], r["batch"], r["reference"]))
        if ref is None:
            continue
        ref_by_round = {x["round"]: x["median_ms"] for x in ref["rounds"]}
        ratios = []
        for x in r["rounds"]:
            t = ref_by_round.get(x["round"])
            ratios.append(x["median_ms"] / t if x["median_ms"] and t else None)
        valid = [q for q in ratios if q is not None]
        rss, ref_rss = r["peak_rss_mb"], ref["peak_rss_mb"]
        out.append({
            "model": r["model"], "batch": r["batch"], "impl": r["impl"], "reference": ref["impl"],
            "nnx_median_ms": r["median_ms"], "torch_median_ms": ref["median_ms"],
            "nnx_images_per_s": r["images_per_s"], "torch_images_per_s": ref["images_per_s"],
            "ratio_per_round": ratios,
            "ratio_median": statistics.median(valid) if valid else None,
            "ratio_min": min(valid) if valid else None, "ratio_max": max(valid) if valid else None,
            "nnx_peak_rss_mb": rss, "torch_peak_rss_mb": ref_rss,
            "rss_ratio": rss / ref_rss if rss and ref_rss else None,
            "max_foreign_load": _max([r["max_foreign_load"], ref["max_foreign_load"]]),
        })
    return out


def check_targets(comparisons: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The speed targets (:data:`TARGETS`), evaluated on this run where it measured them (never
    asserted)."""
    out = []
    for c in comparisons:
        if (c["impl"], c["reference"], c["batch"]) != (TARGET_IMPL, TARGET_REFERENCE, TARGET_BATCH):
            continue
        target = TARGETS.get(c["model"])
        if target is None:
            continue
        ratio = c["ratio_median"]
        rss = c["rss_ratio"]
        out.append({"model": c["model"], "batch": c["batch"], "ratio_median": ratio,
                    "ratio_target": target, "ratio_met": None if ratio is None else ratio <= target,
                    "rss_ratio": rss, "rss_met": None if rss is None else rss <= 1.0})
    return out


def scaling(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Images/s by batch for each (model, impl), and whether it never falls as batch grows."""
    out = []
    keys = list(dict.fromkeys((r["model"], r["impl"]) for r in results))
    for model, impl in keys:
        rows = sorted((r for r in results if (r["model"], r["impl"]) == (model, impl)),
                      key=lambda r: r["batch"])
        ips = [r["images_per_s"] for r in rows]
        if len(rows) < 2 or any(v is None for v in ips):
            continue
        out.append({"model": model, "impl": impl,
                    "images_per_s": {str(r["batch"]): r["images_per_s"] for r in rows},
                    "non_decreasing": all(b >= a for a, b in zip(ips, ips[1:]))})
    return out


def _fmt(v: float | None, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def table(doc: dict[str, Any]) -> str:
    """The readable table: one row per (model, batch, impl), PyTorch first in each group."""
    comps = {(c["model"], c["batch"], c["impl"]): c for c in doc["comparisons"]}
    head = (f"{'model':<8} {'batch':>5}  {'impl':<22} {'ms/step':>9} {'img/s':>8}  "
            f"{'nnx/torch  [min–max]':<22} {'peak RSS MB':>11} {'RSS/torch':>9}  note")
    lines = [head, "-" * len(head)]
    prev = None
    for r in sorted(doc["results"], key=lambda r: (doc["settings"]["models"].index(r["model"]),
                                                   r["batch"], r["kind"] != "torch")):
        group = (r["model"], r["batch"])
        if prev is not None and group != prev:
            lines.append("")
        prev = group
        c = comps.get((r["model"], r["batch"], r["impl"]))
        ratio = ""
        rss_ratio = ""
        if c and c["ratio_median"] is not None:
            ratio = f"{c['ratio_median']:.2f}  [{c['ratio_min']:.2f}–{c['ratio_max']:.2f}]"
            rss_ratio = _fmt(c["rss_ratio"], ".2f")
        notes = []
        if r["errors"]:
            notes.append(f"{r['errors']} failed")
        if r["loss_finite"] is False:
            notes.append("non-finite loss")
        if r["max_foreign_load"] is not None and r["max_foreign_load"] > BUSY_LOAD:
            notes.append(f"busy ({r['max_foreign_load']:.1f} cores)")
        lines.append(f"{r['model']:<8} {r['batch']:>5}  {r['impl']:<22} "
                     f"{_fmt(r['median_ms'], '9.2f')} {_fmt(r['images_per_s'], '8.0f')}  "
                     f"{ratio:<22} {_fmt(r['peak_rss_mb'], '11.0f')} {rss_ratio:>9}  "
                     f"{', '.join(notes)}")
    lines.extend(_footer(doc))
    return "\n".join(lines)


def _footer(doc: dict[str, Any]) -> list[str]:
    lines = [""]
    seed = doc.get("seed_conv")
    if seed and "speedup" in seed:
        lines.append(
            f"the course report's nested-loop Conv2d forward {seed['input_shape']} → {seed['output_shape']}: "
            f"{seed['seed_forward_ms']:.1f} ms; nnx/numpy {seed['nnx_forward_ms']:.3f} ms: "
            f"{seed['speedup']:.0f}× faster (max |diff| {seed['max_abs_diff']:.1e})")
    elif seed:
        lines.append(f"the course report's nested-loop Conv2d: {seed.get('error')}")
    for t in doc.get("targets", []):
        state = {True: "met", False: "NOT met", None: "—"}
        lines.append(f"target {t['model']} b{t['batch']}: nnx/numpy ÷ torch/cpu "
                     f"{_fmt(t['ratio_median'], '.2f')} ≤ {t['ratio_target']} {state[t['ratio_met']]}; "
                     f"RSS ratio {_fmt(t['rss_ratio'], '.2f')} ≤ 1 {state[t['rss_met']]}")
    for s in doc.get("scaling", []):
        if not s["non_decreasing"]:
            lines.append(f"throughput falls with batch: {s['model']} {s['impl']} {s['images_per_s']}")
    m = doc["machine"]
    lines.append(f"machine: {m.get('cpu_model')}, {m.get('cpus_usable')} usable CPUs; load average "
                 f"{m.get('load_average_start')} → {m.get('load_average_end')}; "
                 f"OPENBLAS_CORETYPE={m['env'].get('OPENBLAS_CORETYPE')} "
                 f"OPENBLAS_L2_SIZE={m['env'].get('OPENBLAS_L2_SIZE')}"
                 + (" (unset in the children)" if doc["settings"].get("unset_openblas_env") else ""))
    if doc.get("interrupted"):
        lines.append(f"INTERRUPTED ({doc['interrupted']}): only the measurements done before it are shown")
    for s in doc.get("skipped", []):
        lines.append(f"skipped {s['impl']}: {s['reason']}")
    busy = [r for r in doc["results"]
            if r["max_foreign_load"] is not None and r["max_foreign_load"] > BUSY_LOAD]
    if busy:
        lines.append(f"warning: other processes used > {BUSY_LOAD} cores during {len(busy)} of "
                     f"{len(doc['results'])} rows; those timings are not trustworthy")
    return lines
