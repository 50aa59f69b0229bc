"""Layers and the loss against independent NumPy float64 references, finite
differences and PyTorch.

Every backend of the ``backend`` fixture runs in float32 and float64; each result
is checked for library, device and dtype and the inputs for being unmodified
(``nnx.testing.assert_matches_reference``), then compared with a reference written
here from the formulas (loops over output positions and ``np.einsum``), not with
nnx's own kernels.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnx
import nnx.testing as nt
from nnx import backends as B

# ---------------------------------------------------------------------------
# Independent NumPy float64 references
# ---------------------------------------------------------------------------


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def ref_linear(x, w, b, g):
    """Y = XW + b and its gradients, with einsum."""
    y = np.einsum("bi,io->bo", x, w) + b
    dx = np.einsum("bo,io->bi", g, w)
    dw = np.einsum("bi,bo->io", x, g)
    db = g.sum(axis=0)
    return y, dx, dw, db


def ref_conv2d(x, w, b, stride, padding, g=None):
    """Direct cross-correlation over output positions; with ``g``, also (dx, dw, db)."""
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    bsz, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xpad = np.zeros((bsz, c, h + 2 * ph, wd + 2 * pw))
    xpad[:, :, ph:ph + h, pw:pw + wd] = x
    ho = (h + 2 * ph - kh) // sh + 1
    wo = (wd + 2 * pw - kw) // sw + 1
    y = np.zeros((bsz, o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            win = xpad[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            y[:, :, i, j] = np.einsum("bcuv,ocuv->bo", win, w)
    if b is not None:
        y += b[None, :, None, None]
    if g is None:
        return y
    dxpad = np.zeros_like(xpad)
    dw = np.zeros_like(w)
    for i in range(ho):
        for j in range(wo):
            win = xpad[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            dxpad[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw] += np.einsum(
                "bo,ocuv->bcuv", g[:, :, i, j], w)
            dw += np.einsum("bo,bcuv->ocuv", g[:, :, i, j], win)
    dx = dxpad[:, :, ph:ph + h, pw:pw + wd]
    db = g.sum(axis=(0, 2, 3))
    return y, dx, dw, db


def ref_maxpool2d(x, kernel, stride=None, padding=0, g=None):
    """Window by window; padding is −∞; the gradient goes to ``np.argmax`` of the
    flattened window, i.e. the first maximum in row-major window order."""
    kh, kw = _pair(kernel)
    sh, sw = _pair(kernel if stride is None else stride)
    ph, pw = _pair(padding)
    bsz, c, h, wd = x.shape
    xpad = np.full((bsz, c, h + 2 * ph, wd + 2 * pw), -np.inf)
    xpad[:, :, ph:ph + h, pw:pw + wd] = x
    ho = (h + 2 * ph - kh) // sh + 1
    wo = (wd + 2 * pw - kw) // sw + 1
    y = np.zeros((bsz, c, ho, wo))
    dxpad = np.zeros_like(xpad)
    for n in range(bsz):
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    win = xpad[n, ch, i * sh:i * sh + kh, j * sw:j * sw + kw]
                    k = int(np.argmax(win))
                    u, v = divmod(k, kw)
                    y[n, ch, i, j] = win[u, v]
                    if g is not None:
                        dxpad[n, ch, i * sh + u, j * sw + v] += g[n, ch, i, j]
    if g is None:
        return y
    return y, dxpad[:, :, ph:ph + h, pw:pw + wd]


def ref_zeropad2d(x, pad, g=None):
    left, right, top, bottom = (pad,) * 4 if isinstance(pad, int) else pad
    widths = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
    y = np.pad(x, widths)
    if g is None:
        return y
    h, w = x.shape[-2:]
    return y, g[..., top:top + h, left:left + w]


def ref_relu(x, g):
    return np.where(x > 0, x, 0.0), np.where(x > 0, g, 0.0)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def layer_run(make):
    """fn(x, g, *params) for assert_matches_reference: build the layer in the input's
    dtype, install the given parameter values, run forward and backward and return
    (y, dx, *parameter grads)."""

    def fn(x, g, *params):
        layer = make(nt.dtype_of(x))
        own = layer.parameters()
        assert len(own) == len(params)
        for p, value in zip(own, params):
            p.data = value
        y = layer(x)
        dx = layer.backward(g)
        for p in own:
            assert p.grad is not None
        return (y, dx, *[p.grad for p in own])

    return fn


def compare(actual, expected, dtype, names):
    assert len(actual) == len(expected)
    for a, e, name in zip(actual, expected, names):
        nt.assert_close(a, e, dtype, name)


def away_from_zero(rng, shape, margin=0.05):
    """Random values with |v| >= margin (keeps ReLU/finite differences off the kink)."""
    z = rng.standard_normal(shape)
    return np.sign(z) * (margin + np.abs(z))


# ---------------------------------------------------------------------------
# Linear
# ---------------------------------------------------------------------------

LINEAR_CASES = [(3, 4, 5), (1, 7, 2), (6, 1, 3)]  # (batch, in, out)


@pytest.mark.parametrize("bsz,din,dout", LINEAR_CASES)
def test_linear_matches_reference(backend, dtype, rng, bsz, din, dout):
    x = rng.standard_normal((bsz, din))
    w = rng.standard_normal((din, dout))
    b = rng.standard_normal(dout)
    g = rng.standard_normal((bsz, dout))
    out = nt.assert_matches_reference(layer_run(lambda dt: nnx.Linear(din, dout, dtype=dt)),
                                      x, g, w, b, backend=backend, dtype=dtype)
    compare(out, ref_linear(x, w, b, g), dtype, ["y", "dx", "dW", "db"])


def test_linear_without_bias(backend, dtype, rng):
    x, w, g = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal((3, 2))
    out = nt.assert_matches_reference(
        layer_run(lambda dt: nnx.Linear(4, 2, bias=False, dtype=dt)), x, g, w,
        backend=backend, dtype=dtype)
    y, dx, dw, _ = ref_linear(x, w, np.zeros(2), g)
    compare(out, (y, dx, dw), dtype, ["y", "dx", "dW"])


@pytest.mark.parametrize("bsz", [1, 4])
def test_linear_gradcheck(backend, rng, bsz):
    layer = nnx.Linear(5, 3, dtype="float64")
    nt.gradcheck(layer, rng.standard_normal((bsz, 5)))


def test_linear_weight_layout_and_init(backend):
    nnx.manual_seed(3)
    layer = nnx.Linear(50, 20)
    assert layer.weight.shape == (50, 20) and layer.bias.shape == (20,)
    w = nnx.to_numpy(layer.weight.data)
    b = nnx.to_numpy(layer.bias.data)
    bound = 1 / math.sqrt(50)
    assert w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.9 * bound  # U(±1/√in), not something narrower
    assert abs(w.mean()) < 0.2 * bound
    nt.check_placement(layer.weight.data, backend.from_numpy(np.zeros(1, "float32")), "float32")


# ---------------------------------------------------------------------------
# Conv2d
# ---------------------------------------------------------------------------

# (batch, in, out, H, W, kernel, stride, padding)
CONV_CASES = [
    (2, 2, 3, 5, 5, 3, 1, 0),
    (1, 3, 2, 7, 6, (3, 2), 2, 1),
    (2, 1, 2, 6, 7, (2, 3), (2, 1), (2, 1)),
    (1, 2, 4, 4, 5, 1, 2, 2),
    (3, 2, 2, 5, 5, 5, 3, 2),
    (1, 1, 1, 3, 4, (3, 4), 1, 0),
]


def _conv_ids(case):
    b, c, o, h, w, k, s, p = case
    return f"b{b}c{c}o{o}_{h}x{w}_k{k}_s{s}_p{p}".replace(" ", "")


@pytest.mark.parametrize("case", CONV_CASES, ids=_conv_ids)
def test_conv2d_matches_reference(backend, dtype, rng, case):
    bsz, c, o, h, w, k, s, p = case
    kh, kw = _pair(k)
    x = rng.standard_normal((bsz, c, h, w))
    wt = rng.standard_normal((o, c, kh, kw))
    b = rng.standard_normal(o)
    y_ref = ref_conv2d(x, wt, b, s, p)
    g = rng.standard_normal(y_ref.shape)
    expected = ref_conv2d(x, wt, b, s, p, g)
    out = nt.assert_matches_reference(
        layer_run(lambda dt: nnx.Conv2d(c, o, k, stride=s, padding=p, dtype=dt)),
        x, g, wt, b, backend=backend, dtype=dtype)
    compare(out, expected, dtype, ["y", "dx", "dW", "db"])


def test_conv2d_without_bias(backend, dtype, rng):
    x = rng.standard_normal((2, 2, 5, 4))
    wt = rng.standard_normal((3, 2, 2, 2))
    g = rng.standard_normal(ref_conv2d(x, wt, None, (1, 2), (0, 1)).shape)
    out = nt.assert_matches_reference(
        layer_run(lambda dt: nnx.Conv2d(2, 3, 2, stride=(1, 2), padding=(0, 1), bias=False,
                                        dtype=dt)),
        x, g, wt, backend=backend, dtype=dtype)
    y, dx, dw, _ = ref_conv2d(x, wt, None, (1, 2), (0, 1), g)
    compare(out, (y, dx, dw), dtype, ["y", "dx", "dW"])


@pytest.mark.parametrize("case", CONV_CASES[:5], ids=_conv_ids)
def test_conv2d_gradcheck(backend, rng, case):
    bsz, c, o, h, w, k, s, p = case
    layer = nnx.Conv2d(c, o, k, stride=s, padding=p, dtype="float64")
    nt.gradcheck(layer, rng.standard_normal((bsz, c, h, w)))


def test_conv2d_init_bounds(backend):
    layer = nnx.Conv2d(3, 8, (3, 5))
    assert layer.weight.shape == (8, 3, 3, 5) and layer.bias.shape == (8,)
    bound = 1 / math.sqrt(3 * 3 * 5)
    w = nnx.to_numpy(layer.weight.data)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert np.abs(nnx.to_numpy(layer.bias.data)).max() <= bound


# ---------------------------------------------------------------------------
# ZeroPad2d
# ---------------------------------------------------------------------------

PAD_CASES = [1, (1, 2, 0, 3), (0, 0, 2, 1), (3, 0, 0, 0), 0]


@pytest.mark.parametrize("pad", PAD_CASES, ids=str)
def test_zeropad2d_matches_reference(backend, dtype, rng, pad):
    x = rng.standard_normal((2, 3, 4, 5))
    y_ref = ref_zeropad2d(x, pad)
    g = rng.standard_normal(y_ref.shape)
    out = nt.assert_matches_reference(layer_run(lambda dt: nnx.ZeroPad2d(pad)), x, g,
                                      backend=backend, dtype=dtype)
    compare(out, ref_zeropad2d(x, pad, g), dtype, ["y", "dx"])


def test_zeropad2d_rank3(backend, dtype, rng):
    x = rng.standard_normal((3, 2, 4))
    pad = (2, 1, 1, 0)
    g = rng.standard_normal(ref_zeropad2d(x, pad).shape)
    out = nt.assert_matches_reference(layer_run(lambda dt: nnx.ZeroPad2d(pad)), x, g,
                                      backend=backend, dtype=dtype)
    compare(out, ref_zeropad2d(x, pad, g), dtype, ["y", "dx"])


def test_zeropad2d_gradcheck(backend, rng):
    nt.gradcheck(nnx.ZeroPad2d((1, 2, 0, 1)), backend.from_numpy(rng.standard_normal((1, 2, 3, 3))))


# ---------------------------------------------------------------------------
# MaxPool2d
# ---------------------------------------------------------------------------

# (batch, channels, H, W, kernel, stride, padding)
POOL_CASES = [
    (2, 2, 4, 4, 2, None, 0),
    (1, 2, 5, 5, 3, 2, 1),
    (2, 1, 5, 6, (3, 2), 1, (1, 1)),
    (1, 3, 4, 4, 2, 1, 1),
    (2, 1, 4, 7, (2, 3), (1, 2), (1, 0)),
    (1, 1, 7, 5, 3, 3, 0),
    (1, 2, 3, 3, 1, 2, 0),
    (2, 1, 6, 4, (3, 2), None, 0),  # windows tile the image exactly
    (1, 2, 5, 5, 2, None, 0),  # the last row and column fall outside every window
]


def _pool_ids(case):
    b, c, h, w, k, s, p = case
    return f"b{b}c{c}_{h}x{w}_k{k}_s{s}_p{p}".replace(" ", "")


def pool_input(rng, shape, kind):
    if kind == "ties":
        # small integers: exact ties inside windows, and all-negative windows next to
        # the padding (which must act as −∞, not 0)
        return rng.integers(-3, 1, size=shape).astype(np.float64)
    return rng.standard_normal(shape)


@pytest.mark.parametrize("kind", ["random", "ties"])
@pytest.mark.parametrize("case", POOL_CASES, ids=_pool_ids)
def test_maxpool2d_matches_reference(backend, dtype, rng, case, kind):
    bsz, c, h, w, k, s, p = case
    x = pool_input(rng, (bsz, c, h, w), kind)
    y_ref = ref_maxpool2d(x, k, s, p)
    g = rng.standard_normal(y_ref.shape)
    out = nt.assert_matches_reference(layer_run(lambda dt: nnx.MaxPool2d(k, s, p)), x, g,
                                      backend=backend, dtype=dtype)
    compare(out, ref_maxpool2d(x, k, s, p, g), dtype, ["y", "dx"])


def test_maxpool2d_ties_go_to_first_maximum_in_row_major_order(backend, dtype):
    # one 3x3 window (stride 3) whose maximum 5 appears at (0, 2), (1, 0) and (2, 2):
    # the first in row-major order is (0, 2), not (1, 0) (first in column-major order)
    x = np.array([[1, 2, 5], [5, 0, 1], [3, 4, 5]], dtype=np.float64)[None, None]
    layer = nnx.MaxPool2d(3)
    xb = nnx.asarray(x, dtype=dtype)
    y = layer(xb)
    dx = nnx.to_numpy(layer.backward(nnx.asarray(np.full((1, 1, 1, 1), 7.0), dtype=dtype)))
    assert float(nnx.to_numpy(y)[0, 0, 0, 0]) == 5.0
    expected = np.zeros((3, 3))
    expected[0, 2] = 7.0
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_maxpool2d_all_equal_windows_with_overlap_and_padding(backend, dtype):
    # constant input: every window is a tie; each gradient goes to the window's
    # first in-image element, and overlapping windows add up
    x = np.zeros((1, 1, 4, 4))
    y_ref = ref_maxpool2d(x, 3, 1, 1)
    g = np.arange(1, y_ref.size + 1, dtype=np.float64).reshape(y_ref.shape)
    _, dx_ref = ref_maxpool2d(x, 3, 1, 1, g)
    layer = nnx.MaxPool2d(3, 1, 1)
    layer(nnx.asarray(x, dtype=dtype))
    dx = layer.backward(nnx.asarray(g, dtype=dtype))
    np.testing.assert_array_equal(nnx.to_numpy(dx), dx_ref)
    assert dx_ref.sum() == g.sum()  # nothing lost to the padding


def test_maxpool2d_padding_acts_as_minus_infinity(backend, dtype):
    x = -np.ones((1, 1, 2, 2))
    layer = nnx.MaxPool2d(2, stride=1, padding=1)
    y = nnx.to_numpy(layer(nnx.asarray(x, dtype=dtype)))
    np.testing.assert_array_equal(y, -np.ones((1, 1, 3, 3)))


def test_maxpool2d_stride_defaults_to_kernel():
    assert nnx.MaxPool2d(3).stride == (3, 3)
    assert nnx.MaxPool2d((2, 3)).stride == (2, 3)


@pytest.mark.parametrize("case", POOL_CASES[:5], ids=_pool_ids)
def test_maxpool2d_gradcheck(backend, rng, case):
    bsz, c, h, w, k, s, p = case
    # distinct values at least 0.01 apart, so ±eps never changes which element wins
    x = rng.permutation(bsz * c * h * w).reshape(bsz, c, h, w) * 0.01 - 0.2
    nt.gradcheck(nnx.MaxPool2d(k, s, p), backend.from_numpy(x.astype(np.float64)))


# ---------------------------------------------------------------------------
# ReLU, Flatten
# ---------------------------------------------------------------------------


def test_relu_matches_reference(backend, dtype, rng):
    x = rng.standard_normal((3, 2, 4))
    x[0, 0, :2] = 0.0  # the kink: gradient 0 there, as PyTorch
    g = rng.standard_normal(x.shape)
    out = nt.assert_matches_reference(layer_run(lambda dt: nnx.ReLU()), x, g,
                                      backend=backend, dtype=dtype)
    compare(out, ref_relu(x, g), dtype, ["y", "dx"])


def test_relu_gradcheck(backend, rng):
    nt.gradcheck(nnx.ReLU(), backend.from_numpy(away_from_zero(rng, (2, 3, 2))))


def test_flatten_matches_reference(backend, dtype, rng):
    x = rng.standard_normal((2, 3, 2, 2))
    g = rng.standard_normal((2, 12))
    out = nt.assert_matches_reference(layer_run(lambda dt: nnx.Flatten()), x, g,
                                      backend=backend, dtype=dtype)
    compare(out, (x.reshape(2, 12), g.reshape(x.shape)), dtype, ["y", "dx"])


def test_flatten_gradcheck(backend, rng):
    nt.gradcheck(nnx.Flatten(), backend.from_numpy(rng.standard_normal((1, 2, 3))))


# ---------------------------------------------------------------------------
# Sequential (a small CNN)
# ---------------------------------------------------------------------------


def small_cnn(dt):
    return nnx.Sequential(
        nnx.ZeroPad2d((1, 0, 0, 1)),
        nnx.Conv2d(2, 3, 3, stride=2, padding=1, dtype=dt), nnx.ReLU(),
        nnx.MaxPool2d(2, stride=1, padding=1),
        nnx.Flatten(),
        nnx.Linear(3 * 5 * 5, 4, dtype=dt),
    )


def ref_small_cnn(x, cw, cb, lw, lb, g):
    x0 = ref_zeropad2d(x, (1, 0, 0, 1))
    x1 = ref_conv2d(x0, cw, cb, 2, 1)
    x2 = np.maximum(x1, 0.0)
    x3 = ref_maxpool2d(x2, 2, 1, 1)
    x4 = x3.reshape(x.shape[0], -1)
    y, d4, dlw, dlb = ref_linear(x4, lw, lb, g)
    _, d2 = ref_maxpool2d(x2, 2, 1, 1, d4.reshape(x3.shape))
    d1 = np.where(x1 > 0, d2, 0.0)
    _, d0, dcw, dcb = ref_conv2d(x0, cw, cb, 2, 1, d1)
    dx = d0[:, :, 0:x.shape[2], 1:1 + x.shape[3]]
    return y, dx, dcw, dcb, dlw, dlb


def test_sequential_matches_reference(backend, dtype, rng):
    x = rng.standard_normal((2, 2, 7, 6))
    cw, cb = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    lw, lb = rng.standard_normal((75, 4)) * 0.2, rng.standard_normal(4)
    g = rng.standard_normal((2, 4))
    out = nt.assert_matches_reference(layer_run(small_cnn), x, g, cw, cb, lw, lb,
                                      backend=backend, dtype=dtype)
    compare(out, ref_small_cnn(x, cw, cb, lw, lb, g), dtype,
            ["y", "dx", "1.weight", "1.bias", "5.weight", "5.bias"])


def test_sequential_gradcheck(backend, rng):
    model = nnx.Sequential(nnx.Conv2d(1, 2, 2, stride=2, dtype="float64"), nnx.ReLU(),
                           nnx.Flatten(), nnx.Linear(8, 3, dtype="float64"))
    # the check needs every ReLU input away from 0: choose a seed where it is
    x = backend.from_numpy(rng.standard_normal((1, 1, 4, 4)) + 0.5)
    pre = nnx.to_numpy(model[0](x))
    assert np.abs(pre).min() > 1e-3
    nt.gradcheck(model, x)


# ---------------------------------------------------------------------------
# PyTorch as a second reference
# ---------------------------------------------------------------------------


def _torch():
    return pytest.importorskip("torch")


def torch_grads(fn, *arrays):
    """Run ``fn`` on float64 CPU tensors with autograd; returns (y, grads of every input)."""
    torch = _torch()
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    return ts, fn(*ts)


@pytest.mark.parametrize("case", CONV_CASES, ids=_conv_ids)
def test_conv2d_equals_torch(backend, dtype, rng, case):
    torch = _torch()
    F = torch.nn.functional
    bsz, c, o, h, w, k, s, p = case
    kh, kw = _pair(k)
    x, wt, b = (rng.standard_normal((bsz, c, h, w)), rng.standard_normal((o, c, kh, kw)),
                rng.standard_normal(o))
    (tx, tw, tb), ty = torch_grads(lambda a, ww, bb: F.conv2d(a, ww, bb, stride=s, padding=p),
                                   x, wt, b)
    g = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(g))
    out = nt.assert_matches_reference(
        layer_run(lambda dt: nnx.Conv2d(c, o, k, stride=s, padding=p, dtype=dt)),
        x, g, wt, b, backend=backend, dtype=dtype)
    expected = [t.detach().numpy() for t in (ty, tx.grad, tw.grad, tb.grad)]
    compare(out, expected, dtype, ["y", "dx", "dW", "db"])


@pytest.mark.parametrize("case", POOL_CASES, ids=_pool_ids)
def test_maxpool2d_with_ties_equals_torch(backend, dtype, rng, case):
    torch = _torch()
    bsz, c, h, w, k, s, p = case
    x = pool_input(rng, (bsz, c, h, w), "ties")
    (tx,), ty = torch_grads(
        lambda a: torch.nn.functional.max_pool2d(a, k, stride=s, padding=p), x)
    g = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(g))
    out = nt.assert_matches_reference(layer_run(lambda dt: nnx.MaxPool2d(k, s, p)), x, g,
                                      backend=backend, dtype=dtype)
    compare(out, [ty.detach().numpy(), tx.grad.numpy()], dtype, ["y", "dx"])


@pytest.mark.parametrize("pad", PAD_CASES, ids=str)
def test_zeropad2d_equals_torch(backend, dtype, rng, pad):
    torch = _torch()
    x = rng.standard_normal((2, 2, 3, 4))
    sides = (pad,) * 4 if isinstance(pad, int) else pad
    (tx,), ty = torch_grads(lambda a: torch.nn.functional.pad(a, sides), x)
    g = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(g))
    out = nt.assert_matches_reference(layer_run(lambda dt: nnx.ZeroPad2d(pad)), x, g,
                                      backend=backend, dtype=dtype)
    compare(out, [ty.detach().numpy(), tx.grad.numpy()], dtype, ["y", "dx"])


def test_linear_equals_torch_with_transposed_weight(backend, dtype, rng):
    torch = _torch()
    x, w, b = rng.standard_normal((4, 6)), rng.standard_normal((6, 3)), rng.standard_normal(3)
    # nnx stores W as (in, out); torch's linear takes (out, in)
    (tx, tw, tb), ty = torch_grads(lambda a, ww, bb: torch.nn.functional.linear(a, ww, bb),
                                   x, w.T.copy(), b)
    g = rng.standard_normal((4, 3))
    ty.backward(torch.tensor(g))
    out = nt.assert_matches_reference(layer_run(lambda dt: nnx.Linear(6, 3, dtype=dt)),
                                      x, g, w, b, backend=backend, dtype=dtype)
    compare(out, [ty.detach().numpy(), tx.grad.numpy(), tw.grad.numpy().T, tb.grad.numpy()],
            dtype, ["y", "dx", "dW", "db"])


# ---------------------------------------------------------------------------
# Errors: clear messages naming the layer and the shapes
# ---------------------------------------------------------------------------


def f32(backend, shape, dtype=np.float32):
    return backend.from_numpy(np.zeros(shape, dtype=dtype))


def test_linear_wrong_feature_count(backend):
    with pytest.raises(ValueError, match=r"Linear\(4, 3\).*\(batch, 4\).*\(2, 5\)"):
        nnx.Linear(4, 3)(f32(backend, (2, 5)))


def test_linear_wrong_rank(backend):
    with pytest.raises(ValueError, match=r"Linear\(4, 3\).*\(batch, 4\).*\(2, 1, 4\)"):
        nnx.Linear(4, 3)(f32(backend, (2, 1, 4)))


def test_conv2d_wrong_channels_and_rank(backend):
    conv = nnx.Conv2d(3, 2, 3)
    with pytest.raises(ValueError, match=r"Conv2d\(3, 2.*\(batch, 3, H, W\).*\(1, 2, 5, 5\)"):
        conv(f32(backend, (1, 2, 5, 5)))
    with pytest.raises(ValueError, match=r"Conv2d\(3, 2.*\(batch, 3, H, W\).*\(3, 5, 5\)"):
        conv(f32(backend, (3, 5, 5)))


def test_conv2d_image_smaller_than_kernel(backend):
    conv = nnx.Conv2d(1, 1, (3, 5), padding=(0, 1))
    with pytest.raises(ValueError, match=r"Conv2d.*\(1, 1, 4, 2\).*smaller than the kernel 3x5"):
        conv(f32(backend, (1, 1, 4, 2)))
    # padding counts: 2 + 2·1 = 4 < 5 fails, but 3 + 2 = 5 fits
    assert tuple(conv(f32(backend, (1, 1, 3, 3))).shape) == (1, 1, 1, 1)


def test_maxpool2d_errors(backend):
    pool = nnx.MaxPool2d(3)
    with pytest.raises(ValueError, match=r"MaxPool2d.*\(1, 1, 2, 5\).*smaller than the kernel 3x3"):
        pool(f32(backend, (1, 1, 2, 5)))
    with pytest.raises(ValueError, match=r"MaxPool2d.*\(batch, channels, H, W\).*\(4, 4\)"):
        pool(f32(backend, (4, 4)))


@pytest.mark.parametrize("make", [
    lambda: nnx.Linear(3, 2), lambda: nnx.Conv2d(1, 1, 1), lambda: nnx.MaxPool2d(1),
    lambda: nnx.ReLU(), lambda: nnx.ZeroPad2d(1),
], ids=["Linear", "Conv2d", "MaxPool2d", "ReLU", "ZeroPad2d"])
def test_non_float_input(backend, make):
    layer = make()
    shape = (2, 3) if isinstance(layer, nnx.Linear) else (1, 1, 2, 2)
    with pytest.raises(TypeError, match=rf"{type(layer).__name__}.*float32 or float64, got int32"):
        layer(backend.from_numpy(np.zeros(shape, dtype=np.int32)))


@pytest.mark.parametrize("make,shape", [
    (lambda: nnx.Linear(3, 2), (2, 3)), (lambda: nnx.Conv2d(1, 1, 1), (1, 1, 2, 2)),
], ids=["Linear", "Conv2d"])
def test_dtype_mismatch(backend, make, shape):
    layer = make()
    with pytest.raises(TypeError, match="input dtype float64 does not match the parameters' float32"):
        layer(f32(backend, shape, np.float64))


@pytest.mark.parametrize("make,shape", [
    (lambda: nnx.Linear(3, 2), (2, 3)), (lambda: nnx.Conv2d(1, 1, 1), (1, 1, 2, 2)),
    (lambda: nnx.Sequential(nnx.Flatten(), nnx.Linear(4, 2)), (1, 1, 2, 2)),
], ids=["Linear", "Conv2d", "Sequential"])
def test_numpy_batch_on_another_backend(backend, make, shape):
    if backend.name == "numpy":
        pytest.skip("needs a non-NumPy backend")
    model = make()
    with pytest.raises(TypeError) as info:
        model(np.zeros(shape, dtype=np.float32))
    msg = str(info.value)
    assert "numpy" in msg and backend.name in msg
    assert "nnx.asarray" in msg and "model.to" in msg


def test_backend_batch_on_a_numpy_model(backend):
    if backend.name == "numpy":
        pytest.skip("needs a non-NumPy backend")
    with nnx.use_backend("numpy"):
        model = nnx.Sequential(nnx.Conv2d(1, 1, 1), nnx.Flatten(), nnx.Linear(4, 2))
    with pytest.raises(TypeError) as info:
        model(f32(backend, (1, 1, 2, 2)))
    msg = str(info.value)
    assert "Conv2d" in msg and f"{backend.name} array" in msg and "numpy arrays" in msg
    assert f"model.to({backend.name!r})" in msg


@pytest.mark.parametrize("make,shape", [
    (lambda: nnx.Linear(3, 2), (0, 3)), (lambda: nnx.Conv2d(1, 2, 3), (0, 1, 5, 5)),
    (lambda: nnx.MaxPool2d(2), (0, 1, 4, 4)), (lambda: nnx.ZeroPad2d(1), (0, 1, 4, 4)),
    (lambda: nnx.ReLU(), (0, 3)), (lambda: nnx.ReLU(), (0, 2, 3, 3)),
    (lambda: nnx.Flatten(), (0, 2, 3)),
], ids=["Linear", "Conv2d", "MaxPool2d", "ZeroPad2d", "ReLU", "ReLU-4d", "Flatten"])
def test_empty_batch_is_refused(backend, make, shape):
    """Empty batches are refused (as CrossEntropyLoss refuses them) with the layer and the
    shape named, not with a library's reshape error from deep inside."""
    layer = make()
    with pytest.raises(ValueError) as info:
        layer(f32(backend, shape))
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(type(layer).__name__ + "("), msg
    assert f"empty batch (input of shape {shape})" in msg, msg


