"""CrossEntropyLoss against an independent NumPy float64
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


# ---------------------------------------------------------------------------
# Label smoothing (PyTorch's CrossEntropyLoss(label_smoothing=ε))
# ---------------------------------------------------------------------------


def ref_cross_entropy_smoothed(z, labels, eps):
    """Mean over the batch of −Σ_c q_c log p_c, q = (1 − ε)·onehot + ε/C, and its gradient
    (p − q)/B, from a float64 log-softmax written with np.logaddexp."""
    bsz, classes = z.shape
    logp = z - np.logaddexp.reduce(z, axis=1, keepdims=True)
    q = np.full_like(z, eps / classes)
    q[np.arange(bsz), labels] += 1.0 - eps
    return -np.sum(q * logp) / bsz, (np.exp(logp) - q) / bsz


def smoothed_run(eps):
    def run(logits, labels):
        loss = nnx.CrossEntropyLoss(label_smoothing=eps)
        value = loss(logits, labels)
        return value, loss.backward()

    return run


SMOOTHING = [0.1, 0.37, 1.0]


@pytest.mark.parametrize("eps", SMOOTHING)
@pytest.mark.parametrize("bsz,classes", [(5, 4), (1, 3), (8, 10)])
def test_label_smoothing_matches_reference(backend, dtype, rng, eps, bsz, classes):
    z = rng.standard_normal((bsz, classes)) * 3
    labels = rng.integers(0, classes, size=bsz)
    value, grad = nt.assert_matches_reference(smoothed_run(eps), z, labels, backend=backend,
                                              dtype=dtype)
    assert tuple(value.shape) == ()
    ref_loss, ref_grad = ref_cross_entropy_smoothed(z, labels, eps)
    nt.assert_close(value, ref_loss, dtype, "loss")
    nt.assert_close(grad, ref_grad, dtype, "dlogits")
    # the gradient of each row sums to 0 (both softmax and q are distributions)
    nt.assert_close(nnx.to_numpy(grad).sum(axis=1), np.zeros(bsz), dtype, "row sums")


def test_label_smoothing_reference_by_hand():
    # two classes, logits equal: p = (1/2, 1/2) whatever q is; loss = log 2; grad = (p − q)/B
    z = np.zeros((1, 2))
    loss, grad = ref_cross_entropy_smoothed(z, np.array([0]), 0.2)
    assert loss == pytest.approx(math.log(2.0), rel=1e-15)
    np.testing.assert_allclose(grad, [[0.5 - 0.9, 0.5 - 0.1]], rtol=1e-15)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.25, 1.0])
def test_label_smoothing_equals_torch(backend, dtype, rng, eps):
    torch = pytest.importorskip("torch")
    z = rng.standard_normal((6, 5)) * 4
    z[0] = [1e4, -1e4, 0, 3, -3]
    labels = rng.integers(0, 5, size=6)
    labels[0] = 1  # the label on the −1e4 logit: a loss of about 2e4
    tdt = getattr(torch, dtype)
    tz = torch.tensor(z, dtype=tdt, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tz, torch.tensor(labels), label_smoothing=eps)
    tl.backward()
    value, grad = nt.assert_matches_reference(smoothed_run(eps), z, labels, backend=backend,
                                              dtype=dtype)
    nt.assert_close(value, tl.detach().double().numpy(), dtype, "loss vs torch")
    nt.assert_close(grad, tz.grad.double().numpy(), dtype, "dlogits vs torch")
    tmod = torch.nn.CrossEntropyLoss(label_smoothing=eps)
    nt.assert_close(value, tmod(tz, torch.tensor(labels)).detach().double().numpy(), dtype,
                    "loss vs torch.nn.CrossEntropyLoss")


@pytest.mark.parametrize("eps", [0.1, 0.6])
def test_label_smoothing_gradient_by_finite_differences(backend, rng, eps):
    z = rng.standard_normal((3, 5))
    labels = rng.integers(0, 5, size=3)
    lab = backend.from_numpy(labels)
    loss = nnx.CrossEntropyLoss(label_smoothing=eps)
    loss(backend.from_numpy(z), lab)
    grad = loss.backward()
    nt.check_placement(grad, backend.from_numpy(z), "float64", "dlogits")

    def f(zh):
        return float(nnx.to_numpy(nnx.CrossEntropyLoss(label_smoothing=eps)(
            backend.from_numpy(zh.copy()), lab)))

    numeric = nt.numeric_grad(f, z.copy())
    np.testing.assert_allclose(nnx.to_numpy(grad), numeric, rtol=1e-6, atol=1e-9)


def test_label_smoothing_extreme_logits(backend, dtype):
    eps = 0.3
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]])
    labels = np.array([0, 1])
    # row 0: log p = (0, −2e4, −1e4); q = (0.8, 0.1, 0.1) -> 0.1·2e4 + 0.1·1e4 = 3000
    # row 1: log p = −log 3 everywhere -> log 3
    expected_loss = (3000.0 + math.log(3.0)) / 2
    expected_grad = (np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
                     - np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]])) / 2
    value, grad = nt.assert_matches_reference(smoothed_run(eps), z, labels, backend=backend,
                                              dtype=dtype)
    assert math.isfinite(float(nnx.to_numpy(value))) and np.all(np.isfinite(nnx.to_numpy(grad)))
    nt.assert_close(value, expected_loss, dtype, "loss at ±1e4")
    nt.assert_close(grad, expected_grad, dtype, "gradient at ±1e4")


def test_label_smoothing_zero_is_the_plain_loss(backend, dtype, rng):
    z = backend.from_numpy((rng.standard_normal((4, 6)) * 3).astype(dtype))
    lab = backend.from_numpy(rng.integers(0, 6, size=4))
    plain, smooth0 = nnx.CrossEntropyLoss(), nnx.CrossEntropyLoss(label_smoothing=0.0)
    v0, v1 = plain(z, lab), smooth0(z, lab)
    np.testing.assert_array_equal(nnx.to_numpy(v0), nnx.to_numpy(v1))
    np.testing.assert_array_equal(nnx.to_numpy(plain.backward()), nnx.to_numpy(smooth0.backward()))
    smoothed = nnx.CrossEntropyLoss(label_smoothing=0.2)
    assert float(nnx.to_numpy(smoothed(z, lab))) != float(nnx.to_numpy(v0))


def test_label_smoothing_on_device1(dtype, rng):
    be = nt.make_backend("array_api_strict:device1")
    z = be.from_numpy(rng.standard_normal((3, 4)).astype(dtype))
    loss = nnx.CrossEntropyLoss(label_smoothing=0.1)
    value = loss(z, be.from_numpy(np.array([0, 3, 1])))
    grad = loss.backward()
    nt.check_placement(value, z, dtype, "loss")
    nt.check_placement(grad, z, dtype, "dlogits")
    assert "device1" in str(grad.device)


def test_label_smoothing_repr_default_and_alias():
    assert repr(nnx.CrossEntropyLoss()) == "CrossEntropyLoss()"
    assert nnx.CrossEntropyLoss().label_smoothing == 0.0
    assert repr(nnx.CrossEntropyLoss(label_smoothing=0.1)) == "CrossEntropyLoss(label_smoothing=0.1)"
    assert nnx.CrossEntropyLoss(label_smoothing=1).label_smoothing == 1.0
    with pytest.raises(TypeError):  # keyword-only: PyTorch's first positional argument is weight
        nnx.CrossEntropyLoss(0.25)
    assert nnx.MultiCrossEntropyLoss(label_smoothing=0.1).label_smoothing == 0.1


@pytest.mark.parametrize("value", [-0.1, 1.0000001, float("nan"), float("inf"), "0.1", None, True,
                                   [0.1]])
def test_label_smoothing_validation(value):
    with pytest.raises(ValueError) as info:
        nnx.CrossEntropyLoss(label_smoothing=value)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("CrossEntropyLoss: label_smoothing must be a number in [0, 1], got "), msg
    assert repr(value) in msg
