"""LeakyReLU, Sigmoid, Tanh, GELU (both forms) and the Array API erf / erfc.

Each layer runs on every backend in float32 and float64 against nnx's own NumPy float64
run (library, device, dtype kept; inputs unmodified: ``nt.assert_matches_reference``),
then against references written here from the ``math`` module (``math.erf``,
``math.exp``, ``math.tanh``, element by element in float64) and against PyTorch's own
functions and autograd; float64 central finite differences on every backend; extreme
inputs; the missing-cache and argument errors. erf is checked on dense grids from
1e-300 to the saturated tails against ``math.erf`` (float64 within 2 ulps, float32
within 2 ulps of the correctly rounded value) and erfc against mpmath.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import nnx
import nnx.testing as nt
from nnx.functional.activation import erf, erfc
from nnx.layers.activation import GELU, LeakyReLU, Sigmoid, Tanh

# ---------------------------------------------------------------------------
# Independent float64 references, element by element with the math module
# ---------------------------------------------------------------------------

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _elementwise(f, x):
    return np.array([f(float(v)) for v in np.asarray(x, dtype=np.float64).reshape(-1)]
                    ).reshape(np.shape(x))


def _leaky(slope):
    return (lambda v: v if v > 0 else slope * v), (lambda v: 1.0 if v > 0 else slope)


def _sigmoid(v):
    # 1/(1 + e^−v), written with e^v for v < 0 so that math.exp cannot overflow
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


def _sigmoid_grad(v):
    return _sigmoid(v) * _sigmoid(-v)


def _sech2(v):
    # 1/cosh²(v) from e^|v| (math.cosh(v)² would overflow from |v| ≈ 355 on)
    a = abs(v)
    return (2.0 / (math.exp(a) + math.exp(-a))) ** 2 if a < 700 else 0.0


def _phi_cdf(v):
    # Φ(v) = (1 + erf(v/√2))/2 = erfc(−v/√2)/2; the erfc form keeps Φ's relative accuracy for v < 0
    return 0.5 * math.erfc(-v / math.sqrt(2.0))


def _gelu_none(v):
    return v * _phi_cdf(v)


def _gelu_none_grad(v):
    return _phi_cdf(v) + v * math.exp(-0.5 * v * v) / math.sqrt(2.0 * math.pi)


def _gelu_u(v):
    return _SQRT_2_OVER_PI * (v + 0.044715 * v ** 3)


def _gelu_tanh(v):
    # x/2·(1 + tanh u) = x·σ(2u)
    return v * _sigmoid(2.0 * _gelu_u(v))


def _gelu_tanh_grad(v):
    return (_sigmoid(2.0 * _gelu_u(v))
            + 0.5 * v * _sech2(_gelu_u(v)) * _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * v * v))


# name -> (constructor, y(v), dy/dx(v), torch function of (torch, tensor))
CASES = {
    "LeakyReLU": (lambda: LeakyReLU(), *_leaky(0.01),
                  lambda torch, t: torch.nn.functional.leaky_relu(t)),
    "LeakyReLU-0.2": (lambda: LeakyReLU(0.2), *_leaky(0.2),
                      lambda torch, t: torch.nn.functional.leaky_relu(t, 0.2)),
    "LeakyReLU-neg": (lambda: LeakyReLU(negative_slope=-1.5), *_leaky(-1.5),
                      lambda torch, t: torch.nn.functional.leaky_relu(t, -1.5)),
    "Sigmoid": (Sigmoid, _sigmoid, _sigmoid_grad, lambda torch, t: torch.sigmoid(t)),
    "Tanh": (Tanh, math.tanh, _sech2, lambda torch, t: torch.tanh(t)),
    "GELU": (lambda: GELU(), _gelu_none, _gelu_none_grad,
             lambda torch, t: torch.nn.functional.gelu(t)),
    "GELU-tanh": (lambda: GELU(approximate="tanh"), _gelu_tanh, _gelu_tanh_grad,
                  lambda torch, t: torch.nn.functional.gelu(t, approximate="tanh")),
}
NAMES = list(CASES)


def torch_or_skip():
    return pytest.importorskip("torch", reason="torch not installed")


def run_layer(make):
    """fn(x, g) for assert_matches_reference: forward then backward of a fresh layer."""

    def fn(x, g):
        layer = make()
        y = layer(x)
        return y, layer.backward(g)

    return fn


def sample(rng, shape, scale=3.0):
    """Random values plus exact zeros and values of both signs near the kink of LeakyReLU."""
    x = rng.standard_normal(shape) * scale
    flat = x.reshape(-1)
    flat[:6] = [0.0, -0.0, 1e-3, -1e-3, 7.5, -7.5]
    return x


# ---------------------------------------------------------------------------
# Values and gradients on every backend, against the math-module references
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 2, 2), (7,)])
def test_matches_reference(backend, dtype, rng, name, shape):
    make, f, df, _ = CASES[name]
    x = sample(rng, shape)
    g = rng.standard_normal(shape)
    y, dx = nt.assert_matches_reference(run_layer(make), x, g, backend=backend, dtype=dtype)
    xd = x.astype(dtype).astype(np.float64)  # the reference at the input the backend saw
    nt.assert_close(y, _elementwise(f, xd), dtype, f"{name} y")
    nt.assert_close(dx, g.astype(dtype).astype(np.float64) * _elementwise(df, xd), dtype,
                    f"{name} dx")


@pytest.mark.parametrize("name", NAMES)
def test_rank0_input(backend, dtype, name):
    # built with xp.asarray: the strict backend's from_numpy turns a 0-d array into shape (1,)
    make, f, df, _ = CASES[name]
    xp = backend.xp
    x = xp.asarray(-0.75, dtype=getattr(xp, dtype))
    g = xp.asarray(2.0, dtype=getattr(xp, dtype))
    layer = make()
    y = layer(x)
    dx = layer.backward(g)
    for out, ref, what in ((y, f(-0.75), "y"), (dx, 2.0 * df(-0.75), "dx")):
        assert tuple(out.shape) == (), (what, out.shape)
        nt.check_placement(out, x, dtype, f"{name} {what}")
        nt.assert_close(out, ref, dtype, f"{name} {what}")


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck(backend, rng, name):
    x = rng.standard_normal((3, 4)) * 2.5
    x = np.sign(x) * (0.05 + np.abs(x))  # LeakyReLU: finite differences off the kink
    nt.gradcheck(CASES[name][0](), backend.from_numpy(x))


@pytest.mark.parametrize("name", NAMES)
def test_equals_torch(backend, dtype, rng, name):
    torch = torch_or_skip()
    make, _, _, tf = CASES[name]
    x = sample(rng, (3, 4, 5), scale=4.0)
    x.reshape(-1)[6:10] = [1e4, -1e4, 30.0, -30.0]
    g = rng.standard_normal(x.shape)
    tdt = getattr(torch, dtype)
    tx = torch.tensor(x, dtype=tdt, requires_grad=True)
    ty = tf(torch, tx)
    ty.backward(torch.tensor(g, dtype=tdt))
    y, dx = nt.assert_matches_reference(run_layer(make), x, g, backend=backend, dtype=dtype)
    nt.assert_close(y, ty.detach().double().numpy(), dtype, f"{name} y vs torch")
    nt.assert_close(dx, tx.grad.double().numpy(), dtype, f"{name} dx vs torch")


def test_layers_are_modules_with_pytorch_reprs():
    assert repr(LeakyReLU()) == "LeakyReLU(negative_slope=0.01)"
    assert repr(LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"
    assert repr(Sigmoid()) == "Sigmoid()" and repr(Tanh()) == "Tanh()"
    assert repr(GELU()) == "GELU(approximate='none')"
    assert repr(GELU("tanh")) == "GELU(approximate='tanh')"
    for layer in (LeakyReLU(), Sigmoid(), Tanh(), GELU()):
        assert isinstance(layer, nnx.Module) and layer.parameters() == []


# ---------------------------------------------------------------------------
# Extreme inputs
# ---------------------------------------------------------------------------

EXTREME = np.array([1e4, -1e4, 0.0, -0.0, 1e-30, -1e-30, 1e-300, 500.0, -500.0, 80.0, -80.0])


@pytest.mark.parametrize("name", NAMES)
def test_extreme_inputs_are_finite_and_correct(backend, dtype, name):
    make, f, df, _ = CASES[name]
    x = EXTREME.astype(dtype)  # 1e-300 becomes 0 in float32
    g = np.ones_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow / invalid-value warnings anywhere
        y, dx = run_layer(make)(backend.from_numpy(x), backend.from_numpy(g))
    y, dx = nnx.to_numpy(y), nnx.to_numpy(dx)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx)), (y, dx)
    xd = x.astype(np.float64)
    nt.assert_close(y, _elementwise(f, xd), dtype, f"{name} y")
    nt.assert_close(dx, _elementwise(df, xd), dtype, f"{name} dx")


def test_sigmoid_limits_are_exact(backend, dtype):
    x = backend.from_numpy(np.array([1e4, -1e4, 0.0, np.inf, -np.inf], dtype=dtype))
    layer = Sigmoid()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = nnx.to_numpy(layer(x))
        d = nnx.to_numpy(layer.backward(backend.from_numpy(np.ones(5, dtype=dtype))))
    np.testing.assert_array_equal(y, [1.0, 0.0, 0.5, 1.0, 0.0])
    np.testing.assert_array_equal(d, [0.0, 0.0, 0.25, 0.0, 0.0])


@pytest.mark.parametrize("name,xs", [
    ("Sigmoid", [-30.0, -80.0, 30.0, -700.0]),
    ("Tanh", [15.0, -40.0, 300.0]),
    ("GELU", [-6.0, -12.0, -30.0]),
    ("GELU-tanh", [-5.0, -10.0, -14.0]),
])
def test_tails_are_accurate_in_relative_terms(backend, dtype, name, xs):
    """Where y or dy/dx is tiny (but representable) it is still right to the dtype's relative
    tolerance: no 1 − (1 − tiny) cancellation (atol 0: relative error only)."""
    make, f, df, _ = CASES[name]
    x = np.array(xs)
    ref_y, ref_d = _elementwise(f, x), _elementwise(df, x)
    tiny = np.finfo(dtype).tiny
    keep = (np.abs(ref_y) > tiny) | (np.abs(ref_d) > tiny)
    x, ref_y, ref_d = x[keep], ref_y[keep], ref_d[keep]
    layer = make()
    y = layer(backend.from_numpy(x.astype(dtype)))
    d = layer.backward(backend.from_numpy(np.ones(x.shape, dtype=dtype)))
    rtol = nt.TOLERANCES[dtype][0]
    for got, ref, what in ((y, ref_y, "y"), (d, ref_d, "dy/dx")):
        ok = np.abs(ref) > tiny
        nt.assert_close(nnx.to_numpy(got)[ok], ref[ok], dtype, f"{name} {what}", rtol=rtol, atol=0.0)


# ---------------------------------------------------------------------------
# Placement, inputs, caches, errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_output_and_gradient_stay_on_device1(dtype, rng, name):
    be = nt.make_backend("array_api_strict:device1")
    x = be.from_numpy(rng.standard_normal((2, 3)).astype(dtype))
    g = be.from_numpy(rng.standard_normal((2, 3)).astype(dtype))
    with nnx.use_backend(be):
        layer = CASES[name][0]()
        y = layer(x)
        dx = layer.backward(g)
    nt.check_placement(y, x, dtype, f"{name} y")
    nt.check_placement(dx, x, dtype, f"{name} dx")
    assert "device1" in str(y.device) and "device1" in str(dx.device)


@pytest.mark.parametrize("name", NAMES)
def test_inputs_are_not_modified(backend, rng, name):
    x_host = sample(rng, (3, 4))
    g_host = rng.standard_normal((3, 4))
    x, g = backend.from_numpy(x_host), backend.from_numpy(g_host)
    layer = CASES[name][0]()
    layer(x)
    layer.backward(g)
    np.testing.assert_array_equal(nnx.to_numpy(x), x_host)
    np.testing.assert_array_equal(nnx.to_numpy(g), g_host)


@pytest.mark.parametrize("name", NAMES)
def test_backward_needs_a_training_forward(backend, name):
    x = backend.from_numpy(np.ones((2, 3), dtype=np.float32))
    layer = CASES[name][0]()
    with pytest.raises(RuntimeError, match=r"backward\(\) needs a forward\(\) in training mode"):
        layer.backward(x)
    layer.eval()
    layer(x)  # eval mode keeps nothing
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(x)
    layer.train()
    layer(x)
    layer.backward(x)
    layer.eval()  # drops what the training forward kept
    assert all(v is None for k, v in vars(layer).items() if k.startswith("_cache"))
    with pytest.raises(RuntimeError, match="eval mode keeps no activations"):
        layer.backward(x)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_gradient_shape_and_input_errors(backend, name):
    layer = CASES[name][0]()
    layer(backend.from_numpy(np.ones((2, 3, 4), dtype=np.float32)))
    for shape in [(4,), (1,), (2, 3)]:
        with pytest.raises(ValueError) as info:
            layer.backward(backend.from_numpy(np.ones(shape, dtype=np.float32)))
        msg = str(info.value)
        assert msg.startswith(type(layer).__name__ + "(") and "\n" not in msg, msg
    with pytest.raises(TypeError, match=rf"^{type(layer).__name__}\(.*float32 or float64, got int32"):
        layer(backend.from_numpy(np.ones((2, 3), dtype=np.int32)))
    with pytest.raises(ValueError, match=r"empty batch \(input of shape \(0, 3\)\)"):
        layer(backend.from_numpy(np.ones((0, 3), dtype=np.float32)))
    with pytest.raises(TypeError, match="nnx.asarray"):
        layer([0.0, 1.0])


@pytest.mark.parametrize("make,match", [
    (lambda: GELU("exact"), r"^GELU: approximate must be 'none' or 'tanh', got 'exact'$"),
    (lambda: GELU("Tanh"), r"^GELU: approximate.*got 'Tanh'$"),
    (lambda: GELU(None), r"^GELU: approximate.*got None$"),
    (lambda: GELU(approximate=True), r"^GELU: approximate.*got True$"),
    (lambda: LeakyReLU("0.1"), r"^LeakyReLU: negative_slope must be a finite real number, got '0.1'$"),
    (lambda: LeakyReLU(None), r"^LeakyReLU: negative_slope.*got None$"),
    (lambda: LeakyReLU(True), r"^LeakyReLU: negative_slope.*got True$"),
    (lambda: LeakyReLU(float("nan")), r"^LeakyReLU: negative_slope.*got nan$"),
    (lambda: LeakyReLU(float("inf")), r"^LeakyReLU: negative_slope.*got inf$"),
    (lambda: LeakyReLU([0.1]), r"^LeakyReLU: negative_slope.*got \[0.1\]$"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_leaky_relu_accepts_ints_and_numpy_floats():
    assert LeakyReLU(0).negative_slope == 0.0
    assert LeakyReLU(np.float32(0.25)).negative_slope == 0.25


def test_in_a_sequential_with_linear(backend, rng):
    """Every new layer between Linear layers: the chain's gradient by finite differences."""
    model = nnx.Sequential(nnx.Linear(4, 5, dtype="float64"), GELU(), nnx.Linear(5, 5, dtype="float64"),
                           Tanh(), nnx.Linear(5, 3, dtype="float64"), Sigmoid(),
                           nnx.Linear(3, 3, dtype="float64"), GELU("tanh"),
                           nnx.Linear(3, 2, dtype="float64"), LeakyReLU(0.3))
    nt.gradcheck(model, rng.standard_normal((3, 4)))


