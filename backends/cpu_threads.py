"""CPU thread control for the host backends' threaded data-parallel fast path.

NumPy's element-wise work runs on one core, so nnx can split a batch across
threads (NumPy releases the GIL inside its loops). While it does, each BLAS
call should use one thread, or the threads and the BLAS library's own pool fight
over the cores. This module sets NumPy's BLAS thread count through
`threadpoolctl <https://github.com/joblib/threadpoolctl>`_, which knows OpenBLAS
(NumPy's wheels), MKL, BLIS and Apple Accelerate on Linux, macOS and Windows.
Without threadpoolctl nothing is controlled: :func:`blas_threads_controllable`
is False, :func:`blas_threads` does nothing, and nnx does not split batches.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

#: Environment variables that set a BLAS thread count by hand (they win over nnx's choice).
THREAD_ENV = ("NNX_BLAS_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
              "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")

_held = threading.local()  # how deep this thread is in blas_threads()


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@lru_cache(maxsize=1)
def blas_controllers() -> tuple[Any, ...]:
    """threadpoolctl's controllers of the BLAS libraries loaded with NumPy (empty when
    threadpoolctl is missing or finds none). Looked up once per process."""
    import numpy  # noqa: F401  (loads NumPy's BLAS before threadpoolctl looks)

    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return ()
    try:
        libs = ThreadpoolController().lib_controllers
    except Exception:  # noqa: BLE001 - an odd library must not stop nnx
        return ()
    return tuple(lib for lib in libs if getattr(lib, "user_api", None) == "blas")


def _release(libs: Sequence[Any]) -> None:
    """Let other threads set the thread count again (threadpoolctl >= 3.7 lets only one
    thread at a time change OpenBLAS's process-wide pool)."""
    for cls in {type(lib) for lib in libs}:
        clear = getattr(cls, "clear_controlling_thread", None)
        if clear is not None:
            clear()


def blas_threads_controllable() -> bool:
    """True when NumPy's BLAS thread count can be set from here (threadpoolctl found it)."""
    return bool(blas_controllers())


def threads_set_by_hand(environ: dict[str, str] | None = None) -> str | None:
    """The variable that sets the BLAS thread count by hand, if any."""
    env = os.environ if environ is None else environ
    return next((k for k in THREAD_ENV if env.get(k, "").strip()), None)


def get_blas_threads() -> int | None:
    """NumPy's BLAS thread count, or None when it cannot be read."""
    libs = blas_controllers()
    if not libs:
        return None
    n = libs[0].get_num_threads()
    return None if n is None else int(n)


def _set_all(libs: Sequence[Any], counts: Sequence[int]) -> None:
    for lib, n in zip(libs, counts):
        if n is not None:
            lib.set_num_threads(int(n))


def set_blas_threads(n: int) -> bool:
    """Set NumPy's BLAS threads (and PyTorch's intra-op threads when torch is loaded) to
    ``n`` for the rest of the process; False when no thread control was found."""
    import sys

    n = max(1, int(n))
    done = False
    libs = blas_controllers()
    if libs:
        _set_all(libs, [n] * len(libs))
        if not getattr(_held, "depth", 0):
            _release(libs)
        done = True
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
        done = True
    return done


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Run the block with NumPy's BLAS limited to ``n`` threads (no-op if unknown)."""
    libs = blas_controllers()
    before = [lib.get_num_threads() for lib in libs]
    if all(b == n for b in before):  # also: nothing to control
        yield
        return
    _held.depth = getattr(_held, "depth", 0) + 1
    _set_all(libs, [n] * len(libs))
    try:
        yield
    finally:
        _set_all(libs, before)
        _held.depth -= 1
        if not _held.depth:
            _release(libs)


def _openblas() -> tuple[Any, Any] | None:
    """(get_num_threads, set_num_threads) of NumPy's first BLAS library, or None."""
    libs = blas_controllers()
    if not libs:
        return None

    def put(n: int) -> None:
        libs[0].set_num_threads(int(n))
        if not getattr(_held, "depth", 0):
            _release(libs[:1])

    return (lambda: int(libs[0].get_num_threads())), put


def openblas_library() -> tuple[ctypes.CDLL, str, str] | None:
    """(library, symbol prefix, symbol suffix) of the OpenBLAS NumPy loaded, or None
    (another BLAS, or no threadpoolctl). NumPy's wheels ship ``scipy_openblas`` with
    symbols such as ``scipy_openblas_get_num_threads64_``; other builds use plain names."""
    for lib in blas_controllers():
        if getattr(lib, "internal_api", None) != "openblas":
            continue
        dynlib = getattr(lib, "dynlib", None)
        for prefix in ("scipy_", ""):
            for suffix in ("64_", "_64", ""):
                if dynlib is not None and hasattr(dynlib, f"{prefix}openblas_get_num_threads{suffix}"):
                    return dynlib, prefix, suffix
    return None
