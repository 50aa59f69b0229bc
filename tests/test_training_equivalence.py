"""A short training run gives the same parameters on every backend: an MLP on
synthetic data, 50 steps, fixed seed, SGD with momentum and weight decay
(layer-level on the weights, the optimizer's on the biases) and a MultiStepLR
schedule."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import nnx
import nnx.testing as nt
from nnx import lr_scheduler as nls
from nnx.optim import SGD, MomentGD

STEPS = 50
BATCH = 16


@functools.cache
def synthetic_data():
    """Four Gaussian-ish classes from a random linear teacher (host float64)."""
    rng = np.random.default_rng(2024)
    x = rng.standard_normal((160, 12))
    teacher = rng.standard_normal((12, 4))
    labels = np.argmax(x @ teacher + 0.3 * rng.standard_normal((160, 4)), axis=1)
    return x, labels.astype(np.int64)


def train(spec, dtype, opt_cls=SGD):
    """Train on ``spec`` in ``dtype``; returns (host parameters by name, losses)."""
    x_all, y_all = synthetic_data()
    be = nt.make_backend(spec)
    with nnx.use_backend(be):
        nnx.manual_seed(11)
        model = nnx.models.MLP((12, 16, 16, 4), weight_decay=1e-3, dtype=dtype)
        if opt_cls is SGD:
            opt = SGD(model, lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
        else:
            opt = MomentGD(model, lr=0.1, mu=0.9, weight_decay=5e-4)
        sched = nls.MultiStepLR(opt, milestones=[20, 35, 35], gamma=0.5)
        loss_fn = nnx.CrossEntropyLoss()
        order = np.random.default_rng(5).permutation(len(x_all))
        losses = []
        for step in range(STEPS):
            start = (step * BATCH) % len(x_all)
            idx = order[start:start + BATCH]
            xb = be.from_numpy(x_all[idx].astype(dtype))
            yb = be.from_numpy(y_all[idx])
            loss = loss_fn(model(xb), yb)
            nt.check_placement(loss, xb, dtype, f"loss on {spec}")
            model.backward(loss_fn.backward())
            opt.step()
            sched.step()
            losses.append(float(nnx.to_numpy(loss)))
        for name, p in model.named_parameters():
            nt.check_placement(p.data, xb, dtype, f"{name} on {spec}")
        return {k: nnx.to_numpy(v).copy() for k, v in model.state_dict().items()}, losses


@functools.cache
def numpy_run(dtype, opt_name="SGD"):
    return train("numpy", dtype, SGD if opt_name == "SGD" else MomentGD)


def test_training_reduces_the_loss():
    _, losses = numpy_run("float64")
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])


def _compare(params, ref, what):
    assert list(params) == list(ref)
    for name in ref:
        nt.assert_close(params[name], ref[name], "float32", f"{name}: {what}")


def test_float32_numpy_run_matches_float64():
    params32, _ = numpy_run("float32")
    params64, _ = numpy_run("float64")
    _compare(params32, params64, "numpy float32 vs float64")


@pytest.mark.parametrize("opt_name", ["SGD", "MomentGD"])
def test_same_parameters_on_every_backend(backend, dtype, opt_name):
    params, losses = train(backend, dtype, SGD if opt_name == "SGD" else MomentGD)
    ref, ref_losses = numpy_run("float32", opt_name)
    ref64, _ = numpy_run("float64", opt_name)
    _compare(params, ref, f"{backend.name} {dtype} vs numpy float32")
    _compare(params, ref64, f"{backend.name} {dtype} vs numpy float64")
    nt.assert_close(np.array(losses), np.array(ref_losses), "float32", "loss curve")


def test_same_parameters_on_strict_second_device():
    params, _ = train("array_api_strict:device1", "float32")
    _compare(params, numpy_run("float64")[0], "array_api_strict:device1 vs numpy float64")


def test_runs_are_reproducible():
    a, _ = train("numpy", "float32")
    b, _ = numpy_run("float32")
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
