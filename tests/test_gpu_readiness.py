"""GPU readiness without a GPU: the CuPy probe, a GPU per MPI rank, BLAS thread control.

A fake ``cupy`` module (inserted in ``sys.modules`` with a fake ``array_api_compat.cupy``)
describes GPUs by index and PCI bus id and can fail the way a CuPy without the CUDA
runtime libraries fails: it imports, sees the GPU, and its first kernel cannot compile.
"""

from __future__ import annotations

import importlib.machinery
import sys
import threading
import types
from types import SimpleNamespace

import numpy as np
import pytest

import nnx
import nnx.distributed as dist
from nnx.backends import BackendUnavailableError, cpu_threads, cupy_backend
from nnx.backends import mpi_transport as mt
from nnx.distributed import _world

NVRTC_ERROR = ("CuPy failed to load libnvrtc.so.13: OSError: libnvrtc.so.13: cannot open shared "
               "object file: No such file or directory")


def make_fake_cupy(bus_ids=("0000:3B:00.0",), kernel_error=None, wrong=False, count_error=None,
                   cuda=13000):
    """A ``cupy`` module with ``len(bus_ids)`` GPUs; ``calls`` counts kernel launches."""
    cupy = types.ModuleType("cupy")
    cupy.__spec__ = importlib.machinery.ModuleSpec("cupy", None)
    cupy.__version__ = "14.0.0+fake"
    state = SimpleNamespace(current=0, calls=0)

    class Device:
        def __init__(self, device=None):
            self.id = state.current if device is None else int(device)
            self._stack = []

        def __enter__(self):
            self._stack.append(state.current)
            state.current = self.id
            return self

        def __exit__(self, *exc):
            state.current = self._stack.pop()

        def use(self):
            state.current = self.id

        @property
        def pci_bus_id(self):
            return bus_ids[self.id]

        def __repr__(self):
            return f"<CUDA Device {self.id}>"

    def get_count():
        if count_error is not None:
            raise count_error
        return len(bus_ids)

    def kernel(in_params, out_params, operation, name):
        def run(x):
            state.calls += 1
            if kernel_error is not None:
                raise kernel_error
            return 2 * x + (2 if wrong else 1)
        return run

    cupy.cuda = SimpleNamespace(
        Device=Device,
        runtime=SimpleNamespace(getDeviceCount=get_count, getDevice=lambda: state.current,
                                runtimeGetVersion=lambda: cuda))
    cupy.asarray = np.asarray
    cupy.asnumpy = np.asarray
    cupy.reshape = np.reshape
    cupy.ElementwiseKernel = kernel
    cupy.state = state
    return cupy


@pytest.fixture
def fake_gpu(monkeypatch):
    """Install a fake CuPy: ``fake_gpu(**make_fake_cupy kwargs)`` returns the module."""
    cupy_backend.clear_probe_cache()

    def install(**kwargs):
        cupy = make_fake_cupy(**kwargs)
        monkeypatch.setitem(sys.modules, "cupy", cupy)
        monkeypatch.setitem(sys.modules, "array_api_compat.cupy", types.ModuleType("fake_xp"))
        cupy_backend.clear_probe_cache()
        return cupy

    yield install
    cupy_backend.clear_probe_cache()


@pytest.fixture
def keep_default_backend():
    before = nnx.get_backend()
    yield
    nnx.set_backend(before.name, before.device)


# -- item 3: a CuPy that imports and sees the GPU but cannot compile -------------------------

def test_probe_runs_a_kernel_and_reports_why_it_failed(fake_gpu):
    fake_gpu(kernel_error=RuntimeError(NVRTC_ERROR))
    reason = nnx.backends.probe("cupy")
    assert reason is not None
    assert "compiling a kernel with NVRTC" in reason and "libnvrtc.so.13" in reason
    assert "cupy-cuda13x[ctk]" in reason and "\n" not in reason
    assert "cupy" not in nnx.available_backends()


def test_auto_chooses_numpy_and_says_why(fake_gpu, keep_default_backend, caplog):
    fake_gpu(kernel_error=RuntimeError(NVRTC_ERROR))
    with caplog.at_level("INFO", logger="nnx"):
        backend = nnx.set_backend("auto")
    assert backend.name == "numpy"
    assert "auto: chose numpy" in backend.note and "libnvrtc.so.13" in backend.note
    assert "libnvrtc.so.13" in caplog.text


def test_set_backend_cupy_raises_the_reason(fake_gpu, keep_default_backend):
    fake_gpu(kernel_error=RuntimeError(NVRTC_ERROR))
    with pytest.raises(BackendUnavailableError, match=r"Backend 'cupy' is unavailable: .*"
                       r"compiling a kernel with NVRTC.*libnvrtc\.so\.13") as info:
        nnx.set_backend("cupy")
    assert "\n" not in str(info.value)
    with pytest.raises(BackendUnavailableError, match="libnvrtc"):
        nnx.use_backend("cupy").__enter__()


