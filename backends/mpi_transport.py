"""Buffers and collective paths behind ``nnx.distributed`` (host NumPy, CUDA-aware MPI, NCCL).

``nnx.distributed`` decides *what* to exchange (every parameter's gradient, the
parameters, a few metrics); this module decides *how*: it groups arrays by
library, device and dtype, packs each group into contiguous buckets of at most
``bucket_bytes``, runs one collective per bucket and unpacks the result into new
arrays of the original library, device, dtype and shapes.

Three paths, chosen by :func:`choose_path` (the same answer on every rank):

``"host"``
    Pack into a NumPy buffer in host memory and call MPI on it. Works for every
    backend; for CuPy it costs one device→host and one host→device copy per bucket.
``"mpi-direct"``
    Pack on the arrays' own device and hand that buffer to MPI (for CuPy this
    needs a CUDA-aware MPI library; for NumPy it is the host path without the
    extra copy into a preallocated buffer).
``"nccl"``
    CuPy only: ``cupy.cuda.nccl`` on the device buffer, the fast path when every
    rank drives its own GPU.

Nothing here imports mpi4py: the caller passes its ``MPI`` module and communicator.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from .._env import env_flag
from .base import Backend, dtype_name
from .registry import array_library, to_numpy

logger = logging.getLogger("nnx")

DEFAULT_BUCKET_BYTES = 32 * 2**20
PATHS = ("host", "mpi-direct", "nccl")
PATH_ENV = "NNX_DIST_PATH"
CUDA_AWARE_ENV = "NNX_MPI_CUDA_AWARE"


# -- grouping and bucketing ----------------------------------------------------

def group_arrays(arrays: Sequence[Any]) -> list[list[int]]:
    """Indices of ``arrays`` grouped by (library, device, dtype), groups in order of first use."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    for i, a in enumerate(arrays):
        key = (array_library(a), str(array_api_compat.device(a)), dtype_name(a.dtype))
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def plan_buckets(nbytes: Sequence[int], bucket_bytes: int) -> list[list[int]]:
    """Split consecutive items of the given byte sizes into buckets of at most ``bucket_bytes``.

    Order is kept; an item larger than ``bucket_bytes`` gets a bucket of its own.
    """
    if bucket_bytes < 1:
        raise ValueError(f"bucket_bytes must be >= 1, got {bucket_bytes}")
    buckets: list[list[int]] = []
    used = 0
    for i, n in enumerate(nbytes):
        if buckets and used + n <= bucket_bytes:
            buckets[-1].append(i)
            used += n
        else:
            buckets.append([i])
            used = n
    return buckets


def nbytes_of(a: Any) -> int:
    """Size in bytes of array ``a`` (any backend)."""
    return math.prod(int(s) for s in a.shape) * np.dtype(dtype_name(a.dtype)).itemsize


def _sizes(arrays: Sequence[Any]) -> list[int]:
    return [math.prod(int(s) for s in a.shape) for a in arrays]


def _flat_on_device(arrays: Sequence[Any]) -> Any:
    """One contiguous 1-D array on the arrays' own library and device."""
    xp = array_api_compat.array_namespace(*arrays)
    return xp.concat([xp.reshape(a, (-1,)) for a in arrays])


def _split(flat: Any, xp: Any, like: Sequence[Any]) -> list[Any]:
    """Views of 1-D ``flat`` shaped like each of ``like`` (in order)."""
    out, offset = [], 0
    for a, n in zip(like, _sizes(like)):
        out.append(xp.reshape(flat[offset:offset + n], tuple(int(s) for s in a.shape)))
        offset += n
    return out


# -- transports ----------------------------------------------------------------

class Transport:
    """One way of running collectives on buckets of one backend's arrays."""

    path = "?"

    def __init__(self, comm: Any, mpi: Any, backend: Backend) -> None:
        self.comm = comm
        self.mpi = mpi
        self.backend = backend
        self.size = comm.Get_size()

    def pack(self, arrays: Sequence[Any]) -> Any:
        """A contiguous 1-D buffer holding ``arrays`` one after another."""
        flat = _flat_on_device(arrays)
        self.backend.synchronize()  # the buffer must be complete before MPI reads it
        return flat

    def unpack(self, flat: Any, like: Sequence[Any]) -> list[Any]:
        """New arrays of the backend, shaped like ``like``, holding the buffer's values."""
        return _split(flat, self.backend.xp, like)

    def allreduce_mean_(self, flat: Any) -> Any:
        """Average ``flat`` element-wise over all ranks, in place; returns the buffer."""
        self.comm.Allreduce(self.mpi.IN_PLACE, flat, op=self.mpi.SUM)
        flat /= float(self.size)
        return flat

    def bcast_(self, flat: Any, root: int) -> Any:
        """Overwrite ``flat`` with rank ``root``'s buffer, in place; returns the buffer."""
        self.comm.Bcast(flat, root=root)
        return flat