# ---------------------------------------------------------------------------
# erf / erfc
# ---------------------------------------------------------------------------


def _erf_grid():
    pos = np.concatenate([
        np.logspace(-300, -8, 600),
        np.linspace(0.0, 1e-3, 200),
        np.linspace(0.0, 7.0, 14001),
        np.linspace(7.0, 40.0, 200),
        np.logspace(1.7, 300, 60),
        # the edges of the approximation's intervals and their neighbours below
        [0.84375, 1.25, 1 / 0.35, 6.0, 28.0],
        np.nextafter([0.84375, 1.25, 1 / 0.35, 6.0, 28.0], 0.0),
    ])
    return np.concatenate([pos, -pos])


ERF_GRID = _erf_grid()
ERF_REF = np.array([math.erf(v) for v in ERF_GRID])


def _ulps(got, ref, dtype):
    """|got − ref| in units of ref's spacing in ``dtype`` (ref rounded to dtype)."""
    ref_d = np.asarray(ref).astype(dtype)
    return np.abs(np.asarray(got, dtype=np.float64) - ref_d.astype(np.float64)) / np.spacing(
        np.abs(ref_d)).astype(np.float64)


def _keeps_subnormals(backend, dtype) -> bool:
    """False where the library computes with subnormals flushed to zero (XLA on the CPU:
    JAX), which no formula can undo; there subnormal inputs are checked to give ±0."""
    tiny = np.array([np.finfo(dtype).smallest_subnormal * 4], dtype=dtype)
    return bool(nnx.to_numpy(backend.from_numpy(tiny) * 1.0)[0] != 0)


