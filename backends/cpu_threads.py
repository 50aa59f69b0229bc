"""CPU thread control for the host backends' threaded data-parallel fast path.

NumPy's element-wise work runs on one core, so nnx can split a batch across
threads (NumPy releases the GIL inside its loops). While it does, each BLAS
call should use one thread, or the threads and OpenBLAS's own pool fight over
the cores; this module finds the OpenBLAS that NumPy loaded and sets its
thread count (what threadpoolctl does, without the dependency).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Callable, Iterator
from functools import lru_cache


def usable_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@lru_cache(maxsize=1)
def openblas_library() -> tuple[ctypes.CDLL, str, str] | None:
    """(library, symbol prefix, symbol suffix) of the OpenBLAS NumPy loaded, or None.

    NumPy's wheels ship ``scipy_openblas`` with symbols such as
    ``scipy_openblas_set_num_threads64_``; other builds use the plain names.
    """
    import numpy  # noqa: F401  (loads the BLAS library)

    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return None
    paths = sorted({line.split()[-1] for line in maps.splitlines()
                    if "openblas" in line.lower() and line.split()[-1].startswith("/")})
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_", ""):
            for suffix in ("64_", ""):
                if getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None) is not None:
                    return lib, prefix, suffix
    return None


@lru_cache(maxsize=1)
def _openblas() -> tuple[Callable[[], int], Callable[[int], None]] | None:
    """(get_num_threads, set_num_threads) of NumPy's OpenBLAS, or None if not found."""
    found = openblas_library()
    if found is None:
        return None
    lib, prefix, suffix = found
    get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}")
    put = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
    if put is None:
        return None
    get.restype = ctypes.c_int
    put.argtypes = [ctypes.c_int]
    return (lambda: int(get())), (lambda n: put(int(n)))


def blas_threads_controllable() -> bool:
    """True when NumPy's BLAS thread count can be set from here (OpenBLAS found)."""
    return _openblas() is not None


#: Environment variables that set a BLAS thread count by hand (they win over nnx's choice).
THREAD_ENV = ("NNX_BLAS_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def threads_set_by_hand(environ: dict[str, str] | None = None) -> str | None:
    """The variable that sets the BLAS thread count by hand, if any."""
    env = os.environ if environ is None else environ
    return next((k for k in THREAD_ENV if env.get(k, "").strip()), None)


def get_blas_threads() -> int | None:
    """NumPy's BLAS thread count, or None when it cannot be read."""
    ctl = _openblas()
    return None if ctl is None else ctl[0]()


def set_blas_threads(n: int) -> bool:
    """Set NumPy's BLAS threads (and PyTorch's intra-op threads when torch is loaded) to
    ``n`` for the rest of the process; False when no thread control was found."""
    import sys

    done = False
    ctl = _openblas()
    if ctl is not None:
        ctl[1](max(1, int(n)))
        done = True
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(max(1, int(n)))
        done = True
    return done


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Run the block with NumPy's BLAS limited to ``n`` threads (no-op if unknown)."""
    ctl = _openblas()
    if ctl is None:
        yield
        return
    get, put = ctl
    before = get()
    if before == n:
        yield
        return
    put(n)
    try:
        yield
    finally:
        put(before)
