"""Trainer records: which epoch is ``best``, the validation figures over a
partial last batch, an infinite loss as divergence, and each epoch's lr under a
per-step schedule."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_trainer import make_run, params, synthetic

import nnx
from nnx.data import DataLoader
from nnx.lr_scheduler import ExponentialLR, StepLR
from nnx.optim import SGD

# ---------------------------------------------------------------------------
# best.safetensors: highest val_acc, earliest on ties
# ---------------------------------------------------------------------------


def test_best_is_the_highest_val_acc_and_the_earliest_on_ties(tmp_path, monkeypatch):
    """Scripted validation: accuracies 0.5, 0.7, 0.7, 0.6 with the lowest loss at epoch 4.
    Best is epoch 2 (highest accuracy, earliest of the tie), not 3 (the later tie) nor 4
    (the lowest loss), and best.safetensors holds the model as it was after epoch 2."""
    accs, losses = [0.5, 0.7, 0.7, 0.6], [0.9, 0.8, 0.3, 0.2]
    trainer, train, val = make_run(tmp_path)
    after_epoch = {}

    def scripted(loader):
        e = len(after_epoch) + 1
        after_epoch[e] = params(trainer.model)
        return {"loss": losses[e - 1], "acc": accs[e - 1], "n": 40}

    monkeypatch.setattr(trainer, "evaluate", scripted)
    history = trainer.fit(train, val, epochs=4)
    assert [e["val_acc"] for e in history["epochs"]] == accs
    assert [e["val_loss"] for e in history["epochs"]] == losses
    assert trainer.best_epoch == 2
    assert trainer.best_val_acc == 0.7
    best = nnx.load(tmp_path / "best.safetensors")
    assert best.meta["trainer"]["epoch"] == 2, "best.safetensors is not the model of epoch 2"
    assert best.meta["trainer"]["best_epoch"] == 2
    # the models of different epochs differ, so the weights say which epoch was saved
    assert any(not np.array_equal(after_epoch[2][k], after_epoch[3][k]) for k in after_epoch[2])
    for k, v in best.model_state.items():
        np.testing.assert_array_equal(v, after_epoch[2][k], err_msg=f"best.safetensors {k}")
    last = nnx.load(tmp_path / "last.safetensors")
    assert last.meta["trainer"]["epoch"] == 4 and last.meta["trainer"]["best_epoch"] == 2


# ---------------------------------------------------------------------------
# evaluate: the mean over samples, with a partial last batch
# ---------------------------------------------------------------------------


def test_validation_loss_is_the_mean_over_samples_with_a_partial_last_batch():
    """40 validation samples in batches of 15, 15, 10 (the last 10 deliberately
    mislabelled, so their loss differs): val_loss is the mean over the 40 samples, not the
    mean of the 3 batch means, and val_acc the share of the 40, in evaluate and history."""
    trainer, train, _ = make_run()
    xv, yv = synthetic(40, seed=1)
    yv = yv.copy()
    yv[30:] = (yv[30:] + 3) % 10
    val = DataLoader(xv, yv, 15, shuffle=False)
    assert [len(y) for _, y in val] == [15, 15, 10]
    history = trainer.fit(train, val, epochs=1)
    metrics = trainer.evaluate(val)

    trainer.model.eval()
    logits = nnx.to_numpy(trainer.model(nnx.asarray(xv[:, None].astype(np.float32) / 255)))
    z = logits.astype(np.float64)
    z = z - z.max(1, keepdims=True)
    nll = -(z - np.log(np.exp(z).sum(1, keepdims=True)))[np.arange(40), yv]
    per_sample = nll.mean()
    batch_means = np.mean([nll[:15].mean(), nll[15:30].mean(), nll[30:].mean()])
    # the test can tell the two apart: they differ by far more than the tolerance
    assert abs(batch_means - per_sample) > 100 * 1e-5 * per_sample
    acc = np.mean(logits.argmax(1) == yv)
    assert 0 < acc < 1

    assert metrics["n"] == 40
    assert metrics["loss"] == pytest.approx(per_sample, rel=1e-5)  # float32 forward
    assert metrics["acc"] == pytest.approx(acc, rel=1e-12)
    record = history["epochs"][0]
    assert record["val_loss"] == pytest.approx(per_sample, rel=1e-5)
    assert record["val_acc"] == pytest.approx(acc, rel=1e-12)


# ---------------------------------------------------------------------------
# +inf loss is divergence
# ---------------------------------------------------------------------------


class InfAt:
    """Cross-entropy whose ``at``-th call in training mode (validation calls are not
    counted) returns +inf, a 0-d array; backward delegates."""

    def __init__(self, model, at, on_inf):
        self.inner = nnx.CrossEntropyLoss()
        self.model, self.at, self.on_inf, self.calls = model, at, on_inf, 0

    def __call__(self, logits, labels):
        loss = self.inner(logits, labels)
        if not self.model.training:
            return loss
        self.calls += 1
        if self.calls == self.at:
            self.on_inf()
            return loss + math.inf
        return loss

    def backward(self):
        return self.inner.backward()


def test_infinite_loss_stops_before_the_update_and_writes_nothing(tmp_path):
    """A +inf (not NaN) loss at step 3 of epoch 2 raises TrainingDiverged naming epoch and
    step; that step does not update the parameters and no checkpoint or history is written."""
    nnx.manual_seed(0)
    model = nnx.models.MLP((784, 32, 10))
    opt = SGD(model, lr=0.05, momentum=0.9)
    x, y = synthetic()
    train = DataLoader(x, y, 16, seed=3)
    xv, yv = synthetic(40, seed=1)
    val = DataLoader(xv, yv, 20, shuffle=False)
    seen = {}
    loss_fn = InfAt(model, len(train) + 3, lambda: seen.setdefault("before", params(model)))
    trainer = nnx.Trainer(model, opt, loss_fn, out_dir=tmp_path, progress=False,
                          log=lambda line: None, threads=1)
    trainer.fit(train, val, epochs=1)
    files = {n: (tmp_path / n).read_bytes()
             for n in ("best.safetensors", "last.safetensors", "history.json")}
    with pytest.raises(nnx.TrainingDiverged, match=r"loss became inf at epoch 2, step 3"):
        trainer.fit(train, val, epochs=3)
    assert opt.step_count == len(train) + 2
    for k, v in params(model).items():
        np.testing.assert_array_equal(v, seen["before"][k], err_msg=f"{k} was updated")
    for n, data in files.items():
        assert (tmp_path / n).read_bytes() == data, f"{n} was rewritten"
    assert len(json.loads((tmp_path / "history.json").read_text())["epochs"]) == 1


# ---------------------------------------------------------------------------
# history's epoch lr under a per-step schedule
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("sched", ["exponential", "step"])
def test_epoch_lr_is_the_lr_of_its_first_step_with_a_per_step_schedule(sched):
    """With scheduler_interval="step", epoch k's lr in history is the lr its first step used
    (t = 6k with 6 steps an epoch): lr₀·γ^t (ExponentialLR) or lr₀·γ^⌊t/4⌋ (StepLR(4))."""
    nnx.manual_seed(0)
    model = nnx.models.MLP((784, 32, 10))
    opt = SGD(model, lr=0.05, momentum=0.9)
    if sched == "exponential":
        scheduler, expected = ExponentialLR(opt, 0.8), (lambda t: 0.05 * 0.8 ** t)
    else:
        scheduler, expected = StepLR(opt, 4, 0.5), (lambda t: 0.05 * 0.5 ** (t // 4))
    trainer = nnx.Trainer(model, opt, scheduler=scheduler, scheduler_interval="step",
                          progress=False, log=lambda line: None, threads=1)
    x, y = synthetic()
    train = DataLoader(x, y, 16, seed=3)
    assert len(train) == 6
    history = trainer.fit(train, None, epochs=3)
    steps = history["steps"]
    assert [s["lr"] for s in steps] == pytest.approx([expected(t) for t in range(18)], rel=1e-12)
    for k, record in enumerate(history["epochs"]):
        assert steps[6 * k]["epoch"] == k + 1 and steps[6 * k]["step"] == 0
        assert record["lr"] == pytest.approx(expected(6 * k), rel=1e-12), f"epoch {k + 1}"
        assert record["lr"] == steps[6 * k]["lr"], f"epoch {k + 1}"
