"""Trainer: history, best/last checkpoints, resume equivalence, NaN stop, interrupt."""

from __future__ import annotations

import json

import numpy as np
import pytest

import nnx
from nnx.data import DataLoader
from nnx.lr_scheduler import MultiStepLR, StepLR
from nnx.optim import SGD


def synthetic(n=96, seed=0):
    """Images whose class is a bright 7x7 block position: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = (rng.random((n, 28, 28)) * 60).astype(np.uint8)
    for i, c in enumerate(labels):
        r, k = divmod(int(c), 4)
        images[i, 7 * r:7 * r + 7, 7 * k:7 * k + 7] = 250
    return images, labels


def make_run(out_dir=None, lr=0.05, backend=None, interval="epoch", sched="multistep"):
    nnx.manual_seed(0)
    with nnx.use_backend(backend or nnx.get_backend()):
        model = nnx.models.MLP((784, 32, 10))
    opt = SGD(model, lr=lr, momentum=0.9, weight_decay=1e-4)
    scheduler = MultiStepLR(opt, [2, 3], 0.5) if sched == "multistep" else StepLR(opt, 5, 0.5)
    trainer = nnx.Trainer(model, opt, scheduler=scheduler, scheduler_interval=interval,
                          out_dir=out_dir, progress=False, log=lambda line: None,
                          config={"model": "mlp"})
    x, y = synthetic()
    xv, yv = synthetic(40, seed=1)
    train = DataLoader(x, y, 16, shuffle=True, seed=3, backend=backend)
    val = DataLoader(xv, yv, 20, shuffle=False, backend=backend)
    return trainer, train, val


def params(model):
    return {k: nnx.to_numpy(v).copy() for k, v in model.state_dict().items()}


def test_fit_writes_history_and_checkpoints(tmp_path):
    trainer, train, val = make_run(tmp_path)
    history = trainer.fit(train, val, epochs=4)
    assert [e["epoch"] for e in history["epochs"]] == [1, 2, 3, 4]
    for e in history["epochs"]:
        assert set(e) >= {"epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc"}
    assert len(history["steps"]) == 4 * len(train)
    assert [e["lr"] for e in history["epochs"]] == pytest.approx([0.05, 0.05, 0.025, 0.0125])
    on_disk = json.loads((tmp_path / "history.json").read_text())
    assert on_disk == json.loads(json.dumps(history))
    assert (tmp_path / "best.safetensors").is_file() and (tmp_path / "last.safetensors").is_file()
    accs = [e["val_acc"] for e in history["epochs"]]
    best_epoch = accs.index(max(accs)) + 1  # the earliest epoch on ties
    assert trainer.best_epoch == best_epoch
    assert nnx.load(tmp_path / "best.safetensors").meta["trainer"]["epoch"] == best_epoch
    assert history["epochs"][-1]["train_loss"] < history["epochs"][0]["train_loss"]


def test_per_step_scheduler_changes_lr_every_step():
    trainer, train, val = make_run(interval="step", sched="step")
    history = trainer.fit(train, None, epochs=2)
    lrs = [s["lr"] for s in history["steps"]]
    expected = [0.05 * 0.5 ** (t // 5) for t in range(len(lrs))]
    assert lrs == pytest.approx(expected, rel=1e-12)


def test_evaluate_matches_a_direct_computation():
    trainer, train, val = make_run()
    trainer.fit(train, None, epochs=1)
    metrics = trainer.evaluate(val)
    xv, yv = synthetic(40, seed=1)
    trainer.model.eval()
    logits = nnx.to_numpy(trainer.model(nnx.asarray(xv[:, None].astype(np.float32) / 255)))
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    assert metrics["loss"] == pytest.approx(-logp[np.arange(40), yv].mean(), rel=1e-5)
    assert metrics["acc"] == pytest.approx(np.mean(logits.argmax(1) == yv))


def test_resume_gives_the_same_parameters(tmp_path):
    straight, train, val = make_run(tmp_path / "a")
    straight.fit(train, val, epochs=4)

    first, train, val = make_run(tmp_path / "b")
    first.fit(train, val, epochs=2)
    second, train, val = make_run(tmp_path / "b")
    second.resume(tmp_path / "b" / "last.safetensors")
    assert second.epoch == 2
    second.fit(train, val, epochs=4)
    a, b = params(straight.model), params(second.model)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    def strip(h):
        return [{k: v for k, v in e.items() if k != "seconds"} for e in h["epochs"]]

    assert strip(second.history) == strip(straight.history)
    assert second.optimizer.lr == straight.optimizer.lr


def test_resume_on_another_backend(tmp_path, backend):
    straight, train, val = make_run(backend=nnx.testing.make_backend("numpy"))
    straight.fit(train, val, epochs=3)
    first, train, val = make_run(tmp_path, backend=nnx.testing.make_backend("numpy"))
    first.fit(train, val, epochs=1)
    second, train, val = make_run(tmp_path, backend=backend)
    second.resume(tmp_path / "last.safetensors")
    second.fit(train, val, epochs=3)
    for k, v in params(straight.model).items():
        got = second.model.state_dict()[k]
        assert nnx.backends.array_library(got) == backend.name
        nnx.testing.assert_close(got, v, "float32", what=k)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
def test_nan_loss_stops_and_keeps_good_checkpoints(tmp_path):
    trainer, train, val = make_run(tmp_path)
    trainer.fit(train, val, epochs=1)
    best_before = (tmp_path / "best.safetensors").read_bytes()
    last_before = (tmp_path / "last.safetensors").read_bytes()
    trainer.optimizer.lr = 1e30  # the next steps blow up
    with pytest.raises(nnx.TrainingDiverged) as info:
        trainer.fit(train, val, epochs=3)
    msg = str(info.value)
    assert "epoch 2" in msg and "step" in msg and "lr 1e+30" in msg
    assert (tmp_path / "best.safetensors").read_bytes() == best_before
    assert (tmp_path / "last.safetensors").read_bytes() == last_before
    assert len(json.loads((tmp_path / "history.json").read_text())["epochs"]) == 1


def test_interrupt_saves_a_resumable_checkpoint(tmp_path):
    straight, train, val = make_run()
    straight.fit(train, val, epochs=2)

    trainer, train, val = make_run(tmp_path)
    real_step = trainer.train_step
    calls = {"n": 0}

    def step_then_interrupt(x, y):
        out = real_step(x, y)
        calls["n"] += 1
        if calls["n"] == len(train) + 2:  # two steps into the second epoch
            trainer._stop_requested = True  # what the SIGINT handler sets
        return out

    trainer.train_step = step_then_interrupt
    with pytest.raises(KeyboardInterrupt, match="epoch 2, step 2"):
        trainer.fit(train, val, epochs=2)
    meta = nnx.load(tmp_path / "last.safetensors").meta
    assert meta["trainer"]["epoch"] == 1 and meta["trainer"]["step_in_epoch"] == 2

    resumed, train, val = make_run(tmp_path)
    resumed.resume(tmp_path / "last.safetensors")
    resumed.fit(train, val, epochs=2)
    for k, v in params(straight.model).items():
        np.testing.assert_array_equal(params(resumed.model)[k], v, err_msg=k)
    assert resumed.history["epochs"][-1]["train_loss"] == pytest.approx(
        straight.history["epochs"][-1]["train_loss"], rel=1e-12)


def test_bad_arguments():
    trainer, train, val = make_run()
    with pytest.raises(ValueError, match="epochs"):
        trainer.fit(train, val, epochs=0)
    with pytest.raises(ValueError, match="scheduler_interval"):
        nnx.Trainer(trainer.model, trainer.optimizer, scheduler_interval="batch")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_validation_loss_stops_before_saving(tmp_path, monkeypatch):
    trainer, train, val = make_run(tmp_path)
    trainer.fit(train, val, epochs=1)
    last_before = (tmp_path / "last.safetensors").read_bytes()
    real = trainer.evaluate
    monkeypatch.setattr(trainer, "evaluate",
                        lambda loader: {**real(loader), "loss": float("nan")})
    with pytest.raises(nnx.TrainingDiverged, match="validation loss became nan after epoch 2"):
        trainer.fit(train, val, epochs=2)
    assert (tmp_path / "last.safetensors").read_bytes() == last_before
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history["epochs"]) == 1


def test_epoch_lr_survives_a_resume_inside_the_epoch(tmp_path):
    from nnx.lr_scheduler import ExponentialLR

    def run(out):
        nnx.manual_seed(0)
        model = nnx.models.MLP((784, 32, 10))
        opt = SGD(model, lr=0.05, momentum=0.9)
        t = nnx.Trainer(model, opt, scheduler=ExponentialLR(opt, 0.9), scheduler_interval="step",
                        out_dir=out, progress=False, log=lambda line: None)
        x, y = synthetic()
        return t, DataLoader(x, y, 16, seed=3)

    straight, loader = run(None)
    straight.fit(loader, None, epochs=2)
    first, loader = run(tmp_path)
    calls = {"n": 0}
    real_step = first.train_step

    def step_then_interrupt(x, y):
        out = real_step(x, y)
        calls["n"] += 1
        if calls["n"] == len(loader) + 2:
            first._stop_requested = True
        return out

    first.train_step = step_then_interrupt
    with pytest.raises(KeyboardInterrupt):
        first.fit(loader, None, epochs=2)
    second, loader = run(tmp_path)
    second.resume(tmp_path / "last.safetensors")
    second.fit(loader, None, epochs=2)
    assert [e["lr"] for e in second.history["epochs"]] == pytest.approx(
        [e["lr"] for e in straight.history["epochs"]], rel=1e-12)


def test_threaded_training_works_after_the_model_was_in_eval_mode():
    from nnx.data import DataLoader as Loader

    nnx.manual_seed(0)
    model = nnx.models.LeNet5()
    model.eval()
    opt = SGD(model, lr=0.01)
    trainer = nnx.Trainer(model, opt, progress=False, log=lambda line: None, threads=2)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (128, 28, 28), dtype=np.uint8)
    history = trainer.fit(Loader(images, rng.integers(0, 10, 128), 64), None, epochs=1)
    assert len(history["steps"]) == 2


def test_without_matplotlib_training_says_how_to_get_plots(tmp_path, monkeypatch):
    import nnx.plot

    monkeypatch.setattr(nnx.plot, "plot_available", lambda: False)
    lines = []
    trainer, train, val = make_run(tmp_path)
    trainer.log = lines.append
    trainer.fit(train, val, epochs=1)
    assert not (tmp_path / "curves.png").exists()
    assert any("pip install 'nnx-array[plot]'" in line for line in lines)
    assert (tmp_path / "best.safetensors").is_file()


def test_loader_batches_follow_the_model_backend():
    """The iterator yields arrays on the model's backend, whatever is active."""
    pytest.importorskip("torch")
    nnx.manual_seed(0)
    with nnx.use_backend("torch", device="cpu"):
        model = nnx.models.MLP((784, 16, 10))
    opt = SGD(model, lr=0.05)
    trainer = nnx.Trainer(model, opt, progress=False, log=lambda line: None)
    x, y = synthetic(32)
    assert nnx.get_backend().name == "numpy"
    history = trainer.fit(DataLoader(x, y, 16), DataLoader(x, y, 16, shuffle=False), epochs=1)
    assert history["epochs"][0]["val_acc"] is not None