def test_empty_batch_names_the_first_layer_of_a_model(backend):
    model = nnx.models.LeNet5()
    with pytest.raises(ValueError, match=r"^Conv2d\(1, 6.*empty batch \(input of shape "
                                         r"\(0, 1, 28, 28\)\)"):
        model(f32(backend, (0, 1, 28, 28)))
    with pytest.raises(ValueError, match=r"^Flatten\(\): got an empty batch.*\(0, 784\)"):
        nnx.models.MLP((784, 10))(f32(backend, (0, 784)))
    # ZeroPad2d's (H, W) and (C, H, W) inputs have no batch axis: an empty one is padded
    assert tuple(nnx.ZeroPad2d(1)(f32(backend, (0, 2))).shape) == (2, 4)
    assert tuple(nnx.ZeroPad2d(1)(f32(backend, (0, 2, 2))).shape) == (0, 4, 4)


def test_python_list_input(backend):
    with pytest.raises(TypeError, match="nnx.asarray"):
        nnx.Linear(2, 2)([[0.0, 1.0]])
    with pytest.raises(TypeError, match="nnx.asarray"):
        nnx.ReLU()([0.0, 1.0])


def test_input_on_another_device():
    d0, d1 = nt.make_backend("array_api_strict"), nt.make_backend("array_api_strict:device1")
    with nnx.use_backend(d0):
        layer = nnx.Linear(2, 2)
    with pytest.raises(TypeError, match="device1.*CPU_DEVICE|CPU_DEVICE.*device1"):
        layer(d1.from_numpy(np.zeros((1, 2), dtype=np.float32)))


