"""GPU readiness: the Trainer's training loop reads the device at most once per epoch.

An instrumented array-api-strict backend (standing in for a GPU) counts every
device-to-host transfer: ``float()`` / ``int()`` / ``bool()`` / ``__index__`` of an
array and every copy to NumPy.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx.backends import strict_backend
from nnx.data import DataLoader

xs = pytest.importorskip("array_api_strict")


@pytest.fixture
def transfers(monkeypatch):
    """The list of host reads made while the test runs (one entry each)."""
    seen: list[str] = []
    array = type(xs.asarray(0))
    for name in ("__float__", "__int__", "__bool__", "__index__"):
        real = getattr(array, name)

        def counted(self, _real=real, _name=name):
            seen.append(_name)
            return _real(self)

        monkeypatch.setattr(array, name, counted)
    # the adapter's copy to NumPy, which nnx.to_numpy and the Backend's to_numpy both call
    real_to_numpy = strict_backend.to_numpy

    def to_numpy(x):
        seen.append("to_numpy")
        return real_to_numpy(x)

    monkeypatch.setattr(strict_backend, "to_numpy", to_numpy)
    return seen


def run(model_name, epochs, sync_every="epoch", val=False, inject_nan_at=None, **kw):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (96, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 96)
    with nnx.use_backend("array_api_strict"):
        nnx.manual_seed(0)
        model = getattr(nnx.models, model_name)()
    loss_fn = nnx.CrossEntropyLoss()
    if inject_nan_at is not None:
        calls = {"n": 0}
        real = loss_fn.forward

        def forward(logits, y):
            calls["n"] += 1
            out = real(logits, y)
            return out * float("nan") if calls["n"] == inject_nan_at else out

        loss_fn.forward = forward
    trainer = nnx.Trainer(model, nnx.optim.SGD(model, lr=0.01, momentum=0.9), loss_fn=loss_fn,
                          progress=False, log=lambda line: None, threads=1,
                          sync_every=sync_every, **kw)
    train = DataLoader(images, labels, 16, seed=1)
    val_loader = DataLoader(images[:32], labels[:32], 16, shuffle=False) if val else None
    return trainer, trainer.fit(train, val_loader, epochs=epochs)


@pytest.mark.parametrize("model_name", ["MLP", "LeNet5"])
def test_one_read_per_epoch(transfers, model_name):
    _, history = run(model_name, epochs=2)
    assert len(transfers) == 2, transfers
    assert all(isinstance(s["loss"], float) for s in history["steps"])
    assert len(history["steps"]) == 12


def test_evaluation_reads_once_per_pass(transfers):
    run("MLP", epochs=2, val=True)
    assert len(transfers) == 4, transfers  # per epoch: the training sums, the evaluation


def test_nnx_evaluate_alone_reads_once(transfers):
    rng = np.random.default_rng(0)
    with nnx.use_backend("array_api_strict"):
        model = nnx.models.MLP((784, 8, 10))
    loader = DataLoader(rng.integers(0, 256, (48, 28, 28), dtype=np.uint8),
                        rng.integers(0, 10, 48), 16, shuffle=False)
    metrics = nnx.evaluate(model, loader)
    assert len(transfers) == 1, transfers  # three batches, one read
    assert metrics["n"] == 48 and isinstance(metrics["loss"], float)


def test_a_distributed_trainer_in_a_one_process_world_still_reads_once_per_epoch(
        transfers, monkeypatch):
    from nnx.distributed import _world

    monkeypatch.setattr(_world, "_WORLD", _world.World(initialized=True))
    run("MLP", epochs=2, val=True, distributed=True)
    assert len(transfers) == 4, transfers


def test_every_n_steps_reads_every_n_steps(transfers):
    run("MLP", epochs=1, sync_every=2)
    assert len(transfers) == 3 + 1, transfers  # 6 steps: 3 reads, then the epoch's sums


def test_a_nan_still_stops_within_n_steps_before_anything_is_saved(tmp_path):
    with pytest.raises(nnx.TrainingDiverged, match=r"epoch 1, step 3 "):
        run("MLP", epochs=2, sync_every=4, inject_nan_at=3, out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_labels_out_of_range_are_still_refused_when_checks_are_deferred():
    rng = np.random.default_rng(0)
    with nnx.use_backend("array_api_strict"):
        model = nnx.models.MLP((784, 8, 10))
    trainer = nnx.Trainer(model, nnx.optim.SGD(model, lr=0.01), progress=False,
                          log=lambda line: None, sync_every="epoch")
    labels = rng.integers(0, 10, 32)
    labels[5] = 12
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        trainer.fit(DataLoader(rng.integers(0, 256, (32, 28, 28), dtype=np.uint8), labels, 16),
                    None, epochs=1)


def test_evaluate_refuses_labels_out_of_range_after_its_one_read(transfers):
    rng = np.random.default_rng(0)
    with nnx.use_backend("array_api_strict"):
        model = nnx.models.MLP((784, 8, 10))
    labels = rng.integers(0, 10, 48)
    labels[40] = -1  # in the last batch
    loss_fn = nnx.CrossEntropyLoss()
    loader = DataLoader(rng.integers(0, 256, (48, 28, 28), dtype=np.uint8), labels, 16,
                        shuffle=False)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\)"):
        nnx.evaluate(model, loader, loss_fn)
    assert len(transfers) == 1, transfers
    assert loss_fn.defer_label_check is False  # the caller's setting is restored


def test_host_backends_check_each_step_before_its_update():
    """On NumPy reading costs nothing, so the default checks every loss before its update."""
    trainer, _ = run("MLP", epochs=1)
    with nnx.use_backend("numpy"):
        model = nnx.models.MLP((784, 8, 10))
    t = nnx.Trainer(model, nnx.optim.SGD(model, lr=0.01), progress=False, log=lambda line: None)
    assert t._resolve_sync() == 1 and trainer._resolve_sync() is None