def test_float64_model_trains_and_evaluates_on_every_backend(backend):
    """Trainer + DataLoader with a float64 model: batches come in the model's dtype, and
    the run equals a NumPy float64 run to float64 rounding."""
    def run(be):
        nnx.manual_seed(0)
        model = nnx.models.LeNet5(dtype="float64", backend=be)
        opt = SGD(model, lr=0.05, momentum=0.9)
        trainer = nnx.Trainer(model, opt, progress=False, log=lambda line: None, threads=1)
        x, y = synthetic(64)
        xv, yv = synthetic(30, seed=1)
        history = trainer.fit(DataLoader(x, y, 16, seed=3), DataLoader(xv, yv, 20, shuffle=False),
                              epochs=2)
        return model, history

    model, history = run(backend)
    ref_model, ref_history = run(nnx.testing.make_backend("numpy"))
    for k, v in ref_model.state_dict().items():
        got = model.state_dict()[k]
        assert backend.same_place(got) and nnx.backends.dtype_name(got.dtype) == "float64"
        nnx.testing.assert_close(got, nnx.to_numpy(v), "float64", what=k)
    for a, b in zip(history["epochs"], ref_history["epochs"]):
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-9)
        assert a["val_acc"] == b["val_acc"]


def test_resume_refuses_another_scheduler_interval(tmp_path):
    trainer, train, val = make_run(tmp_path, interval="step")
    trainer.fit(train, val, epochs=1)
    other, _, _ = make_run(tmp_path, interval="epoch")
    with pytest.raises(ValueError, match="per step there, per epoch here"):
        other.resume(tmp_path / "last.safetensors")
    assert other.epoch == 0