class HostTransport(Transport):
    """NumPy buffers in host memory; any backend (one copy each way for device arrays)."""

    path = "host"

    def pack(self, arrays: Sequence[Any]) -> np.ndarray:
        dtype = np.dtype(dtype_name(arrays[0].dtype))
        if all(isinstance(a, np.ndarray) for a in arrays):
            buf = np.empty(sum(_sizes(arrays)), dtype=dtype)
            offset = 0
            for a, n in zip(arrays, _sizes(arrays)):
                buf[offset:offset + n] = a.reshape(-1)
                offset += n
            return buf
        # one device->host transfer per bucket, not one per array
        return np.require(to_numpy(_flat_on_device(arrays)), dtype=dtype,
                          requirements=["C", "W"])

    def unpack(self, flat: np.ndarray, like: Sequence[Any]) -> list[Any]:
        if self.backend.name == "numpy":
            return _split(flat, self.backend.xp, like)
        return _split(self.backend.from_numpy(flat), self.backend.xp, like)


class DirectTransport(Transport):
    """The arrays' own buffers handed to MPI (CUDA-aware MPI for CuPy; plain for NumPy)."""

    path = "mpi-direct"


class NcclTransport(Transport):
    """``cupy.cuda.nccl`` on device buffers, one communicator per device, set up once."""

    path = "nccl"

    def __init__(self, comm: Any, mpi: Any, backend: Backend, nccl: Any, cupy: Any) -> None:
        super().__init__(comm, mpi, backend)
        self.nccl = nccl
        self.cupy = cupy
        uid = nccl.get_unique_id() if comm.Get_rank() == 0 else None
        uid = comm.bcast(uid, root=0)
        with backend.device:
            self.nccl_comm = nccl.NcclCommunicator(self.size, uid, comm.Get_rank())
        self.codes = {
            "float16": nccl.NCCL_FLOAT16, "float32": nccl.NCCL_FLOAT32,
            "float64": nccl.NCCL_FLOAT64, "int32": nccl.NCCL_INT32, "int64": nccl.NCCL_INT64,
        }

    def pack(self, arrays: Sequence[Any]) -> Any:
        return _flat_on_device(arrays)  # NCCL runs on the same stream: no host sync needed

    def _code(self, flat: Any) -> int:
        name = dtype_name(flat.dtype)
        if name not in self.codes:
            raise TypeError(f"nnx.distributed: NCCL path cannot reduce {name} arrays")
        return self.codes[name]

    def allreduce_mean_(self, flat: Any) -> Any:
        stream = self.cupy.cuda.get_current_stream()
        ptr = flat.data.ptr
        self.nccl_comm.allReduce(ptr, ptr, flat.size, self._code(flat), self.nccl.NCCL_SUM,
                                 stream.ptr)
        flat /= float(self.size)
        return flat

    def bcast_(self, flat: Any, root: int) -> Any:
        stream = self.cupy.cuda.get_current_stream()
        self.nccl_comm.bcast(flat.data.ptr, flat.size, self._code(flat), root, stream.ptr)
        return flat


def reduce_mean(transport: Transport, arrays: Sequence[Any], bucket_bytes: int) -> list[Any]:
    """Element-wise mean over ranks of each array (all of one backend and dtype).

    One collective per bucket; returns new arrays in the same order.
    """
    return _per_bucket(arrays, bucket_bytes, lambda flat: transport.allreduce_mean_(flat),
                       transport)


def broadcast(transport: Transport, arrays: Sequence[Any], root: int,
              bucket_bytes: int) -> list[Any]:
    """Rank ``root``'s values of each array, as new arrays, one collective per bucket."""
    return _per_bucket(arrays, bucket_bytes, lambda flat: transport.bcast_(flat, root), transport)


def _per_bucket(arrays: Sequence[Any], bucket_bytes: int, collective: Any,
                transport: Transport) -> list[Any]:
    out: list[Any] = []
    for bucket in plan_buckets([nbytes_of(a) for a in arrays], bucket_bytes):
        items = [arrays[i] for i in bucket]
        flat = collective(transport.pack(items))
        out.extend(transport.unpack(flat, items))
    return out


# -- scalars -------------------------------------------------------------------

def allreduce_floats(comm: Any, mpi: Any, values: Sequence[float]) -> list[float]:
    """Element-wise sum over ranks of a few Python floats (one float64 Allreduce)."""
    buf = np.asarray(values, dtype=np.float64).copy()
    comm.Allreduce(mpi.IN_PLACE, buf, op=mpi.SUM)
    return [float(v) for v in buf]


# -- choosing a path -------------------------------------------------------------

