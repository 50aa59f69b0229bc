"""Building an ``mpiexec`` command line that works here (venv, root, containers)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence


def find_mpiexec() -> str | None:
    """The ``mpiexec`` next to this Python (a venv with the ``mpi`` extra), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    if os.path.isfile(here) and os.access(here, os.X_OK):
        return here
    return shutil.which("mpiexec")


@functools.lru_cache(maxsize=8)
def _flavour(mpiexec: str) -> str:
    try:
        out = subprocess.run([mpiexec, "--version"], capture_output=True, text=True,
                             timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout + out.stderr).lower()
    if "open mpi" in text or "open-mpi" in text or "openrte" in text:
        return "openmpi"
    if "hydra" in text or "mpich" in text:
        return "mpich"
    return "unknown"


def mpiexec_command(nprocs: int, argv: Sequence[str], mpiexec: str | None = None) -> list[str]:
    """``[mpiexec, flags..., -n, N, *argv]`` for a local launch of ``nprocs`` processes.

    MPICH's Hydra gets ``-launcher fork`` (no ssh/slurm probing in containers);
    Open MPI gets ``--oversubscribe`` (more ranks than cores) and, as root,
    ``--allow-run-as-root``. Raises FileNotFoundError when no mpiexec is found.
    """
    exe = mpiexec or find_mpiexec()
    if exe is None:
        raise FileNotFoundError("no mpiexec found next to this Python or on PATH; "
                                "install one with pip install 'nnx-array[mpi]'")
    flavour = _flavour(exe)
    flags: list[str] = []
    if flavour == "mpich":
        flags = ["-launcher", "fork"]
    elif flavour == "openmpi":
        flags = ["--oversubscribe"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            flags.append("--allow-run-as-root")
    return [exe, *flags, "-n", str(int(nprocs)), *argv]
