"""Hypothesis property tests over random shapes, kernels, strides and paddings:
output shapes against the formula, and gradients against PyTorch
(float64) or, without torch, the NumPy float64 references of test_layers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_layers import ref_conv2d, ref_maxpool2d, ref_zeropad2d

import nnx
import nnx.testing as nt

SETTINGS = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the NumPy references stand in
    torch = None


def out_size(n, k, s, p):
    return (n + 2 * p - k) // s + 1


pairs = st.tuples(st.integers(1, 4), st.integers(1, 4))


@st.composite
def conv_case(draw):
    kh, kw = draw(pairs)
    sh, sw = draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))
    ph, pw = draw(st.tuples(st.integers(0, 2), st.integers(0, 2)))
    h = draw(st.integers(max(1, kh - 2 * ph), 8))
    w = draw(st.integers(max(1, kw - 2 * pw), 8))
    b, c, o = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**31 - 1))
    return b, c, o, h, w, (kh, kw), (sh, sw), (ph, pw), seed


@st.composite
def pool_case(draw):
    kh, kw = draw(pairs)
    sh, sw = draw(st.tuples(st.integers(1, 3), st.integers(1, 3)))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 8))
    w = draw(st.integers(max(1, kw - 2 * pw), 8))
    b, c = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ties = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    return b, c, h, w, (kh, kw), (sh, sw), (ph, pw), ties, seed


def numpy_backend():
    return nnx.use_backend("numpy")


@SETTINGS
@given(conv_case())
def test_conv2d_shapes_and_gradients(case):
    b, c, o, h, w, k, s, p, seed = case
    rng = np.random.default_rng(seed)
    with numpy_backend():
        layer = nnx.Conv2d(c, o, k, stride=s, padding=p, dtype="float64")
        x = rng.standard_normal((b, c, h, w))
        y = layer(x)
        shape = (b, o, out_size(h, k[0], s[0], p[0]), out_size(w, k[1], s[1], p[1]))
        assert tuple(y.shape) == shape == (b, o, *layer.output_shape(h, w))
        g = rng.standard_normal(shape)
        dx = layer.backward(g)
        assert dx.shape == x.shape
        wt, bias = np.array(layer.weight.data), np.array(layer.bias.data)
        if torch is not None:
            tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, wt, bias))
            ty = F.conv2d(tx, tw, tb, stride=s, padding=p)
            ty.backward(torch.tensor(g))
            expected = [t.detach().numpy() for t in (ty, tx.grad, tw.grad, tb.grad)]
        else:
            expected = ref_conv2d(x, wt, bias, s, p, g)
        for name, a, e in zip(["y", "dx", "dW", "db"], [y, dx, layer.weight.grad, layer.bias.grad],
                              expected):
            nt.assert_close(a, e, "float64", f"{name} for {case}")


@SETTINGS
@given(conv_case())
def test_conv2d_too_small_inputs_are_refused(case):
    b, c, o, _, _, (kh, kw), s, (ph, pw), _ = case
    h = kh - 2 * ph - 1  # one row short of the kernel after padding
    assume(h >= 1)
    layer = nnx.Conv2d(c, o, (kh, kw), stride=s, padding=(ph, pw), backend="numpy")
    with pytest.raises(ValueError, match="smaller than the kernel"):
        layer(np.zeros((b, c, h, kw + 2 * pw + 1), dtype=np.float32))


@SETTINGS
@given(pool_case())
def test_maxpool2d_shapes_and_gradients(case):
    b, c, h, w, k, s, p, ties, seed = case
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 2, size=(b, c, h, w)).astype(np.float64) if ties \
        else rng.standard_normal((b, c, h, w))
    with numpy_backend():
        layer = nnx.MaxPool2d(k, s, p)
        y = layer(x)
        shape = (b, c, out_size(h, k[0], s[0], p[0]), out_size(w, k[1], s[1], p[1]))
        assert tuple(y.shape) == shape
        g = rng.standard_normal(shape)
        dx = layer.backward(g)
    if torch is not None:
        tx = torch.tensor(x, requires_grad=True)
        ty = F.max_pool2d(tx, k, stride=s, padding=p)
        ty.backward(torch.tensor(g))
        expected = [ty.detach().numpy(), tx.grad.numpy()]
    else:
        expected = list(ref_maxpool2d(x, k, s, p, g))
    nt.assert_close(y, expected[0], "float64", f"y for {case}")
    nt.assert_close(dx, expected[1], "float64", f"dx for {case}")
    # every window's gradient lands somewhere inside the image
    np.testing.assert_allclose(dx.sum(), g.sum(), rtol=1e-12, atol=1e-12)


@SETTINGS
@given(st.tuples(*[st.integers(0, 3)] * 4), st.integers(1, 5), st.integers(1, 5),
       st.integers(0, 2**31 - 1))
def test_zeropad2d_shape_and_adjoint(pad, h, w, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 1, h, w))
    with numpy_backend():
        layer = nnx.ZeroPad2d(pad)
        y = layer(x)
        left, right, top, bottom = pad
        assert tuple(y.shape) == (2, 1, h + top + bottom, w + left + right)
        np.testing.assert_array_equal(y, ref_zeropad2d(x, pad))
        g = rng.standard_normal(y.shape)
        dx = layer.backward(g)
    # backward is the adjoint of forward: <pad(x), g> = <x, pad*(g)>
    np.testing.assert_allclose(np.sum(y * g), np.sum(x * dx), rtol=1e-12)