def test_probe_is_cached_per_device_and_keeps_the_precise_reason(fake_gpu):
    cupy = fake_gpu(bus_ids=("0000:01:00.0", "0000:02:00.0"),
                    kernel_error=RuntimeError(NVRTC_ERROR))
    first = cupy_backend.probe()
    assert cupy.state.calls == 1
    assert cupy_backend.probe() == first and cupy_backend.probe(0) == first
    assert cupy.state.calls == 1  # not retried in this process
    second = cupy_backend.probe(1)
    assert cupy.state.calls == 2 and "GPU 1" in second and "GPU 0" in first
    cupy_backend.clear_probe_cache()
    cupy_backend.probe()
    assert cupy.state.calls == 3


def test_probe_other_failures_are_precise(fake_gpu, monkeypatch):
    fake_gpu(wrong=True)
    assert "returned [2.0, 4.0, 6.0, 8.0] instead of" in cupy_backend.probe()
    fake_gpu(count_error=RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected"))
    assert cupy_backend.probe().startswith("no CUDA device answers")
    assert cupy_backend.device_count() == 0
    fake_gpu()
    monkeypatch.setitem(sys.modules, "array_api_compat.cupy", None)  # its import now fails
    reason = cupy_backend.probe()
    assert reason.startswith("importing array_api_compat.cupy failed: ")
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert cupy_backend.probe().startswith("importing cupy failed: ")
    fake_gpu()
    assert "does not exist; this machine has 1" in cupy_backend.probe(3)


def test_a_working_gpu_passes_and_is_identified_by_bus_id(fake_gpu, keep_default_backend):
    cupy = fake_gpu(bus_ids=("0000:01:00.0", "0000:41:00.0"))
    assert cupy_backend.probe() is None and cupy.state.calls == 1
    backend = nnx.backends.create_backend("cupy", "cuda:1")
    assert backend.device.id == 1 and backend.device_uid() == "0000:41:00.0"
    assert nnx.backends.create_backend("auto").name == "cupy"
    nnx.set_backend("cupy", 1)
    assert cupy.state.current == 1  # set_backend makes the GPU current
    with backend.activate():
        assert cupy.state.current == 1
    with nnx.backends.create_backend("cupy", 0).activate():
        assert cupy.state.current == 0
    assert cupy.state.current == 1


# -- item 2: one GPU per rank, GPUs told apart by PCI bus id ---------------------------------

def test_device_for_rank_spreads_local_ranks_over_the_gpus(fake_gpu):
    fake_gpu(bus_ids=("0000:01:00.0", "0000:02:00.0", "0000:03:00.0", "0000:04:00.0"))
    assert [dist.device_for_rank("cupy", local_rank=r, environ={}) for r in range(6)] == \
        [0, 1, 2, 3, 0, 1]
    assert dist.device_for_rank("auto", local_rank=2, environ={}) == 2
    assert dist.device_for_rank("cupy", local_rank=2, environ={"NNX_DEVICE": "3"}) == 3
    assert dist.device_for_rank("torch", local_rank=1,
                                environ={"NNX_DEVICE": "cuda:0"}) == "cuda:0"
    for host in ("numpy", "array_api_strict"):
        assert dist.device_for_rank(host, local_rank=1, environ={}) is None
    with pytest.raises(ValueError, match="unknown backend 'jaxx'"):
        dist.device_for_rank("jaxx", local_rank=0, environ={})


def test_device_for_rank_without_a_gpu_leaves_the_default(fake_gpu, monkeypatch):
    fake_gpu(count_error=RuntimeError("no driver"))
    assert dist.device_for_rank("cupy", local_rank=1, environ={}) is None
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert dist.device_for_rank("auto", local_rank=1, environ={}) is None


def test_device_for_rank_defaults_to_the_worlds_local_rank(fake_gpu, monkeypatch):
    fake_gpu(bus_ids=("a", "b"))
    monkeypatch.setattr(_world, "_WORLD", _world.World(initialized=True, rank=3, size=4,
                                                       local_rank=1, local_size=2))
    monkeypatch.delenv("NNX_DEVICE", raising=False)
    assert dist.device_for_rank("cupy") == 1


def _rank_info(cupy_module, monkeypatch, host="node1", index=0):
    """What a rank running ``cupy_module`` reports for its backend on GPU ``index``."""
    monkeypatch.setitem(sys.modules, "cupy", cupy_module)
    cupy_backend.clear_probe_cache()
    backend = nnx.backends.create_backend("cupy", index)
    mpi = SimpleNamespace(Get_processor_name=lambda: host)
    return mt.local_info(mpi, backend, {})


def test_ranks_with_their_own_cuda_visible_devices_get_nccl(fake_gpu, monkeypatch):
    """Each rank sees one GPU (CUDA_VISIBLE_DEVICES=r): all call it GPU 0, the bus ids differ."""
    fake_gpu()
    monkeypatch.setattr(mt, "nccl_module", lambda: object())
    ranks = [make_fake_cupy(bus_ids=(bus,)) for bus in ("0000:3B:00.0", "0000:86:00.0")]
    devices = []
    for cupy in ranks:
        monkeypatch.setitem(sys.modules, "cupy", cupy)
        devices.append(dist.device_for_rank("cupy", local_rank=len(devices), environ={}))
    assert devices == [0, 0]
    infos = [_rank_info(cupy, monkeypatch, index=d) for cupy, d in zip(ranks, devices)]
    assert [i.device for i in infos] == ["0000:3B:00.0", "0000:86:00.0"]
    assert mt.choose_path("cupy", infos)[0] == "nccl"


def test_two_ranks_on_one_gpu_never_get_nccl(fake_gpu, monkeypatch):
    cupy = fake_gpu(bus_ids=("0000:3B:00.0", "0000:86:00.0"))
    monkeypatch.setattr(mt, "nccl_module", lambda: object())
    same = [_rank_info(cupy, monkeypatch, index=0) for _ in range(2)]
    path, reason = mt.choose_path("cupy", same)
    assert path == "host" and "share one GPU (0000:3B:00.0 on node1" in reason
    with pytest.raises(ValueError, match="share one GPU"):
        mt.choose_path("cupy", same, "nccl")
    aware = [mt.RankInfo(i.host, i.device, i.nccl, True) for i in same]
    assert mt.choose_path("cupy", aware)[0] == "mpi-direct"
    spread = [_rank_info(cupy, monkeypatch, index=dist.device_for_rank("cupy", local_rank=r,
                                                                       environ={}))
              for r in range(2)]
    assert [i.device for i in spread] == ["0000:3B:00.0", "0000:86:00.0"]
    assert mt.choose_path("cupy", spread)[0] == "nccl"
    # the same bus id on two machines is two GPUs
    other_host = [_rank_info(cupy, monkeypatch, host=h, index=0) for h in ("a", "b")]
    assert mt.choose_path("cupy", other_host)[0] == "nccl"


def test_host_backends_report_their_device_name():
    mpi = SimpleNamespace(Get_processor_name=lambda: "n")
    info = mt.local_info(mpi, nnx.backends.create_backend("numpy"), {})
    assert info == mt.RankInfo("n", "cpu", False, False)


# -- item 5: BLAS threads through threadpoolctl --------------------------------------------

@pytest.fixture
def fresh_controllers():
    cpu_threads.blas_controllers.cache_clear()
    yield
    cpu_threads.blas_controllers.cache_clear()


def test_without_threadpoolctl_nothing_is_controlled(fresh_controllers, monkeypatch):
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)  # import threadpoolctl fails
    assert not cpu_threads.blas_threads_controllable()
    assert cpu_threads.get_blas_threads() is None
    assert cpu_threads.openblas_library() is None
    with cpu_threads.blas_threads(1):
        pass
    from nnx.parallel import auto_threads

    conv = nnx.Sequential(nnx.Conv2d(1, 2, 3), nnx.ReLU(), nnx.Flatten())
    assert auto_threads(conv) == 1  # no control: no batch splitting