def test_interrupt_after_the_last_epoch_is_not_an_interruption(tmp_path):
    """A Ctrl-C that lands once every epoch is done (e.g. during the last evaluation or the
    plot) leaves a finished run: fit returns its history instead of raising."""
    trainer, train, val = make_run(tmp_path)
    real = trainer.evaluate
    calls = {"n": 0}

    def evaluate_then_interrupt(loader):
        calls["n"] += 1
        if calls["n"] == 2:  # the last epoch's evaluation
            trainer._stop_requested = True  # what the SIGINT handler sets
        return real(loader)

    trainer.evaluate = evaluate_then_interrupt
    history = trainer.fit(train, val, epochs=2)
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert set(trainer.written) >= {"best.safetensors", "last.safetensors", "history.json"}


# -- any Module, any world, one evaluation -------------------------------------------------

class TwoLayer(nnx.Module):
    """A model that is not a Sequential: its own forward and backward, and Module's
    backward_params_only (backward, input gradient dropped)."""

    def __init__(self):
        self.flat, self.fc1, self.act, self.fc2 = (nnx.Flatten(), nnx.Linear(784, 32),
                                                   nnx.ReLU(), nnx.Linear(32, 10))
        self.log = []

    def forward(self, x):
        return self.fc2(self.act(self.fc1(self.flat(x))))

    def backward(self, grad_out):
        self.log.append("backward")
        return self.flat.backward(self.fc1.backward(self.act.backward(self.fc2.backward(
            grad_out))))


