"""What the benchmark ran on: CPU, memory, library versions, BLAS, environment.

Every probe here is best effort: a missing file or library gives ``None`` (or
an ``"error"`` entry), never an exception, so the benchmark itself still runs.
"""

from __future__ import annotations

import ctypes
import datetime
import importlib.metadata
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import OPENBLAS_ENV_VARS

ROOT = Path(__file__).resolve().parents[1]

ENV_VARS = (*OPENBLAS_ENV_VARS, "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
            "NNX_BACKEND", "CUDA_VISIBLE_DEVICES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
PACKAGES = ("numpy", "torch", "array-api-compat", "array-api-strict", "nnx-array", "threadpoolctl",
            "cupy", "cupy-cuda12x", "cupy-cuda13x")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _proc_status_mb(field: str) -> float | None:
    """A ``kB`` field of /proc/self/status (VmHWM, VmRSS) in MiB, or None."""
    text = _read("/proc/self/status")
    if text is None:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return None


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (VmHWM, else ru_maxrss)."""
    hwm = _proc_status_mb("VmHWM")
    if hwm is not None:
        return hwm
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1024.0 * 1024.0) if sys.platform == "darwin" else maxrss / 1024.0


def current_rss_mb() -> float | None:
    """This process's current resident set size in MiB (VmRSS), or None."""
    return _proc_status_mb("VmRSS")


def cpu_model() -> str | None:
    text = _read("/proc/cpuinfo")
    if text:
        for line in text.splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def memory_total_gib() -> float | None:
    text = _read("/proc/meminfo")
    if text:
        for line in text.splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024.0 / 1024.0, 2)
    return None


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return {k: v for k, v in out.items() if v is not None or k in ("numpy", "torch")}


def env_vars() -> dict[str, str | None]:
    """The environment variables that change BLAS/threads/backends (None: unset)."""
    return {name: os.environ.get(name) for name in ENV_VARS}


def _openblas_ctypes() -> dict[str, Any] | None:
    """Ask the OpenBLAS that NumPy loaded which kernel (core) and threads it uses."""
    from nnx.backends.cpu_threads import openblas_library

    found = openblas_library()
    if found is None:
        return None
    lib, prefix, suffix = found
    info: dict[str, Any] = {"library": lib._name}
    for key, name, restype in (("corename", "openblas_get_corename", ctypes.c_char_p),
                               ("num_threads", "openblas_get_num_threads", ctypes.c_int),
                               ("config", "openblas_get_config", ctypes.c_char_p)):
        fn = getattr(lib, f"{prefix}{name}{suffix}", None)
        if fn is not None:
            fn.restype = restype
            value = fn()
            info[key] = value.decode() if isinstance(value, bytes) else int(value)
    return info


def numpy_blas() -> dict[str, Any]:
    """NumPy's BLAS: threadpoolctl's report when installed, else build config +
    the loaded OpenBLAS's own answer (the kernel it picked, e.g. under OPENBLAS_CORETYPE)."""
    import numpy as np

    out: dict[str, Any] = {}
    try:
        from threadpoolctl import threadpool_info

        out["threadpoolctl"] = [
            {k: v for k, v in pool.items() if k in ("internal_api", "version", "num_threads",
                                                   "architecture", "threading_layer", "filepath")}
            for pool in threadpool_info()
        ]
    except ImportError:
        out["threadpoolctl"] = None
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        out["build"] = {k: blas.get(k) for k in ("name", "version", "openblas configuration")
                        if blas.get(k) is not None}
    except Exception as exc:  # older NumPy has no mode="dicts"
        out["build"] = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        out["runtime"] = _openblas_ctypes()
    except Exception as exc:  # a probe must never stop the benchmark
        out["runtime"] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def git_state() -> dict[str, Any]:
    """The checkout's commit and whether it has uncommitted changes."""
    def git(*args: str) -> str | None:
        try:
            res = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                 timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return res.stdout.strip() if res.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def torch_info() -> dict[str, Any] | None:
    """PyTorch's version, CPU threads and CUDA devices, or None when not installed."""
    try:
        import torch
    except ImportError:
        return None
    info: dict[str, Any] = {
        "version": torch.__version__,
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "cuda_available": bool(torch.cuda.is_available()),
    }
    if info["cuda_available"]:
        info["cuda"] = torch.version.cuda
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def describe_machine() -> dict[str, Any]:
    """The machine description stored at the top of every results file."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "memory_gib": memory_total_gib(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "env": env_vars(),
        "numpy_blas": numpy_blas(),
        "torch": torch_info(),
        "git": git_state(),
        "load_average_start": load_average(),
    }
