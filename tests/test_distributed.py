"""nnx.distributed: data-parallel over MPI against single-process references.

The MPI tests launch ``mpiexec -n 2 python tests/mpi_scripts/<script>.py`` and
compare what the ranks saved with the same computation done here in one
process. They are skipped, with the reason, when mpi4py or mpiexec is missing.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import nnx
import nnx.distributed as dist
import nnx.testing as nt
from nnx.distributed import _collectives, _world

mt = importlib.import_module("nnx.backends.mpi_transport")

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent / "mpi_scripts"
NPROCS = 2


def _load_common():
    spec = importlib.util.spec_from_file_location("nnx_mpi_common", SCRIPTS / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


common = _load_common()


def _mpi_skip_reason() -> str | None:
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py is not installed (pip install 'nnx-array[mpi]')"
    if dist.find_mpiexec() is None:
        return "no mpiexec next to this Python or on PATH (pip install 'nnx-array[mpi]')"
    return None


needs_mpi = pytest.mark.skipif(_mpi_skip_reason() is not None,
                               reason=str(_mpi_skip_reason()))


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in _world.LAUNCH_VARS and k not in (_world.FORCE_ENV, mt.PATH_ENV)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = "1"
    return env


def run_mpi(script: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Launch ``script`` on NPROCS ranks; fails the test (not hangs) on timeout."""
    cmd = dist.mpiexec_command(NPROCS, [sys.executable, str(SCRIPTS / script), *args])
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=_clean_env(), cwd=str(ROOT))
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(cmd)} still running after {timeout} s: {exc.stderr}")


def run_ok(script: str, *args: str) -> None:
    out = run_mpi(script, *args)
    assert out.returncode == 0, f"{script} failed:\n{out.stdout}\n{out.stderr}"


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def assert_params_close(got: dict, want: dict, rtol: float, atol: float, what: str) -> None:
    assert got.keys() == want.keys(), what
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=atol, err_msg=f"{what}: {k}")


def max_diff(a: dict, b: dict) -> float:
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


@pytest.fixture
def single_world(monkeypatch):
    """A fresh, un-initialised world in this process with no MPI launch variables."""
    for k in (*_world.LAUNCH_VARS, _world.FORCE_ENV):
        monkeypatch.delenv(k, raising=False)
    _world._reset_for_tests()
    yield
    _world._reset_for_tests()


# -- float32 tolerance for one averaged step: two half-batch sums vs one full sum ------------
F32_RTOL, F32_ATOL = 1e-5, 1e-6


# -- the single-process world ------------------------------------------------------------------

def test_single_process_world_is_a_no_op(single_world):
    dist.init()
    assert (dist.rank(), dist.world_size(), dist.local_rank()) == (0, 1, 0)
    assert dist.is_main() and not dist.is_distributed()
    dist.barrier()
    model = common.make_model("numpy")
    x, y = common.make_data(4)
    common.forward_backward(model, x, y, "numpy")
    grads = [p.grad for p in model.parameters()]
    datas = [p.data for p in model.parameters()]
    dist.allreduce_gradients(model)
    dist.broadcast_parameters(model)
    assert all(p.grad is g for p, g in zip(model.parameters(), grads))
    assert all(p.data is d for p, d in zip(model.parameters(), datas))
    assert dist.allreduce_sum(3) == 3 and isinstance(dist.allreduce_sum(3), int)
    assert dist.allreduce_sum([2, 0.5, nnx.asarray(np.float32(1.5), "numpy")]) == [2, 0.5, 1.5]
    assert dist.allreduce_mean(4) == 4.0
    obj = {"epoch": 3}
    assert dist.broadcast_object(obj) is obj
    assert dist.local_batch_size(64) == 64
    with pytest.raises(ZeroDivisionError):  # exceptions pass through unchanged with one rank
        dist.run_guarded(lambda: 1 / 0)
    with pytest.raises(TypeError, match="0-d array"):
        dist.allreduce_sum(nnx.asarray(np.zeros(3, np.float32), "numpy"))


