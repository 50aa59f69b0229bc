"""AvgPool2d and AdaptiveAvgPool2d against a NumPy float64 reference
written here window by window, PyTorch's own functions with autograd, and central finite
differences, on every backend in float32 and float64 (library, device and dtype of every
result checked, inputs left unmodified)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnx
import nnx.testing as nt
from nnx.layers.pooling import AdaptiveAvgPool2d, AvgPool2d

# ---------------------------------------------------------------------------
# Independent NumPy float64 references
# ---------------------------------------------------------------------------


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def ref_avgpool2d(x, kernel, stride=None, padding=0, g=None):
    """Window by window over a zero-padded copy; the divisor is always kH·kW (PyTorch's
    count_include_pad=True); with ``g`` also dx, each window adding g/(kH·kW) to its
    elements."""
    kh, kw = _pair(kernel)
    sh, sw = _pair(kernel if stride is None else stride)
    ph, pw = _pair(padding)
    bsz, c, h, w = x.shape
    xpad = np.zeros((bsz, c, h + 2 * ph, w + 2 * pw))
    xpad[:, :, ph:ph + h, pw:pw + w] = x
    ho = (h + 2 * ph - kh) // sh + 1
    wo = (w + 2 * pw - kw) // sw + 1
    y = np.zeros((bsz, c, ho, wo))
    dxpad = np.zeros_like(xpad)
    for i in range(ho):
        for j in range(wo):
            win = xpad[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            y[:, :, i, j] = win.sum(axis=(2, 3)) / (kh * kw)
            if g is not None:
                dxpad[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw] += (
                    g[:, :, i, j][:, :, None, None] / (kh * kw))
    if g is None:
        return y
    return y, dxpad[:, :, ph:ph + h, pw:pw + w]


def ref_adaptive_avgpool2d(x, output_size, g=None):
    """PyTorch's definition for any size: output cell i averages input rows
    ⌊i·H/oh⌋ .. ⌈(i+1)·H/oh⌉ − 1 (likewise columns)."""
    bsz, c, h, w = x.shape
    oh, ow = _pair(output_size)
    oh, ow = (h if oh is None else oh), (w if ow is None else ow)
    y = np.zeros((bsz, c, oh, ow))
    dx = np.zeros_like(x)
    for i in range(oh):
        r0, r1 = (i * h) // oh, math.ceil((i + 1) * h / oh)
        for j in range(ow):
            c0, c1 = (j * w) // ow, math.ceil((j + 1) * w / ow)
            n = (r1 - r0) * (c1 - c0)
            y[:, :, i, j] = x[:, :, r0:r1, c0:c1].sum(axis=(2, 3)) / n
            if g is not None:
                dx[:, :, r0:r1, c0:c1] += g[:, :, i, j][:, :, None, None] / n
    return y if g is None else (y, dx)


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def pool_run(make):
    """fn(x, g) for assert_matches_reference: forward and backward of a fresh layer."""

    def fn(x, g):
        layer = make()
        y = layer(x)
        return y, layer.backward(g)

    return fn


def compare(actual, expected, dtype, names):
    assert len(actual) == len(expected)
    for a, e, name in zip(actual, expected, names):
        nt.assert_close(a, e, dtype, name)


def torch_pool(fn, x, rng):
    """(y, g, dx) of a torch function on float64 CPU tensors with autograd."""
    torch = pytest.importorskip("torch")
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ty = fn(tx)
    g = rng.standard_normal(tuple(ty.shape))
    ty.backward(torch.tensor(g))
    return ty.detach().numpy(), g, tx.grad.numpy()


def batch_innermost(backend, x):
    """``x`` as an NCHW view of (C, H, W, B) memory: the layout Conv2d hands on."""
    xp = backend.xp
    return xp.permute_dims(backend.from_numpy(np.ascontiguousarray(x.transpose(1, 2, 3, 0))),
                           (3, 0, 1, 2))


def f32(backend, shape, dtype=np.float32):
    return backend.from_numpy(np.zeros(shape, dtype=dtype))


# ---------------------------------------------------------------------------
# AvgPool2d
# ---------------------------------------------------------------------------

# (batch, channels, H, W, kernel, stride, padding)
AVG_CASES = [
    (2, 3, 4, 4, 2, None, 0),  # windows tile the image
    (2, 2, 5, 5, 2, None, 0),  # the last row and column fall outside every window
    (1, 2, 5, 5, 3, 2, 1),  # overlapping windows with padding
    (2, 1, 5, 6, (3, 2), 1, (1, 1)),  # non-square kernel, stride 1
    (2, 1, 4, 7, (2, 3), (1, 2), (1, 0)),  # non-square stride and padding
    (1, 2, 7, 5, 3, 3, 0),  # odd sizes
    (1, 2, 3, 3, 1, 2, 0),  # 1x1 kernel that skips rows and columns
    (2, 1, 2, 2, 2, 1, 1),  # padding exactly half the kernel: windows of one element
    (1, 2, 6, 6, 2, 3, 0),  # stride larger than the kernel: gaps get no gradient
    (2, 2, 4, 6, 2, 2, 1),  # padding with tiling windows
    (2, 3, 3, 5, (3, 5), 2, 0),  # one window covers the whole image (the global path)
]


def _avg_ids(case):
    b, c, h, w, k, s, p = case
    return f"b{b}c{c}_{h}x{w}_k{k}_s{s}_p{p}".replace(" ", "")


@pytest.mark.parametrize("case", AVG_CASES, ids=_avg_ids)
def test_avgpool2d_matches_reference(backend, dtype, rng, case):
    bsz, c, h, w, k, s, p = case
    x = rng.standard_normal((bsz, c, h, w))
    g = rng.standard_normal(ref_avgpool2d(x, k, s, p).shape)
    out = nt.assert_matches_reference(pool_run(lambda: AvgPool2d(k, s, p)), x, g,
                                      backend=backend, dtype=dtype)
    compare(out, ref_avgpool2d(x, k, s, p, g), dtype, ["y", "dx"])


@pytest.mark.parametrize("case", AVG_CASES, ids=_avg_ids)
def test_avgpool2d_equals_torch(backend, dtype, rng, case):
    torch = pytest.importorskip("torch")
    bsz, c, h, w, k, s, p = case
    x = rng.standard_normal((bsz, c, h, w))
    # PyTorch's defaults: count_include_pad=True, ceil_mode=False
    y_t, g, dx_t = torch_pool(lambda a: torch.nn.functional.avg_pool2d(a, k, s, p), x, rng)
    out = nt.assert_matches_reference(pool_run(lambda: AvgPool2d(k, s, p)), x, g,
                                      backend=backend, dtype=dtype)
    compare(out, [y_t, dx_t], dtype, ["y", "dx"])


@pytest.mark.parametrize("case", AVG_CASES[1:6] + AVG_CASES[7:], ids=_avg_ids)
def test_avgpool2d_gradcheck(backend, rng, case):
    bsz, c, h, w, k, s, p = case
    x = rng.standard_normal((bsz, c, h, w))
    nt.gradcheck(AvgPool2d(k, s, p), backend.from_numpy(x))


def test_avgpool2d_padding_counts_in_the_divisor(backend, dtype):
    # all ones, 3x3 windows, stride 1, padding 1: a corner window holds 4 ones of 9
    layer = AvgPool2d(3, stride=1, padding=1)
    y = nnx.to_numpy(layer(nnx.asarray(np.ones((1, 1, 3, 3)), dtype=dtype)))
    expected = np.array([[4, 6, 4], [6, 9, 6], [4, 6, 4]]) / 9.0
    nt.assert_close(y[0, 0], expected, dtype, "y")
    dx = nnx.to_numpy(layer.backward(nnx.asarray(np.ones((1, 1, 3, 3)), dtype=dtype)))
    nt.assert_close(dx[0, 0], expected, dtype, "dx")  # the same counts by symmetry


def test_avgpool2d_stride_defaults_to_kernel():
    assert AvgPool2d(3).stride == (3, 3)
    assert AvgPool2d((2, 3)).stride == (2, 3)
    assert AvgPool2d((2, 3), stride=1).stride == (1, 1)
    assert AvgPool2d(2).padding == (0, 0)
    assert repr(AvgPool2d(2, 1, 1)) == "AvgPool2d(kernel_size=(2, 2), stride=(1, 1), padding=(1, 1))"


@pytest.mark.parametrize("case", [AVG_CASES[0], AVG_CASES[2], AVG_CASES[4], AVG_CASES[10]],
                         ids=_avg_ids)
def test_avgpool2d_same_numbers_in_either_memory_layout(backend, dtype, rng, case):
    # an NCHW-contiguous input and an NCHW view of batch-innermost memory (what Conv2d
    # hands on) give the same output and input gradient, the inputs unmodified
    bsz, c, h, w, k, s, p = case
    x = rng.standard_normal((bsz, c, h, w)).astype(dtype)
    g = rng.standard_normal(ref_avgpool2d(x, k, s, p).shape).astype(dtype)
    results = []
    for to_backend in (backend.from_numpy, lambda a: batch_innermost(backend, a)):
        layer = AvgPool2d(k, s, p)
        xb, gb = to_backend(x), to_backend(g)
        y = layer(xb)
        dx = layer.backward(gb)
        nt.check_placement(y, xb, dtype, "y")
        nt.check_placement(dx, xb, dtype, "dx")
        results.append((nnx.to_numpy(y), nnx.to_numpy(dx)))
        np.testing.assert_array_equal(nnx.to_numpy(xb), x)  # input unmodified
        np.testing.assert_array_equal(nnx.to_numpy(gb), g)
    if (h, w) == _pair(k):  # the global path: a library's mean may sum in memory order
        nt.assert_close(results[1][0], results[0][0], dtype, "y")
    else:  # the same additions in the same order for every element
        np.testing.assert_array_equal(results[1][0], results[0][0])
    np.testing.assert_array_equal(results[1][1], results[0][1])


def test_avgpool2d_results_on_the_inputs_device(rng):
    if nt.backend_status("array_api_strict:device1") is not None:
        pytest.skip("array_api_strict:device1 unavailable")
    d1 = nt.make_backend("array_api_strict:device1")
    with nnx.use_backend(d1):
        for layer in (AvgPool2d(3, 2, 1), AvgPool2d(2), AvgPool2d((3, 4)), AdaptiveAvgPool2d(1),
                      AdaptiveAvgPool2d((3, 2))):
            x = d1.from_numpy(rng.standard_normal((2, 3, 3, 4)).astype(np.float32))
            y = layer(x)
            nt.check_placement(y, x, "float32", f"{layer!r} output")
            dx = layer.backward(d1.from_numpy(np.ones(tuple(y.shape), dtype=np.float32)))
            nt.check_placement(dx, x, "float32", f"{layer!r} input gradient")
            assert "device1" in str(dx.device)


@pytest.mark.parametrize("make", [lambda: AvgPool2d(2), lambda: AdaptiveAvgPool2d(1),
                                  lambda: AdaptiveAvgPool2d(2)], ids=["AvgPool2d", "global", "2x2"])
def test_eval_mode_keeps_nothing_for_backward(backend, make):
    layer = make()
    x = f32(backend, (2, 1, 4, 4))
    layer.eval()
    y = layer(x)
    with pytest.raises(RuntimeError, match=r"forward\(\) in training mode"):
        layer.backward(backend.from_numpy(np.ones(tuple(y.shape), dtype=np.float32)))
    layer.train()
    y = layer(x)
    assert tuple(layer.backward(backend.from_numpy(np.ones(tuple(y.shape), np.float32))).shape) \
        == (2, 1, 4, 4)


@pytest.mark.parametrize("make,match", [
    (lambda: AvgPool2d(3, padding=2), r"AvgPool2d: padding 2 must be at most half of kernel_size 3"),
    (lambda: AvgPool2d((2, 4), padding=(1, 3)), r"padding \(1, 3\).*kernel_size \(2, 4\)"),
    (lambda: AvgPool2d(0), r"AvgPool2d: kernel_size must be >= 1, got 0"),
    (lambda: AvgPool2d(2, stride=0), r"AvgPool2d: stride must be >= 1, got 0"),
    (lambda: AvgPool2d(2, padding=-1), r"AvgPool2d: padding must be >= 0, got -1"),
    (lambda: AvgPool2d((2, 2, 2)), r"AvgPool2d: kernel_size must be an int or a pair"),
    (lambda: AvgPool2d(2.0), r"AvgPool2d: kernel_size must be an int or a pair"),
    (lambda: AvgPool2d(True), r"AvgPool2d: kernel_size must be an int or a pair"),
    (lambda: AdaptiveAvgPool2d(0), r"AdaptiveAvgPool2d: output_size must be.*got 0"),
    (lambda: AdaptiveAvgPool2d((2, 0)), r"AdaptiveAvgPool2d: output_size.*got \(2, 0\)"),
    (lambda: AdaptiveAvgPool2d((1, 2, 3)), r"AdaptiveAvgPool2d: output_size.*\(1, 2, 3\)"),
    (lambda: AdaptiveAvgPool2d(1.5), r"AdaptiveAvgPool2d: output_size.*got 1.5"),
    (lambda: AdaptiveAvgPool2d(None), r"AdaptiveAvgPool2d: output_size.*got None"),
    (lambda: AdaptiveAvgPool2d("1"), r"AdaptiveAvgPool2d: output_size.*got '1'"),
], ids=["pad-half", "pad-pair", "kernel0", "stride0", "pad-neg", "kernel3", "kernel-float",
        "kernel-bool", "out0", "out-pair0", "out3", "out-float", "out-None", "out-str"])
def test_constructor_validation(make, match):
    with pytest.raises(ValueError, match=match) as info:
        make()
    assert "\n" not in str(info.value)


def test_padding_rule_is_pytorchs():
    torch = pytest.importorskip("torch")
    x = torch.zeros((1, 1, 6, 6), dtype=torch.float64)
    for k, p in [(3, 2), ((2, 4), (1, 3))]:
        with pytest.raises(RuntimeError, match="half"):
            torch.nn.functional.avg_pool2d(x, k, padding=p)
        with pytest.raises(ValueError, match="half"):
            AvgPool2d(k, padding=p)
    for k, p in [(2, 1), ((2, 4), (1, 2))]:  # exactly half is allowed by both
        torch.nn.functional.avg_pool2d(x, k, padding=p)
        AvgPool2d(k, padding=p)


def test_avgpool2d_input_errors(backend):
    pool = AvgPool2d(3, padding=(0, 1))
    with pytest.raises(ValueError, match=r"^AvgPool2d\(kernel_size=\(3, 3\).*input of shape "
                                         r"\(1, 1, 2, 5\) is 2x7 after padding, smaller than "
                                         r"the kernel 3x3$"):
        pool(f32(backend, (1, 1, 2, 5)))
    with pytest.raises(ValueError, match=r"AvgPool2d.*\(batch, channels, H, W\).*\(4, 4\)"):
        pool(f32(backend, (4, 4)))
    with pytest.raises(TypeError, match=r"AvgPool2d.*float32 or float64, got int32"):
        pool(backend.from_numpy(np.zeros((1, 1, 3, 3), dtype=np.int32)))
    with pytest.raises(ValueError, match=r"^AvgPool2d.*empty batch \(input of shape \(0, 1, 4, 4\)\)"):
        pool(f32(backend, (0, 1, 4, 4)))
    with pytest.raises(TypeError, match="nnx.asarray"):
        pool([[[[0.0]]]])


def test_adaptive_input_errors(backend):
    pool = AdaptiveAvgPool2d(1)
    with pytest.raises(ValueError, match=r"AdaptiveAvgPool2d.*\(batch, channels, H, W\).*\(2, 4, 4\)"):
        pool(f32(backend, (2, 4, 4)))
    with pytest.raises(TypeError, match=r"AdaptiveAvgPool2d.*float32 or float64, got int32"):
        pool(backend.from_numpy(np.zeros((1, 1, 3, 3), dtype=np.int32)))
    with pytest.raises(ValueError, match=r"^AdaptiveAvgPool2d.*empty batch"):
        pool(f32(backend, (0, 1, 4, 4)))


@pytest.mark.parametrize("make,x_shape,g_shape", [
    (lambda: AvgPool2d(2), (2, 3, 4, 4), (2, 3, 1, 1)),
    (lambda: AvgPool2d(2), (2, 3, 4, 4), (1, 1, 2, 2)),  # broadcastable: must not pass
    (lambda: AvgPool2d((2, 2), 1, 1), (2, 3, 4, 4), (2, 3, 4, 4)),
    (lambda: AdaptiveAvgPool2d(1), (2, 3, 4, 4), (2, 3, 2, 2)),
    (lambda: AdaptiveAvgPool2d(1), (2, 3, 4, 4), (1, 3, 1, 1)),
    (lambda: AdaptiveAvgPool2d((2, 1)), (2, 3, 4, 4), (2, 3, 2)),
], ids=["avg", "avg-broadcast", "avg-padded", "global", "global-broadcast", "adaptive-rank"])
def test_backward_with_a_wrong_gradient_shape(backend, make, x_shape, g_shape):
    layer = make()
    layer(f32(backend, x_shape))
    with pytest.raises(ValueError) as info:
        layer.backward(f32(backend, g_shape))
    msg = str(info.value)
    assert msg.startswith(type(layer).__name__ + "(") and "\n" not in msg, msg
    assert str(g_shape) in msg, msg


@pytest.mark.parametrize("make", [lambda: AvgPool2d(2), lambda: AdaptiveAvgPool2d(1)],
                         ids=["AvgPool2d", "AdaptiveAvgPool2d"])
def test_backward_before_forward(backend, make):
    layer = make()
    with pytest.raises(RuntimeError, match=rf"^{type(layer).__name__}\(.*forward\(\) in training"):
        layer.backward(f32(backend, (1, 1, 1, 1)))


# ---------------------------------------------------------------------------
# AdaptiveAvgPool2d
# ---------------------------------------------------------------------------

# (input shape, output_size)
ADAPTIVE_CASES = [
    ((2, 3, 8, 8), 1),  # global average pooling
    ((2, 3, 7, 5), (1, 1)),  # global, odd sizes
    ((2, 2, 6, 4), (3, 2)),
    ((1, 2, 8, 6), (4, None)),  # None keeps that input size
    ((2, 2, 5, 7), (None, 1)),
    ((1, 2, 4, 4), 4),  # output size = input size: identity
    ((2, 3, 6, 6), (2, 3)),
    ((3, 2, 1, 1), 1),
]


def _adaptive_ids(case):
    shape, size = case
    return f"{'x'.join(map(str, shape))}_to_{size}".replace(" ", "")


@pytest.mark.parametrize("case", ADAPTIVE_CASES, ids=_adaptive_ids)
def test_adaptive_matches_reference(backend, dtype, rng, case):
    shape, size = case
    x = rng.standard_normal(shape)
    g = rng.standard_normal(ref_adaptive_avgpool2d(x, size).shape)
    out = nt.assert_matches_reference(pool_run(lambda: AdaptiveAvgPool2d(size)), x, g,
                                      backend=backend, dtype=dtype)
    compare(out, ref_adaptive_avgpool2d(x, size, g), dtype, ["y", "dx"])
    if _pair(size) == (1, 1):  # global pooling is the mean over H and W
        nt.assert_close(out[0], x.mean(axis=(2, 3), keepdims=True), dtype, "mean")


@pytest.mark.parametrize("case", ADAPTIVE_CASES, ids=_adaptive_ids)
def test_adaptive_equals_torch(backend, dtype, rng, case):
    torch = pytest.importorskip("torch")
    shape, size = case
    x = rng.standard_normal(shape)
    y_t, g, dx_t = torch_pool(lambda a: torch.nn.functional.adaptive_avg_pool2d(a, size), x, rng)
    out = nt.assert_matches_reference(pool_run(lambda: AdaptiveAvgPool2d(size)), x, g,
                                      backend=backend, dtype=dtype)
    compare(out, [y_t, dx_t], dtype, ["y", "dx"])


@pytest.mark.parametrize("case", [c for c in ADAPTIVE_CASES if c[1] not in (1, (1, 1))],
                         ids=_adaptive_ids)
def test_adaptive_equals_avgpool_with_kernel_input_over_output(backend, dtype, rng, case):
    shape, size = case
    oh, ow = _pair(size)
    kernel = (shape[2] // (oh or shape[2]), shape[3] // (ow or shape[3]))
    x = backend.from_numpy(rng.standard_normal(shape).astype(dtype))
    a, b = AdaptiveAvgPool2d(size), AvgPool2d(kernel, stride=kernel)
    ya, yb = a(x), b(x)
    g = backend.from_numpy(rng.standard_normal(tuple(ya.shape)).astype(dtype))
    np.testing.assert_array_equal(nnx.to_numpy(ya), nnx.to_numpy(yb))
    np.testing.assert_array_equal(nnx.to_numpy(a.backward(g)), nnx.to_numpy(b.backward(g)))


@pytest.mark.parametrize("case", ADAPTIVE_CASES[:5], ids=_adaptive_ids)
def test_adaptive_gradcheck(backend, rng, case):
    shape, size = case
    x = rng.standard_normal((1,) + shape[1:])
    nt.gradcheck(AdaptiveAvgPool2d(size), backend.from_numpy(x))


def test_global_pooling_gradient_is_a_writable_array(backend, dtype):
    # each element of dx is its own memory (not a broadcast view of G): writing one
    # changes no other, and the library allows the write
    layer = AdaptiveAvgPool2d(1)
    layer(backend.from_numpy(np.zeros((2, 3, 4, 5), dtype=dtype)))
    dx = layer.backward(backend.from_numpy(np.full((2, 3, 1, 1), 20.0, dtype=dtype)))
    dx = nnx._inplace.set_at(dx, (0, 0, 0, 0), 7.0)  # in place where arrays are mutable
    host = nnx.to_numpy(dx)
    assert host[0, 0, 0, 0] == 7.0
    assert np.count_nonzero(host == 1.0) == host.size - 1


@pytest.mark.parametrize("shape,size,sizes", [
    ((2, 3, 8, 7), 3, "8x7.*output size 3x3"),
    ((2, 3, 8, 8), (3, 4), "8x8.*output size 3x4"),
    ((2, 3, 6, 6), (4, None), "6x6.*output size 4x6"),
    ((1, 1, 2, 2), 4, "2x2.*output size 4x4"),  # larger than the input
])
def test_adaptive_size_that_does_not_divide_the_input(backend, shape, size, sizes):
    layer = AdaptiveAvgPool2d(size)
    with pytest.raises(ValueError) as info:
        layer(f32(backend, shape))
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("AdaptiveAvgPool2d(output_size="), msg
    assert f"input of shape {shape}" in msg, msg
    assert __import__("re").search(sizes, msg), msg
    assert "divide" in msg


def test_adaptive_repr_and_output_size():
    assert AdaptiveAvgPool2d(1).output_size == (1, 1)
    assert AdaptiveAvgPool2d((2, None)).output_size == (2, None)
    assert AdaptiveAvgPool2d([3, 2]).output_size == (3, 2)
    assert repr(AdaptiveAvgPool2d(1)) == "AdaptiveAvgPool2d(output_size=(1, 1))"


def test_pools_in_a_sequential_with_flatten(backend, dtype, rng):
    # conv -> avg pool -> global pool -> flatten -> linear: the layers hand each other
    # arrays in their own layouts; the input gradient equals a float64 NumPy run's
    def run(x, g):
        model = nnx.Sequential(nnx.Conv2d(2, 4, 3, padding=1, dtype=nt.dtype_of(x)), nnx.ReLU(),
                               AvgPool2d(2), AdaptiveAvgPool2d(1), nnx.Flatten(),
                               nnx.Linear(4, 3, dtype=nt.dtype_of(x)))
        y = model(x)
        dx = model.backward(g)
        return (y, dx, *[p.grad for p in model.parameters()])

    x, g = rng.standard_normal((3, 2, 6, 6)), rng.standard_normal((3, 3))
    nt.assert_matches_reference(run, x, g, backend=backend, dtype=dtype)