def test_erf_accuracy(backend, dtype):
    """float64: within 2 ulps of math.erf (relative error <= 4.5e-16, far inside 1e-13);
    float32: within 2 ulps of the correctly rounded value (math.erf in float64, rounded)."""
    if dtype == "float64":
        x, ref = ERF_GRID, ERF_REF
    else:
        x = ERF_GRID[np.abs(ERF_GRID) < 1e38].astype(np.float32)
        x = np.concatenate([x, np.logspace(-45, -37, 100).astype(np.float32)])  # subnormals
        ref = np.array([math.erf(float(v)) for v in x])
    before = x.copy()
    xb = backend.from_numpy(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = erf(backend.xp, xb)
    nt.check_placement(out, xb, dtype, "erf")
    np.testing.assert_array_equal(nnx.to_numpy(xb), before)
    got = nnx.to_numpy(out)
    if not _keeps_subnormals(backend, dtype):
        normal = np.abs(x.astype(np.float64)) >= np.finfo(dtype).tiny
        assert np.all(got[~normal & (x != 0)] == 0.0), "flushed subnormals give zero"
        x, got, ref = x[normal], got[normal], ref[normal]
    ulps = _ulps(got, ref, dtype)
    worst = int(np.argmax(ulps))
    assert ulps[worst] <= 2.0, f"erf({x[worst]!r}) = {got[worst]!r}, reference {ref[worst]!r}"
    if dtype == "float64":
        nz = ref != 0
        assert np.max(np.abs(got[nz] - ref[nz]) / np.abs(ref[nz])) <= 1e-13


def test_erf_symmetry_and_special_values(backend, dtype):
    x = ERF_GRID[ERF_GRID > 0]
    x = x[np.abs(x) < np.finfo(dtype).max].astype(dtype)
    xp = backend.xp
    pos = nnx.to_numpy(erf(xp, backend.from_numpy(x)))
    neg = nnx.to_numpy(erf(xp, backend.from_numpy(-x)))
    np.testing.assert_array_equal(neg, -pos)  # odd, exactly
    assert np.all(np.abs(pos) <= 1.0) and np.all(np.diff(pos[np.argsort(x)]) >= 0)  # monotone
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 6.0, -6.0, 30.0, -1e30], dtype=dtype)
    out = nnx.to_numpy(erf(xp, backend.from_numpy(special)))
    assert out[0] == 0.0 and not np.signbit(out[0]) and out[1] == 0.0
    np.testing.assert_array_equal(out[2:4], [1.0, -1.0])
    assert np.isnan(out[4])
    np.testing.assert_array_equal(out[5:], [1.0, -1.0, 1.0, -1.0])  # saturated
    tiny = np.array([1e-300 if dtype == "float64" else 1e-40], dtype=dtype)  # float32: subnormal
    t = nnx.to_numpy(erf(xp, backend.from_numpy(tiny)))
    if dtype == "float32" and not _keeps_subnormals(backend, dtype):
        assert t[0] == 0.0  # computed with subnormals flushed to zero
        return
    nt.assert_close(t, 2 / math.sqrt(math.pi) * tiny.astype(np.float64), dtype, "erf(tiny)",
                    atol=0.0)