def test_the_one_process_world_has_the_interface_of_nnx_distributed(single_world):
    """The Trainer calls the same functions on nnx.distributed and on SINGLE_PROCESS: every
    one of the latter exists in the former with the same parameters, and returns its input
    (or nothing) without touching the model."""
    import inspect

    one = _world.SINGLE_PROCESS
    names = [n for n in vars(type(one)) if not n.startswith("_")]
    assert {"rank", "world_size", "allreduce_sum", "allreduce_gradients",
            "broadcast_buffers"} <= set(names)
    for name in names:
        ours = inspect.signature(getattr(one, name)).parameters
        theirs = inspect.signature(getattr(dist, name)).parameters
        positional = [p for p in theirs.values() if p.kind is not p.KEYWORD_ONLY]
        assert list(ours)[:len(positional)] == [p.name for p in positional], name
    assert (one.rank(), one.world_size(), one.local_rank()) == (0, 1, 0)
    assert one.is_main() and not one.is_distributed() and one.barrier() is None
    values = [2, 0.5, nnx.asarray(np.float32(1.5), "numpy")]
    assert one.allreduce_sum(values) is values and one.allreduce_mean(values) is values
    obj = {"epoch": 3}
    assert one.broadcast_object(obj) is obj
    model = common.make_model("numpy")
    x, y = common.make_data(4)
    common.forward_backward(model, x, y, "numpy")
    before = [(p.data, p.grad) for p in model.parameters()]
    one.allreduce_gradients(model)
    one.broadcast_parameters(model)
    one.broadcast_buffers(model)
    assert all(p.data is d and p.grad is g for p, (d, g) in zip(model.parameters(), before))