class SkipsInputGradient(TwoLayer):
    def backward_params_only(self, grad_out):
        self.log.append("params_only")
        self.fc1.backward_params_only(self.act.backward(self.fc2.backward(grad_out)))


@pytest.mark.parametrize("cls", [TwoLayer, SkipsInputGradient])
def test_the_trainer_trains_any_module_like_the_same_sequential(cls):
    """The Trainer calls backward_params_only on whatever Module it trains: Module's own
    falls back to backward; a model that overrides it has its override called."""
    x, y = synthetic(32)
    xb = nnx.asarray(x[:, None].astype(np.float32) / 255)
    runs = {}
    for name in ("sequential", "module"):
        nnx.manual_seed(0)  # the same weights: the layers are built in the same order
        model = (nnx.Sequential(nnx.Flatten(), nnx.Linear(784, 32), nnx.ReLU(),
                                nnx.Linear(32, 10)) if name == "sequential" else cls())
        trainer = nnx.Trainer(model, SGD(model, lr=0.1, momentum=0.9), progress=False,
                              log=lambda line: None, threads=1)
        losses = [trainer.train_step(xb, nnx.asarray(y))[0] for _ in range(3)]
        runs[name] = (losses, [nnx.to_numpy(p.data) for p in model.parameters()], model)
    assert runs["module"][0] == pytest.approx(runs["sequential"][0], rel=1e-6)
    for a, b in zip(runs["module"][1], runs["sequential"][1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    want = "backward" if cls is TwoLayer else "params_only"
    assert runs["module"][2].log == [want] * 3


def test_a_trainer_not_distributed_trains_alone_even_in_an_mpi_world(tmp_path, monkeypatch):
    """Without distributed=True the Trainer is rank 0 of a one-process world, whatever MPI
    says: it writes its files and makes no collective call."""
    from nnx.distributed import _world

    # rank 1 of 2 with no communicator: a collective, or a rank test, would show
    monkeypatch.setattr(_world, "_WORLD", _world.World(initialized=True, rank=1, size=2))
    trainer, train, val = make_run(tmp_path)
    assert trainer.world is _world.SINGLE_PROCESS
    history = trainer.fit(train, val, epochs=2)
    assert len(history["epochs"]) == 2
    assert {"best.safetensors", "last.safetensors", "history.json"} <= {
        p.name for p in tmp_path.iterdir()}


def test_a_distributed_trainer_in_a_one_process_world_trains_as_a_plain_one(monkeypatch):
    from nnx.distributed import _world

    monkeypatch.setattr(_world, "_WORLD", _world.World(initialized=True))
    plain, train, val = make_run()
    plain.fit(train, val, epochs=2)
    distributed, train, val = make_run()
    distributed.distributed = True
    assert distributed.world is nnx.distributed
    distributed.fit(train, val, epochs=2)
    def figures(history):
        return [{k: v for k, v in e.items() if k != "seconds"} for e in history["epochs"]]

    assert figures(distributed.history) == figures(plain.history)
    assert distributed.history["steps"] == plain.history["steps"]
    for k, v in params(plain.model).items():
        np.testing.assert_array_equal(params(distributed.model)[k], v, err_msg=k)


def test_one_evaluation_function(monkeypatch):
    """nnx.evaluate is the Trainer's evaluation: Trainer.evaluate calls it with the model and
    the evaluation loss, and returns what it returns."""
    import nnx.trainer as trainer_module

    assert nnx.evaluate is trainer_module.evaluate
    trainer, train, val = make_run()
    direct = nnx.evaluate(trainer.model, val)
    assert set(direct) == {"loss", "acc", "n"} and direct["n"] == 40
    assert trainer.evaluate(val) == direct
    seen = []

    def spy(model, loader, loss_fn=None):
        seen.append((model, loader, loss_fn))
        return {"loss": 1.0, "acc": 0.5, "n": 2}

    monkeypatch.setattr(trainer_module, "evaluate", spy)
    assert trainer.evaluate(val) == {"loss": 1.0, "acc": 0.5, "n": 2}
    assert seen == [(trainer.model, val, trainer.eval_loss_fn)]
