"""CrossEntropyLoss (DESIGN.md §6, issue 3) against an independent NumPy float64
reference, hand-computed values at logits of ±1e4, finite differences and
torch.nn.functional.cross_entropy, on every backend in float32 and float64; and
its errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnx
import nnx.testing as nt


def ref_cross_entropy(z, labels):
    """Mean of logsumexp(z) − z[y] (log-sum-exp by np.logaddexp) and (softmax − onehot)/B."""
    lse = np.logaddexp.reduce(z, axis=1)
    bsz = z.shape[0]
    loss = np.mean(lse - z[np.arange(bsz), labels])
    onehot = np.zeros_like(z)
    onehot[np.arange(bsz), labels] = 1.0
    grad = (np.exp(z - lse[:, None]) - onehot) / bsz
    return loss, grad


def loss_run(logits, labels):
    loss = nnx.CrossEntropyLoss()
    value = loss(logits, labels)
    return value, loss.backward()


@pytest.mark.parametrize("bsz,classes", [(5, 4), (1, 3), (8, 10)])
def test_cross_entropy_matches_reference(backend, dtype, rng, bsz, classes):
    z = rng.standard_normal((bsz, classes)) * 3
    labels = rng.integers(0, classes, size=bsz)
    value, grad = nt.assert_matches_reference(loss_run, z, labels, backend=backend, dtype=dtype)
    assert tuple(value.shape) == () and value.ndim == 0
    assert type(value) is type(backend.from_numpy(np.zeros(1)))  # a 0-d array, not a scalar
    ref_loss, ref_grad = ref_cross_entropy(z, labels)
    nt.assert_close(value, ref_loss, dtype, "loss")
    nt.assert_close(grad, ref_grad, dtype, "dlogits")


def test_cross_entropy_alias_and_softmax():
    assert nnx.MultiCrossEntropyLoss is nnx.CrossEntropyLoss
    from nnx.functional import softmax

    z = np.array([[1.0, 2.0, 3.0], [1e4, -1e4, 0.0]])
    p = softmax(nnx.get_backend().xp, z)
    e = np.exp(z[0] - 3.0)
    nt.assert_close(p[0], e / e.sum(), "float64")
    nt.assert_close(p[1], [1.0, 0.0, 0.0], "float64")


def test_cross_entropy_extreme_logits(backend, dtype):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [1e4, -1e4, -1e4], [-1e4, -1e4, -1e4]])
    labels = np.array([0, 2, 1, 1])
    # per row: 0, log 2, 2e4, log 3
    expected_loss = (0.0 + math.log(2.0) + 2e4 + math.log(3.0)) / 4
    expected_grad = np.array([
        [0.0, 0.0, 0.0],
        [0.0, 0.5, -0.5],
        [1.0, -1.0, 0.0],
        [1 / 3, 1 / 3 - 1, 1 / 3],
    ]) / 4
    value, grad = nt.assert_matches_reference(loss_run, z, labels, backend=backend, dtype=dtype)
    v = float(nnx.to_numpy(value))
    g = nnx.to_numpy(grad)
    assert math.isfinite(v) and np.all(np.isfinite(g))
    nt.assert_close(value, expected_loss, dtype, "loss at ±1e4")
    nt.assert_close(grad, expected_grad, dtype, "gradient at ±1e4")


def test_cross_entropy_gradient_by_finite_differences(backend, rng):
    z = rng.standard_normal((3, 5))
    labels = rng.integers(0, 5, size=3)
    lab = backend.from_numpy(labels)
    loss = nnx.CrossEntropyLoss()
    loss(backend.from_numpy(z), lab)
    grad = loss.backward()
    nt.check_placement(grad, backend.from_numpy(z), "float64", "dlogits")
    analytic = nnx.to_numpy(grad)

    def f(zh):
        return float(nnx.to_numpy(nnx.CrossEntropyLoss()(backend.from_numpy(zh.copy()), lab)))

    numeric = nt.numeric_grad(f, z.copy())
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_cross_entropy_backward_before_call():
    with pytest.raises(RuntimeError, match="before backward"):
        nnx.CrossEntropyLoss().backward()


@pytest.mark.parametrize("labels,match", [
    (np.array([0, 3]), r"\[0, 3\).*\[0, 3\]"),
    (np.array([-1, 1]), r"\[0, 3\).*\[-1, 1\]"),
    (np.array([0, 1, 2]), r"labels must have shape \(2,\).*\(2, 3\).*got \(3,?\)"),
    (np.array([[0], [1]]), r"labels must have shape \(2,\).*got \(2, 1\)"),
    (np.array([0.0, 1.0]), "labels must be integers, got float"),
])
def test_cross_entropy_label_errors(backend, labels, match):
    z = backend.from_numpy(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=match):
        nnx.CrossEntropyLoss()(z, backend.from_numpy(labels))


def test_cross_entropy_logit_errors(backend):
    lab = backend.from_numpy(np.array([0, 1]))
    with pytest.raises(ValueError, match=r"logits must have shape \(batch, classes\), got \(2,?\)"):
        nnx.CrossEntropyLoss()(backend.from_numpy(np.zeros(2, dtype=np.float32)), lab)
    with pytest.raises(ValueError, match=r"got \(2, 3, 1\)"):
        nnx.CrossEntropyLoss()(backend.from_numpy(np.zeros((2, 3, 1), dtype=np.float32)), lab)
    with pytest.raises(TypeError, match="float32 or float64, got int"):
        nnx.CrossEntropyLoss()(backend.from_numpy(np.zeros((2, 3), dtype=np.int64)), lab)


def test_cross_entropy_narrow_integer_labels(backend):
    # uint8 labels (as MNIST's IDX files store them) with more classes than uint8 holds
    z = np.zeros((2, 300))
    z[0, 7] = 1.0
    labels = np.array([7, 200], dtype=np.uint8)
    value = nnx.CrossEntropyLoss()(backend.from_numpy(z), backend.from_numpy(labels))
    nt.assert_close(value, ref_cross_entropy(z, labels.astype(np.int64))[0], "float64")


def test_cross_entropy_labels_from_another_backend(backend):
    if backend.name == "numpy":
        pytest.skip("needs a non-NumPy backend")
    z = backend.from_numpy(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="nnx.asarray"):
        nnx.CrossEntropyLoss()(z, np.array([0, 1]))


def test_cross_entropy_labels_on_another_device():
    d0, d1 = nt.make_backend("array_api_strict"), nt.make_backend("array_api_strict:device1")
    z = d1.from_numpy(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="device"):
        nnx.CrossEntropyLoss()(z, d0.from_numpy(np.array([0, 1])))


def test_cross_entropy_equals_torch(backend, dtype, rng):
    torch = pytest.importorskip("torch")
    z = rng.standard_normal((6, 5)) * 4
    z[0] = [1e4, -1e4, 0, 3, -3]
    labels = rng.integers(0, 5, size=6)
    tz = torch.tensor(z, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tz, torch.tensor(labels))
    tl.backward()
    value, grad = nt.assert_matches_reference(loss_run, z, labels, backend=backend, dtype=dtype)
    nt.assert_close(value, tl.detach().numpy(), dtype, "loss")
    nt.assert_close(grad, tz.grad.numpy(), dtype, "dlogits")