def test_threadpoolctl_controls_numpys_blas(fresh_controllers):
    pytest.importorskip("threadpoolctl")
    if not cpu_threads.blas_threads_controllable():
        pytest.skip("threadpoolctl finds no BLAS library it can control here")
    before = cpu_threads.get_blas_threads()
    with cpu_threads.blas_threads(1):
        assert cpu_threads.get_blas_threads() == 1
    assert cpu_threads.get_blas_threads() == before


def test_a_worker_thread_can_limit_blas_after_the_main_thread_set_it(fresh_controllers):
    """threadpoolctl >= 3.7 lets one thread at a time change OpenBLAS's shared pool: nnx
    hands control back after each change, so the batch-splitting threads still limit it."""
    pytest.importorskip("threadpoolctl")
    if not cpu_threads.blas_threads_controllable():
        pytest.skip("threadpoolctl finds no BLAS library it can control here")
    before = cpu_threads.get_blas_threads()
    wanted = 2 if before != 2 else 3
    try:
        assert cpu_threads.set_blas_threads(wanted)
        assert cpu_threads.get_blas_threads() == wanted
        seen = []

        def work():
            with cpu_threads.blas_threads(1):
                seen.append(cpu_threads.get_blas_threads())
            seen.append(cpu_threads.get_blas_threads())

        worker = threading.Thread(target=work)
        worker.start()
        worker.join(30)
        assert seen == [1, wanted]
    finally:
        cpu_threads.set_blas_threads(before)


def test_openblas_library_for_the_benchmark_report(fresh_controllers):
    pytest.importorskip("threadpoolctl")
    found = cpu_threads.openblas_library()
    kinds = {getattr(lib, "internal_api", None) for lib in cpu_threads.blas_controllers()}
    if "openblas" not in kinds:
        assert found is None
        return
    lib, prefix, suffix = found
    assert getattr(lib, f"{prefix}openblas_get_num_threads{suffix}") is not None