@pytest.mark.parametrize("make", [
    lambda: nnx.Linear(2, 2), lambda: nnx.Conv2d(1, 1, 1), lambda: nnx.MaxPool2d(1),
    lambda: nnx.ReLU(), lambda: nnx.Flatten(), lambda: nnx.ZeroPad2d(1),
], ids=["Linear", "Conv2d", "MaxPool2d", "ReLU", "Flatten", "ZeroPad2d"])
def test_backward_before_forward(backend, make):
    layer = make()
    g = f32(backend, (1, 2) if isinstance(layer, nnx.Linear) else (1, 1, 3, 3))
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(g)


@pytest.mark.parametrize("make,x_shape,g_shape", [
    (lambda: nnx.Linear(3, 2), (4, 3), (1, 2)),
    (lambda: nnx.Linear(3, 2), (4, 3), (4, 3)),
    (lambda: nnx.Conv2d(3, 2, 3), (2, 3, 4, 4), (2, 2, 1, 1)),
    (lambda: nnx.MaxPool2d(2), (2, 3, 4, 4), (2, 3, 1, 1)),
    (lambda: nnx.MaxPool2d(2), (2, 3, 4, 4), (1, 1, 2, 2)),
    (lambda: nnx.ReLU(), (2, 3, 4), (1,)),
    (lambda: nnx.ReLU(), (2, 3, 4), (4,)),
    (lambda: nnx.Flatten(), (2, 3, 4, 4), (2, 8, 6)),
    (lambda: nnx.ZeroPad2d(1), (2, 3, 4, 4), (2, 3, 5, 5)),
], ids=["Linear-batch", "Linear-features", "Conv2d", "MaxPool2d", "MaxPool2d-broadcast",
        "ReLU-scalar", "ReLU-broadcast", "Flatten", "ZeroPad2d"])