def test_erfc_accuracy_against_mpmath(backend, dtype):
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    x = np.concatenate([np.linspace(-6.0, 27.0, 1321), [-1e-8, 1e-8, 1e-300, 0.0, 0.25, 0.84375]])
    x = x.astype(dtype)
    ref = np.array([float(mpmath.erfc(mpmath.mpf(float(v)))) for v in x])
    tiny = np.finfo(dtype).tiny
    keep = ref > tiny  # relative accuracy where erfc is a normal number of the dtype
    xb = backend.from_numpy(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = erfc(backend.xp, xb)
    nt.check_placement(out, xb, dtype, "erfc")
    got = nnx.to_numpy(out)
    ulps = _ulps(got[keep], ref[keep], dtype)
    worst = int(np.argmax(ulps))
    assert ulps[worst] <= 4.0, f"erfc({x[keep][worst]!r}) = {got[keep][worst]!r}, ref {ref[keep][worst]!r}"
    special = nnx.to_numpy(erfc(backend.xp, backend.from_numpy(
        np.array([np.inf, -np.inf, 30.0, -30.0, 0.0], dtype=dtype))))
    np.testing.assert_array_equal(special, [0.0, 2.0, 0.0, 2.0, 1.0])


def test_erf_on_device1(dtype):
    be = nt.make_backend("array_api_strict:device1")
    x = be.from_numpy(np.linspace(-5, 5, 11).astype(dtype))
    for f in (erf, erfc):
        out = f(be.xp, x)
        nt.check_placement(out, x, dtype, f.__name__)
        assert "device1" in str(out.device)


def test_erf_matches_torch(backend, dtype):
    torch = torch_or_skip()
    x = np.linspace(-7.0, 7.0, 2801).astype(dtype)
    got = erf(backend.xp, backend.from_numpy(x))
    nt.assert_close(got, torch.special.erf(torch.tensor(x, dtype=torch.float64)).numpy(), dtype,
                    "erf vs torch.special.erf")