@dataclass(frozen=True)
class RankInfo:
    """What one rank can do for one backend (gathered from every rank before choosing).

    ``device`` identifies the device on its host (``Backend.device_uid``: a GPU's PCI bus
    id), not its index: ranks launched with their own ``CUDA_VISIBLE_DEVICES`` all call
    their GPU 0, and only the bus id tells whether two of them share one.
    """

    host: str
    device: str
    nccl: bool
    cuda_aware: bool


def detect_cuda_aware(mpi: Any, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the MPI library accepts CUDA device buffers.

    ``NNX_MPI_CUDA_AWARE=1``/``0`` decides when set; otherwise mpi4py's
    ``MPI.Query_cuda_support()`` when this mpi4py/MPI pair offers it; otherwise False.
    """
    flag = env_flag(CUDA_AWARE_ENV, environ=environ)
    if flag is not None:
        return flag
    query = getattr(mpi, "Query_cuda_support", None)
    if query is None:
        return False
    try:
        return bool(query())
    except Exception:  # an MPI without the extension may raise NotImplementedError
        return False


def nccl_module() -> Any:
    """``cupy.cuda.nccl`` when CuPy was built with NCCL, else None."""
    try:
        from cupy.cuda import nccl
    except Exception:
        return None
    return nccl if getattr(nccl, "available", True) else None


def local_info(mpi: Any, backend: Backend, environ: Mapping[str, str] | None = None) -> RankInfo:
    """This rank's :class:`RankInfo` for ``backend``."""
    is_cupy = backend.name == "cupy"
    uid = getattr(backend, "device_uid", None)  # duck-typed backends: their device's id/name
    return RankInfo(
        host=mpi.Get_processor_name(),
        device=str(uid() if uid is not None else getattr(backend.device, "id", backend.device)),
        nccl=is_cupy and nccl_module() is not None,
        cuda_aware=is_cupy and detect_cuda_aware(mpi, environ),
    )


def choose_path(library: str, infos: Sequence[RankInfo], forced: str | None = None
                ) -> tuple[str, str]:
    """(path, reason) for arrays of ``library``, from every rank's :class:`RankInfo`.

    Automatic choice: NumPy, PyTorch and array-api-strict arrays use host buffers.
    CuPy uses NCCL when every rank has it and drives a GPU of its own, else
    CUDA-aware MPI when every rank's MPI is CUDA-aware, else host buffers.
    ``forced`` (a name from :data:`PATHS`) overrides; a path that cannot work
    raises ValueError saying why.
    """
    if forced is not None and forced not in PATHS:
        raise ValueError(f"unknown transport path {forced!r}; choose one of {', '.join(PATHS)}")
    places = [(i.host, i.device) for i in infos]
    shared = sorted({p for p in places if places.count(p) > 1})
    if not all(i.nccl for i in infos):
        no_nccl = "cupy.cuda.nccl is unavailable on some rank"
    elif shared:
        host, dev = shared[0]
        no_nccl = (f"two ranks share one GPU ({dev} on {host}; give each rank its own device: "
                   "nnx.distributed.device_for_rank, or NNX_DEVICE per rank)")
    else:
        no_nccl = ""
    if forced == "host":
        return "host", "forced: host buffers"
    if forced == "mpi-direct":
        if library not in ("numpy", "cupy"):
            raise ValueError(f"path 'mpi-direct' needs numpy or cupy arrays, not {library}")
        return "mpi-direct", f"forced: {library} buffers handed to MPI directly"
    if forced == "nccl":
        if library != "cupy" or no_nccl:
            raise ValueError("path 'nccl' is not possible here: "
                             + ("it needs cupy arrays" if library != "cupy" else no_nccl))
        return "nccl", "forced: NCCL through cupy.cuda.nccl"
    if library != "cupy":
        return "host", f"{library} arrays through host (NumPy) buffers"
    if not no_nccl:
        return "nccl", "NCCL through cupy.cuda.nccl (each rank on its own GPU)"
    if all(i.cuda_aware for i in infos):
        return "mpi-direct", f"CuPy buffers handed to CUDA-aware MPI (no NCCL: {no_nccl})"
    return "host", (f"CuPy arrays copied through host buffers: MPI is not known to be "
                    f"CUDA-aware (set {CUDA_AWARE_ENV}=1 if it is) and no NCCL ({no_nccl})")


def make_transport(path: str, comm: Any, mpi: Any, backend: Backend) -> Transport:
    """The :class:`Transport` implementing ``path`` for ``backend``'s arrays."""
    if path == "host":
        return HostTransport(comm, mpi, backend)
    if path == "mpi-direct":
        return DirectTransport(comm, mpi, backend)
    if path == "nccl":
        import cupy

        return NcclTransport(comm, mpi, backend, nccl_module(), cupy)
    raise ValueError(f"unknown transport path {path!r}; choose one of {', '.join(PATHS)}")