def test_importing_and_using_nnx_never_imports_mpi4py():
    code = ("import sys, nnx, nnx.distributed as d; d.init(); "
            "assert d.world_size() == 1 and d.rank() == 0; "
            "assert 'mpi4py' not in sys.modules, 'mpi4py was imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=_clean_env(), timeout=60)
    assert out.returncode == 0, out.stderr


def test_launch_detection():
    assert not dist.launched_under_mpi({})
    assert dist.launched_under_mpi({"PMI_RANK": "0", "PMI_SIZE": "2"})
    assert dist.launched_under_mpi({"OMPI_COMM_WORLD_SIZE": "4"})
    assert dist.launched_under_mpi({"NNX_DISTRIBUTED": "1"})
    assert not dist.launched_under_mpi({"PMI_RANK": "0", "NNX_DISTRIBUTED": "0"})
    assert _world.launcher_world_size({"PMI_SIZE": "3"}) == 3
    assert _world.launcher_world_size({}) is None


def test_launched_without_mpi4py(single_world, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    monkeypatch.setenv("PMI_RANK", "0")
    monkeypatch.setenv("PMI_SIZE", "2")
    with pytest.raises(RuntimeError, match=r"2 processes but mpi4py.*nnx-array\[mpi\]"):
        dist.init()
    _world._reset_for_tests()
    monkeypatch.setenv("PMI_SIZE", "1")
    with caplog.at_level(logging.WARNING, logger="nnx"):
        dist.init()
    assert dist.world_size() == 1 and "mpi4py is missing" in caplog.text


def test_local_batch_size_rejects_bad_launches():
    assert dist.local_batch_size(128, world_size=2) == 64
    with pytest.raises(ValueError, match="world size 4 is larger than the global batch size 2"):
        dist.local_batch_size(2, world_size=4)
    with pytest.raises(ValueError, match="does not split evenly over 3 ranks"):
        dist.local_batch_size(100, world_size=3)
    with pytest.raises(ValueError, match="positive integer"):
        dist.local_batch_size(0, world_size=1)


# -- bucketing and path selection (no MPI needed) ----------------------------------------------

def test_plan_buckets_keeps_order_and_limit():
    assert mt.plan_buckets([4, 4, 4], 100) == [[0, 1, 2]]
    assert mt.plan_buckets([256, 32, 256, 32], 300) == [[0, 1], [2, 3]]
    assert mt.plan_buckets([500, 10, 10], 100) == [[0], [1, 2]]  # oversize item alone
    with pytest.raises(ValueError):
        mt.plan_buckets([1], 0)
    arrays = [np.zeros(2, np.float32), np.zeros(2, np.float64), np.zeros(3, np.float32)]
    assert mt.group_arrays(arrays) == [[0, 2], [1]]


def _info(host="h", device="0", nccl=False, cuda_aware=False):
    return mt.RankInfo(host=host, device=device, nccl=nccl, cuda_aware=cuda_aware)


def test_choose_path_selection():
    two_gpus = [_info(device="0", nccl=True), _info(device="1", nccl=True)]
    assert mt.choose_path("cupy", two_gpus)[0] == "nccl"
    # NCCL on one rank only, or two ranks on one GPU: CUDA-aware MPI if all have it, else host
    half = [_info(device="0", nccl=True, cuda_aware=True), _info(device="1", cuda_aware=True)]
    assert mt.choose_path("cupy", half)[0] == "mpi-direct"
    shared = [_info(device="0", nccl=True), _info(device="0", nccl=True)]
    path, reason = mt.choose_path("cupy", shared)
    assert path == "host" and "share one GPU" in reason and mt.CUDA_AWARE_ENV in reason
    other_hosts = [_info(host="a", device="0", nccl=True), _info(host="b", device="0", nccl=True)]
    assert mt.choose_path("cupy", other_hosts)[0] == "nccl"
    for lib in ("numpy", "torch", "array_api_strict"):
        assert mt.choose_path(lib, [_info(), _info()])[0] == "host"
    # explicit requests
    assert mt.choose_path("cupy", two_gpus, "host")[0] == "host"
    assert mt.choose_path("numpy", [_info()] * 2, "mpi-direct")[0] == "mpi-direct"
    with pytest.raises(ValueError, match="share one GPU"):
        mt.choose_path("cupy", shared, "nccl")
    with pytest.raises(ValueError, match="needs cupy arrays"):
        mt.choose_path("numpy", [_info()] * 2, "nccl")
    with pytest.raises(ValueError, match="numpy or cupy"):
        mt.choose_path("torch", [_info()] * 2, "mpi-direct")
    with pytest.raises(ValueError, match="unknown transport path"):
        mt.choose_path("numpy", [_info()], "gloo")


def test_detect_cuda_aware():
    def fake_mpi(answer):
        return SimpleNamespace(Query_cuda_support=lambda: answer)

    def raising():
        raise NotImplementedError

    assert mt.detect_cuda_aware(fake_mpi(True), {}) is True
    assert mt.detect_cuda_aware(fake_mpi(False), {}) is False
    assert mt.detect_cuda_aware(SimpleNamespace(), {}) is False  # mpi4py without the query
    assert mt.detect_cuda_aware(SimpleNamespace(Query_cuda_support=raising), {}) is False
    assert mt.detect_cuda_aware(SimpleNamespace(), {mt.CUDA_AWARE_ENV: "1"}) is True
    assert mt.detect_cuda_aware(fake_mpi(True), {mt.CUDA_AWARE_ENV: "0"}) is False
    with pytest.raises(ValueError, match=mt.CUDA_AWARE_ENV):
        mt.detect_cuda_aware(SimpleNamespace(), {mt.CUDA_AWARE_ENV: "maybe"})


def test_nccl_module_and_local_info(monkeypatch):
    for available in (True, False):
        nccl = SimpleNamespace(available=available)
        monkeypatch.setitem(sys.modules, "cupy", SimpleNamespace(cuda=SimpleNamespace(nccl=nccl)))
        monkeypatch.setitem(sys.modules, "cupy.cuda", SimpleNamespace(nccl=nccl))
        assert (mt.nccl_module() is nccl) is available
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.delitem(sys.modules, "cupy.cuda")
    assert mt.nccl_module() is None
    mpi = SimpleNamespace(Get_processor_name=lambda: "node7", Query_cuda_support=lambda: True)
    monkeypatch.setattr(mt, "nccl_module", lambda: object())
    gpu = SimpleNamespace(name="cupy", device=SimpleNamespace(id=3))
    assert mt.local_info(mpi, gpu, {}) == _info("node7", "3", nccl=True, cuda_aware=True)
    cpu = SimpleNamespace(name="numpy", device="cpu")
    assert mt.local_info(mpi, cpu, {}) == _info("node7", "cpu")


def test_path_is_chosen_from_every_rank_and_logged(monkeypatch, caplog):
    """The decision uses the gathered infos of all ranks, is made once, and is logged."""
    gathered = [_info(device="0", nccl=True), _info(device="1", nccl=True)]
    comm = SimpleNamespace(allgather=lambda obj: gathered)
    world = _world.World(initialized=True, size=2, comm=comm, mpi=SimpleNamespace())
    fake_gpu = SimpleNamespace(name="cupy", device="cuda:0")
    made = []
    monkeypatch.setattr(_collectives, "backend_of", lambda x: fake_gpu)
    monkeypatch.setattr(mt, "local_info", lambda mpi, backend: gathered[0])
    monkeypatch.setattr(mt, "make_transport",
                        lambda path, *a: made.append(path) or SimpleNamespace(path=path))
    monkeypatch.delenv(mt.PATH_ENV, raising=False)
    with caplog.at_level(logging.INFO, logger="nnx"):
        first = _collectives._transport(world, object(), None)
        again = _collectives._transport(world, object(), None)
    assert made == ["nccl"] and first is again
    assert "cupy arrays on cuda:0 use path 'nccl'" in caplog.text
    gathered[1] = _info(device="0", nccl=True)  # a rank sharing the GPU: no NCCL
    world.transports.clear()
    monkeypatch.setenv(mt.PATH_ENV, "host")
    assert _collectives._transport(world, object(), None).path == "host"
    world.transports.clear()
    monkeypatch.delenv(mt.PATH_ENV)
    assert _collectives._transport(world, object(), None).path == "host"


def test_mpiexec_command_flags(monkeypatch):
    monkeypatch.setattr("nnx.distributed._launch._flavour", lambda exe: "mpich")
    assert dist.mpiexec_command(2, ["python", "x.py"], mpiexec="/bin/mpiexec") == \
        ["/bin/mpiexec", "-launcher", "fork", "-n", "2", "python", "x.py"]
    monkeypatch.setattr("nnx.distributed._launch._flavour", lambda exe: "openmpi")
    cmd = dist.mpiexec_command(2, ["x"], mpiexec="mpirun")
    assert cmd[0] == "mpirun" and "--oversubscribe" in cmd and cmd[-3:] == ["-n", "2", "x"]
    assert ("--allow-run-as-root" in cmd) == (os.geteuid() == 0)


# -- under mpiexec -----------------------------------------------------------------------------

def _step_backends() -> list[str]:
    names = {nt.parse_spec(s)[0] for s in nt.backends()} | {"numpy"}
    return [n for n in ("numpy", "array_api_strict", "torch", "cupy") if n in names]


@needs_mpi
def test_one_data_parallel_step_equals_single_process_step(tmp_path):
    batch = 8  # per rank; the single-process reference takes 2 * 8
    specs = [f"{b}:auto" for b in _step_backends()] + ["numpy:mpi-direct"]
    run_ok("dp_step.py", str(tmp_path), str(batch), *specs)
    x, y = common.make_data(2 * batch)
    for spec in specs:
        backend, path = spec.split(":")
        ref = common.make_model(backend)
        common.forward_backward(ref, x, y, backend)
        nnx.optim.SGD(ref, lr=0.5).step()
        want = common.params_numpy(ref)
        ranks = [load(tmp_path / f"step_{backend}_{path}_rank{r}.npz") for r in range(NPROCS)]
        for r, got in enumerate(ranks):
            assert_params_close(got, want, F32_RTOL, F32_ATOL, f"{spec} rank {r}")
        assert max_diff(ranks[0], ranks[1]) == 0.0, f"{spec}: ranks diverged"
    # the comparison can fail: a step on half the batch alone is far outside the tolerance
    alone = common.make_model("numpy")
    common.forward_backward(alone, x[:batch], y[:batch], "numpy")
    nnx.optim.SGD(alone, lr=0.5).step()
    ref = common.make_model("numpy")
    common.forward_backward(ref, x, y, "numpy")
    nnx.optim.SGD(ref, lr=0.5).step()
    assert max_diff(common.params_numpy(alone), common.params_numpy(ref)) > 100 * F32_ATOL
    paths = json.loads((tmp_path / "paths_rank0.json").read_text())
    assert paths["numpy cpu"] == "host" and paths["numpy cpu (requested mpi-direct)"] == \
        "mpi-direct"


@needs_mpi
def test_training_run_matches_single_process_loss_curve(tmp_path):
    steps, batch = 20, 32
    run_ok("dp_train.py", str(tmp_path), str(steps), str(batch))
    x, y = common.make_data(4 * batch, seed=7)
    want_losses, ref = common.train("numpy", x, y, steps, batch)
    got_losses = json.loads((tmp_path / "losses.json").read_text())
    assert len(got_losses) == steps
    np.testing.assert_allclose(got_losses, want_losses, rtol=1e-4, atol=1e-5)
    assert want_losses[-1] < 0.5 * want_losses[0]  # it learns, so the curve has a shape
    ranks = [load(tmp_path / f"train_rank{r}.npz") for r in range(NPROCS)]
    assert max_diff(ranks[0], ranks[1]) == 0.0, "ranks diverged"
    assert_params_close(ranks[0], common.params_numpy(ref), 1e-4, 1e-5, "final parameters")


@needs_mpi
def test_broadcast_parameters_makes_ranks_identical(tmp_path):
    run_ok("broadcast.py", str(tmp_path), "1")
    before = [load(tmp_path / f"before_rank{r}.npz") for r in range(NPROCS)]
    after = [load(tmp_path / f"after_rank{r}.npz") for r in range(NPROCS)]
    assert max_diff(before[0], before[1]) > 1e-3  # differently seeded
    for r in range(NPROCS):
        assert max_diff(after[r], before[1]) == 0.0, f"rank {r} does not hold root 1's values"


@needs_mpi
@pytest.mark.parametrize("mode", ["hook", "guarded"])
def test_failing_rank_ends_the_job_with_its_message(mode):
    start = time.monotonic()
    out = run_mpi("fail.py", mode, timeout=30)
    elapsed = time.monotonic() - start
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert elapsed < 20, f"took {elapsed:.1f} s"
    assert "rank 1 failed: ValueError: deliberate failure on rank 1" in text
    assert "rank 0 passed the collective" not in text


@needs_mpi
def test_gradients_travel_in_few_bucketed_calls(tmp_path):
    run_ok("count_calls.py", str(tmp_path))
    for r in range(NPROCS):
        res = json.loads((tmp_path / f"count_rank{r}.json").read_text())
        assert res["n_params"] == 18
        assert res["default"] == {"Allreduce": 1, "Bcast": 0}  # 18 gradients, one call
        assert res["default_error"] < 1e-6
        assert res["small"] == {"Allreduce": 9, "Bcast": 0}  # one 288-byte layer per bucket
        assert res["small_error"] < 1e-6
        assert res["bcast"] == {"Allreduce": 0, "Bcast": 1}
        assert res["mixed"] == {"Allreduce": 2, "Bcast": 0}  # one bucket per dtype
        assert res["mixed_values"] == [0.5, 1.5, 2.5, 3.5]  # mean of i and i + 1
        assert res["mixed_dtypes"] == ["float32", "float64", "float32", "float64"]


@needs_mpi
def test_broadcast_buffers_gives_every_rank_rank_0s_running_statistics(tmp_path):
    run_ok("bn_buffers.py", str(tmp_path))
    before = [load(tmp_path / f"before_rank{r}.npz") for r in range(NPROCS)]
    after = [load(tmp_path / f"after_rank{r}.npz") for r in range(NPROCS)]
    assert max_diff(before[0], before[1]) > 1e-3  # other data, other statistics
    for r in range(NPROCS):
        assert max_diff(after[r], before[0]) == 0.0, f"rank {r} does not hold rank 0's buffers"
        assert after[r]["1.num_batches_tracked"].dtype == np.int64


@needs_mpi
@pytest.mark.skipif(not __import__("nnx.backends.cpu_threads", fromlist=["x"])
                    .blas_threads_controllable(), reason="NumPy's BLAS threads cannot be set")
@pytest.mark.parametrize("hand", [None, "NNX_BLAS_THREADS", "OPENBLAS_NUM_THREADS"])
def test_ranks_on_one_machine_split_its_cores(tmp_path, hand):
    """Without a thread count set by hand each rank runs usable cores ÷ ranks BLAS threads;
    NNX_BLAS_THREADS sets nnx's count, a BLAS library's own variable is left to BLAS. A
    model's automatic batch split shares the cores out the same way."""
    from nnx.backends.cpu_threads import THREAD_ENV

    env = {k: v for k, v in _clean_env().items() if k not in THREAD_ENV}
    want = {None: None, "NNX_BLAS_THREADS": 3, "OPENBLAS_NUM_THREADS": 2}[hand]
    if hand is not None:  # 2: what nnx would not choose on 2 cores, and OpenBLAS accepts
        env[hand] = str(want)
    cmd = dist.mpiexec_command(NPROCS, [sys.executable, str(SCRIPTS / "threads.py"),
                                        str(tmp_path)])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=str(ROOT))
    assert out.returncode == 0, out.stdout + out.stderr
    for r in range(NPROCS):
        got = json.loads((tmp_path / f"threads_rank{r}.json").read_text())
        assert got["local_size"] == NPROCS
        if hand == "OPENBLAS_NUM_THREADS" and got["cores"] < 2:
            pytest.skip("needs 2 cores to tell BLAS's own count from nnx's")
        assert got["blas"] == (max(1, got["cores"] // NPROCS) if hand is None else want), got
        assert got["split"] == max(1, got["cores"] // NPROCS), got  # batch-split threads too