def test_backward_with_a_wrong_gradient_shape(backend, make, x_shape, g_shape):
    # a broadcastable gradient must not give silently wrong gradients
    layer = make()
    layer(f32(backend, x_shape))
    with pytest.raises(ValueError) as info:
        layer.backward(f32(backend, g_shape))
    msg = str(info.value)
    assert type(layer).__name__ in msg and ", ".join(map(str, g_shape)) in msg, msg


@pytest.mark.parametrize("make,match", [
    (lambda: nnx.Conv2d(1, 1, 0), "kernel_size"),
    (lambda: nnx.Conv2d(1, 1, 3, stride=0), "stride"),
    (lambda: nnx.Conv2d(1, 1, 3, padding=-1), "padding"),
    (lambda: nnx.Conv2d(1, 1, (3, 3, 3)), "kernel_size"),
    (lambda: nnx.Conv2d(0, 1, 3), "in_channels"),
    (lambda: nnx.Linear(0, 2), "in_dim"),
    (lambda: nnx.Linear(2, 2, dtype="float16"), "dtype"),
    (lambda: nnx.MaxPool2d(3, padding=2), "padding"),
    (lambda: nnx.MaxPool2d((2, 4), padding=(1, 3)), "padding"),
    (lambda: nnx.MaxPool2d(2, stride=0), "stride"),
    (lambda: nnx.ZeroPad2d(-1), "pad"),
    (lambda: nnx.ZeroPad2d((1, 2)), "pad"),
    (lambda: nnx.Linear(2, 2, weight_decay=-0.1), "weight_decay"),
])
def test_constructor_validation(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_maxpool2d_padding_half_kernel_allowed(backend, dtype):
    pool = nnx.MaxPool2d((2, 4), padding=(1, 2))
    x = np.arange(12, dtype=np.float64).reshape(1, 1, 3, 4)
    y = pool(nnx.asarray(x, dtype=dtype))
    np.testing.assert_array_equal(nnx.to_numpy(y), ref_maxpool2d(x, (2, 4), None, (1, 2)))


def test_layers_work_under_every_backend_library(backend):
    # arrays of the active backend in, arrays of that library out, for every layer
    x = backend.from_numpy(np.ones((1, 1, 4, 4), dtype=np.float32))
    for layer in (nnx.Conv2d(1, 2, 3), nnx.MaxPool2d(2), nnx.ReLU(), nnx.ZeroPad2d(1),
                  nnx.Flatten()):
        y = layer(x)
        assert B.array_library(y) == backend.name
        nt.check_placement(y, x, "float32", repr(layer))


# ---------------------------------------------------------------------------
# The public helpers catch what they are there to catch
# ---------------------------------------------------------------------------


class _WrongBackward(nnx.Module):
    """y = 2x, but backward claims 3g."""

    def forward(self, x):
        return x * 2.0

    def backward(self, grad_out):
        return grad_out * 3.0


def test_gradcheck_catches_a_wrong_backward(backend, rng):
    with pytest.raises(AssertionError, match="gradcheck"):
        nt.gradcheck(_WrongBackward(), backend.from_numpy(rng.standard_normal((2, 3))))


def test_gradcheck_catches_a_wrong_parameter_gradient(backend, rng):
    layer = nnx.Linear(3, 2, dtype="float64")
    original = layer.backward

    def backward(g):
        dx = original(g)
        layer.bias.grad = layer.bias.grad * 1.01
        return dx

    layer.backward = backward
    with pytest.raises(AssertionError, match="bias"):
        nt.gradcheck(layer, rng.standard_normal((2, 3)))


def test_assert_matches_reference_catches_bad_results(backend, rng):
    x = rng.standard_normal((2, 3))
    with pytest.raises(AssertionError, match="dtype"):
        nt.assert_matches_reference(lambda a: nnx.get_backend().xp.astype(a, nnx.get_backend().xp.float64)
                                    if nt.dtype_of(a) == "float32" else a * 1.0,
                                    x, backend=backend, dtype="float32")

    def modifies(a):
        a *= 2.0
        return a * 1.0

    if backend.mutable_arrays:  # JAX's ``a *= 2.0`` makes a new array: nothing to catch
        with pytest.raises(AssertionError, match="input 0 was modified"):
            nt.assert_matches_reference(modifies, x, backend=backend, dtype="float32")

    def off_on_others(a):
        return a * (1.0 if nnx.get_backend().name == "numpy" and nt.dtype_of(a) == "float64"
                    else 1.001)

    with pytest.raises(AssertionError):
        nt.assert_matches_reference(off_on_others, x, backend=backend, dtype="float32")
    if backend.name != "numpy":
        with pytest.raises(AssertionError, match="numpy array"):
            nt.assert_matches_reference(lambda a: nnx.to_numpy(a) * 1.0, x, backend=backend,
                                        dtype="float64")
