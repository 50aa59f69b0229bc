"""Residual(block, shortcut): y = block(x) + shortcut(x).

Checked against a NumPy float64 computation written here and against the same
network in PyTorch with the same weights (autograd for every gradient), by central
finite differences on every backend, and for naming, state dicts, modes, placement,
Sequential's need_input_grad=False path and its error messages.
"""

from __future__ import annotations

import numpy as np
import pytest
from array_api_compat import array_namespace

import nnx
import nnx.testing as nt
from nnx import backends as B
from nnx.layers.pooling import AdaptiveAvgPool2d, AvgPool2d
from nnx.layers.residual import Residual

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def model_run(make):
    """fn(x, g, *params) for assert_matches_reference: build the model in the input's
    dtype, install the parameter values (named_parameters order), run forward and
    backward, return (y, dx, *parameter grads)."""

    def fn(x, g, *params):
        model = make(nt.dtype_of(x))
        own = model.parameters()
        assert len(own) == len(params)
        for p, value in zip(own, params):
            p.data = value
        y = model(x)
        dx = model.backward(g)
        assert all(p.grad is not None for p in own)
        return (y, dx, *[p.grad for p in own])

    return fn


def compare(actual, expected, dtype, names):
    assert len(actual) == len(expected)
    for a, e, name in zip(actual, expected, names):
        nt.assert_close(a, e, dtype, name)


def away_from_zero(rng, shape, margin=0.05):
    z = rng.standard_normal(shape)
    return np.sign(z) * (margin + np.abs(z))


def f32(backend, shape):
    return backend.from_numpy(np.zeros(shape, dtype=np.float32))


def mlp_residual(dt="float32"):
    return Residual(nnx.Sequential(nnx.Linear(4, 5, dtype=dt), nnx.ReLU(),
                                   nnx.Linear(5, 4, dtype=dt)))


def projection_residual(dt="float32", cin=3, cout=4):
    """A ResNet downsampling block: two 3x3 convolutions, the first of stride 2, and a
    1x1 stride-2 convolution as the shortcut."""
    return Residual(
        nnx.Sequential(nnx.Conv2d(cin, cout, 3, stride=2, padding=1, dtype=dt), nnx.ReLU(),
                       nnx.Conv2d(cout, cout, 3, padding=1, dtype=dt)),
        nnx.Sequential(nnx.Conv2d(cin, cout, 1, stride=2, dtype=dt)),
    )


class Scale(nnx.Module):
    """y = a·x with a learnable scalar a (any Module with a backward may be a branch)."""

    def __init__(self, a, dt="float32"):
        self.a = nnx.Parameter(nnx.asarray(np.array([a]), dtype=dt))

    def forward(self, x):
        self._cache_x = x if self.training else None
        return x * self.a.data

    def backward(self, grad_out):
        xp = array_namespace(grad_out)
        self.a.grad = xp.reshape(xp.sum(grad_out * self._cache_x), (1,))
        return grad_out * self.a.data


# ---------------------------------------------------------------------------
# Against NumPy float64 and PyTorch
# ---------------------------------------------------------------------------


def test_identity_shortcut_matches_numpy(backend, dtype, rng):
    x, g = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    w1, b1 = rng.standard_normal((4, 5)), rng.standard_normal(5)
    w2, b2 = rng.standard_normal((5, 4)), rng.standard_normal(4)
    out = nt.assert_matches_reference(model_run(mlp_residual), x, g, w1, b1, w2, b2,
                                      backend=backend, dtype=dtype)
    z = x @ w1 + b1
    h = np.maximum(z, 0.0)
    y = h @ w2 + b2 + x
    dh = g @ w2.T
    dz = np.where(z > 0, dh, 0.0)
    dx = dz @ w1.T + g  # the block's input gradient plus the identity's
    compare(out, [y, dx, x.T @ dz, dz.sum(0), h.T @ g, g.sum(0)], dtype,
            ["y", "dx", "block.0.weight", "block.0.bias", "block.2.weight", "block.2.bias"])


def torch_projection(torch, x, params, g):
    """The projection block in PyTorch (autograd), weights in nnx's named_parameters order."""
    F = torch.nn.functional
    tx = torch.tensor(x, requires_grad=True)
    tp = [torch.tensor(p, requires_grad=True) for p in params]
    w1, b1, w2, b2, ws, bs = tp
    y = (F.conv2d(F.relu(F.conv2d(tx, w1, b1, stride=2, padding=1)), w2, b2, padding=1)
         + F.conv2d(tx, ws, bs, stride=2))
    y.backward(torch.tensor(g))
    return [y.detach().numpy(), tx.grad.numpy()] + [p.grad.numpy() for p in tp]


@pytest.mark.parametrize("hw", [(8, 8), (7, 5)], ids=["8x8", "7x5"])
def test_projection_shortcut_equals_torch(backend, dtype, rng, hw):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3) + hw)
    shapes = [(4, 3, 3, 3), (4,), (4, 4, 3, 3), (4,), (4, 3, 1, 1), (4,)]
    params = [rng.standard_normal(s) * 0.5 for s in shapes]
    oh, ow = (hw[0] + 1) // 2, (hw[1] + 1) // 2
    g = rng.standard_normal((2, 4, oh, ow))
    out = nt.assert_matches_reference(model_run(projection_residual), x, g, *params,
                                      backend=backend, dtype=dtype)
    names = [n for n, _ in projection_residual().named_parameters()]
    assert names == ["block.0.weight", "block.0.bias", "block.2.weight", "block.2.bias",
                     "shortcut.0.weight", "shortcut.0.bias"]
    compare(out, torch_projection(torch, x, params, g), dtype, ["y", "dx"] + names)


def test_resnet_like_stack_equals_torch(backend, dtype, rng):
    # stem conv, an identity residual, a projection residual, global pooling, linear
    torch = pytest.importorskip("torch")
    F = torch.nn.functional

    def make(dt):
        return nnx.Sequential(
            nnx.Conv2d(2, 3, 3, padding=1, dtype=dt), nnx.ReLU(),
            Residual(nnx.Sequential(nnx.Conv2d(3, 3, 3, padding=1, dtype=dt), nnx.ReLU(),
                                    nnx.Conv2d(3, 3, 3, padding=1, dtype=dt))),
            nnx.ReLU(),
            projection_residual(dt, 3, 4), nnx.ReLU(),
            AdaptiveAvgPool2d(1), nnx.Flatten(), nnx.Linear(4, 5, dtype=dt))

    names = [n for n, _ in make("float32").named_parameters()]
    assert names[2:6] == ["2.block.0.weight", "2.block.0.bias", "2.block.2.weight",
                          "2.block.2.bias"]
    assert names[10:12] == ["4.shortcut.0.weight", "4.shortcut.0.bias"]
    shapes = [tuple(p.shape) for p in make("float32").parameters()]
    params = [rng.standard_normal(s) * 0.4 for s in shapes]
    x, g = rng.standard_normal((2, 2, 6, 6)), rng.standard_normal((2, 5))
    out = nt.assert_matches_reference(model_run(make), x, g, *params, backend=backend, dtype=dtype)

    tx = torch.tensor(x, requires_grad=True)
    tp = [torch.tensor(p, requires_grad=True) for p in params]
    c0w, c0b, r1w, r1b, r2w, r2b, p1w, p1b, p2w, p2b, sw, sb, lw, lb = tp
    h = F.relu(F.conv2d(tx, c0w, c0b, padding=1))
    h = F.relu(F.conv2d(F.relu(F.conv2d(h, r1w, r1b, padding=1)), r2w, r2b, padding=1) + h)
    h = F.relu(F.conv2d(F.relu(F.conv2d(h, p1w, p1b, stride=2, padding=1)), p2w, p2b, padding=1)
               + F.conv2d(h, sw, sb, stride=2))
    y = F.adaptive_avg_pool2d(h, 1).flatten(1) @ lw + lb  # nnx's Linear weight is (in, out)
    y.backward(torch.tensor(g))
    expected = [y.detach().numpy(), tx.grad.numpy()] + [p.grad.numpy() for p in tp]
    compare(out, expected, dtype, ["y", "dx"] + names)


# ---------------------------------------------------------------------------
# Finite differences on every backend
# ---------------------------------------------------------------------------


def test_gradcheck_projection(backend, rng):
    model = projection_residual("float64", 2, 3)
    x = backend.from_numpy(rng.standard_normal((1, 2, 5, 5)))
    pre = nnx.to_numpy(model.block[0](x))  # keep finite differences off ReLU's kink
    assert np.abs(pre).min() > 1e-3
    nt.gradcheck(model, x)


def test_gradcheck_identity(backend, rng):
    model = mlp_residual("float64")
    x = backend.from_numpy(rng.standard_normal((2, 4)))
    pre = nnx.to_numpy(model.block[0](x))
    assert np.abs(pre).min() > 1e-3
    nt.gradcheck(model, x)


def test_gradcheck_nested_with_pooling_and_custom_module(backend, rng):
    # a Residual whose block holds a Residual, with a custom Module as a shortcut and
    # average pooling in both branches
    model = nnx.Sequential(Residual(
        nnx.Sequential(Residual(nnx.Sequential(nnx.Conv2d(2, 2, 3, padding=1, dtype="float64"),
                                               AvgPool2d(3, 1, 1))),
                       AvgPool2d(2)),
        nnx.Sequential(Scale(0.7, "float64"), AdaptiveAvgPool2d(2)),
    ))
    assert [n for n, _ in model.named_parameters()] == [
        "0.block.0.block.0.weight", "0.block.0.block.0.bias", "0.shortcut.0.a"]
    nt.gradcheck(model, backend.from_numpy(rng.standard_normal((2, 2, 4, 4))))


# ---------------------------------------------------------------------------
# Sequential, backward_params_only, naming and state
# ---------------------------------------------------------------------------


class Counting(nnx.Conv2d):
    """Conv2d that records which backward ran."""

    def __init__(self, *args, calls, **kw):
        super().__init__(*args, **kw)
        self._calls = calls

    def backward(self, grad_out):
        self._calls.append("backward")
        return super().backward(grad_out)

    def backward_params_only(self, grad_out):
        self._calls.append("params_only")
        return super().backward_params_only(grad_out)


def test_sequential_need_input_grad_false_with_residual_first(backend, rng):
    calls = []

    def make():
        nnx.manual_seed(3)
        return nnx.Sequential(
            AvgPool2d(2, 1),  # no parameters: nothing before the Residual is visited
            Residual(nnx.Sequential(Counting(2, 3, 3, padding=1, calls=calls), nnx.ReLU(),
                                    nnx.Conv2d(3, 3, 3, padding=1)),
                     Counting(2, 3, 1, calls=calls)),
            nnx.Flatten(), nnx.Linear(3 * 4 * 4, 2))

    x = backend.from_numpy(rng.standard_normal((2, 2, 5, 5)).astype(np.float32))
    g = backend.from_numpy(rng.standard_normal((2, 2)).astype(np.float32))
    full, fast = make(), make()
    full(x)
    assert full.backward(g) is not None
    fast(x)
    calls.clear()
    assert fast.backward(g, need_input_grad=False) is None
    # both convolutions that see the model's input skip its gradient
    assert sorted(calls) == ["params_only", "params_only"]
    for (name, a), (_, b) in zip(full.named_parameters(), fast.named_parameters()):
        nt.check_placement(b.grad, x, "float32", name)
        np.testing.assert_array_equal(nnx.to_numpy(b.grad), nnx.to_numpy(a.grad), err_msg=name)


def test_backward_params_only_equals_backward(backend, rng):
    x = backend.from_numpy(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    results = []
    for method in ("backward", "backward_params_only"):
        nnx.manual_seed(1)
        model = projection_residual()
        y = model(x)
        g = backend.from_numpy(np.ones(tuple(y.shape), dtype=np.float32))
        out = getattr(model, method)(g)
        assert (out is None) == (method == "backward_params_only")
        results.append({n: nnx.to_numpy(p.grad) for n, p in model.named_parameters()})
    for name in results[0]:
        np.testing.assert_array_equal(results[1][name], results[0][name], err_msg=name)


def test_backward_params_only_skips_branches_without_parameters(backend):
    calls = []
    model = Residual(AvgPool2d(3, 1, 1), Counting(1, 1, 1, calls=calls))
    x = f32(backend, (1, 1, 4, 4))
    model(x)
    model.backward_params_only(x)
    assert calls == ["params_only"]
    assert model.shortcut.weight.grad is not None
    ident = Residual(AvgPool2d(3, 1, 1))  # nothing to learn: nothing runs, nothing fails
    ident(x)
    assert ident.backward_params_only(x) is None


def test_named_parameters_and_state_dict_round_trip(backend, rng):
    nnx.manual_seed(0)
    a = nnx.Sequential(projection_residual(), nnx.ReLU(), Residual(nnx.Conv2d(4, 4, 1),
                                                                   nnx.Conv2d(4, 4, 1)))
    nnx.manual_seed(1)
    b = nnx.Sequential(projection_residual(), nnx.ReLU(), Residual(nnx.Conv2d(4, 4, 1),
                                                                   nnx.Conv2d(4, 4, 1)))
    keys = ["0.block.0.weight", "0.block.0.bias", "0.block.2.weight", "0.block.2.bias",
            "0.shortcut.0.weight", "0.shortcut.0.bias",
            "2.block.weight", "2.block.bias", "2.shortcut.weight", "2.shortcut.bias"]
    assert list(a.state_dict()) == keys
    assert [n for n, _ in a.named_parameters()] == keys
    x = backend.from_numpy(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    assert not np.array_equal(nnx.to_numpy(a(x)), nnx.to_numpy(b(x)))
    b.load_state_dict({k: nnx.to_numpy(v) for k, v in a.state_dict().items()})
    np.testing.assert_array_equal(nnx.to_numpy(b(x)), nnx.to_numpy(a(x)))
    for name, p in b.named_parameters():
        assert B.array_library(p.data) == backend.name, name
    sd = dict(a.state_dict())
    del sd["0.shortcut.0.weight"]
    with pytest.raises(ValueError, match=r"missing keys: 0\.shortcut\.0\.weight"):
        b.load_state_dict(sd)


def test_train_and_eval_reach_both_branches(backend):
    model = nnx.Sequential(Residual(nnx.Sequential(nnx.Conv2d(1, 1, 1), nnx.ReLU()),
                                    nnx.Sequential(nnx.Conv2d(1, 1, 1))))
    inner = list(model.modules())
    assert len(inner) == 7  # Sequential, Residual, block, Conv2d, ReLU, shortcut, Conv2d
    x = f32(backend, (1, 1, 3, 3))
    model(x)  # training mode: every layer keeps what its backward needs
    assert all(m._cache is not None for m in inner if isinstance(m, nnx.Conv2d))
    model.eval()
    assert not any(m.training for m in inner)
    assert all(m._cache is None for m in inner if isinstance(m, nnx.Conv2d))  # dropped
    model(x)
    assert all(m._cache is None for m in inner if isinstance(m, nnx.Conv2d))
    with pytest.raises(RuntimeError, match=r"^Residual\(block=Sequential, shortcut=Sequential\): "
                                           r"backward\(\) needs a forward\(\) in training mode"):
        model.backward(f32(backend, (1, 1, 3, 3)))
    model.train()
    assert all(m.training for m in inner)
    model(x)
    assert tuple(model.backward(f32(backend, (1, 1, 3, 3))).shape) == (1, 1, 3, 3)


def test_eval_output_equals_training_output(backend, rng):
    model = projection_residual()
    x = backend.from_numpy(rng.standard_normal((2, 3, 6, 6)).astype(np.float32))
    y_train = nnx.to_numpy(model(x))
    model.eval()
    np.testing.assert_array_equal(nnx.to_numpy(model(x)), y_train)


def test_to_moves_both_branches(backend, rng):
    with nnx.use_backend("numpy"):
        model = projection_residual()
    x = rng.standard_normal((1, 3, 4, 4)).astype(np.float32)
    y_ref = nnx.to_numpy(model(x))
    model.to(backend, dtype="float64")
    for name, p in model.named_parameters():
        assert B.array_library(p.data) == backend.name, name
        assert nt.dtype_of(p.data) == "float64", name
    y = model(backend.from_numpy(x.astype(np.float64)))
    nt.assert_close(y, y_ref, "float32", "y after to()")


def test_results_on_the_inputs_device(rng):
    if nt.backend_status("array_api_strict:device1") is not None:
        pytest.skip("array_api_strict:device1 unavailable")
    d1 = nt.make_backend("array_api_strict:device1")
    with nnx.use_backend(d1):
        model = nnx.Sequential(projection_residual(), Residual(nnx.ReLU()))
        x = d1.from_numpy(rng.standard_normal((2, 3, 4, 4)).astype(np.float32))
        y = model(x)
        nt.check_placement(y, x, "float32", "output")
        dx = model.backward(d1.from_numpy(np.ones(tuple(y.shape), dtype=np.float32)))
        nt.check_placement(dx, x, "float32", "input gradient")
        assert "device1" in str(dx.device)
        for name, p in model.named_parameters():
            nt.check_placement(p.grad, x, "float32", name + ".grad")
        model.backward(d1.from_numpy(np.ones(tuple(y.shape), dtype=np.float32)),
                       need_input_grad=False)
        for name, p in model.named_parameters():
            nt.check_placement(p.grad, x, "float32", name + ".grad (params only)")


class Double(nnx.Module):
    """y = 2x; keeps the output it returned (as layers that keep activations do)."""

    def forward(self, x):
        self.out = x * 2.0
        return self.out

    def backward(self, grad_out):
        return grad_out * 2.0


@pytest.mark.parametrize("shortcut", [None, "double"])
def test_inputs_and_branch_outputs_are_left_alone(backend, rng, shortcut):
    # y = block(x) + shortcut(x) is a new array: neither the input nor a branch's output
    # (which a layer may keep for backward) is written
    x_host = rng.standard_normal((2, 3)).astype(np.float32)
    x = backend.from_numpy(x_host)
    model = Residual(Double(), None if shortcut is None else Double())
    y = model(x)
    np.testing.assert_array_equal(nnx.to_numpy(x), x_host)
    np.testing.assert_array_equal(nnx.to_numpy(model.block.out), 2 * x_host)
    if shortcut is not None:
        np.testing.assert_array_equal(nnx.to_numpy(model.shortcut.out), 2 * x_host)
    np.testing.assert_array_equal(nnx.to_numpy(y), (4 if shortcut else 3) * x_host)
    g = backend.from_numpy(np.ones((2, 3), dtype=np.float32))
    dx = model.backward(g)
    np.testing.assert_array_equal(nnx.to_numpy(dx), np.full((2, 3), 4.0 if shortcut else 3.0))
    np.testing.assert_array_equal(nnx.to_numpy(g), np.ones((2, 3)))


def test_thread_splitting_sees_into_both_branches():
    # nnx.parallel refuses to split a batch through a layer that couples its samples;
    # it finds one inside either branch of a Residual (Module.modules() reaches them)
    from nnx.parallel import splittable

    class Coupled(nnx.Module):
        splittable = False

    assert splittable(nnx.Sequential(Residual(nnx.ReLU(), nnx.ReLU())))
    assert not splittable(nnx.Sequential(Residual(nnx.Sequential(nnx.ReLU(), Coupled()))))
    assert not splittable(nnx.Sequential(Residual(nnx.ReLU(), Coupled())))


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def test_branch_shape_mismatch(backend):
    model = Residual(nnx.Conv2d(2, 3, 3))
    with pytest.raises(ValueError) as info:
        model(f32(backend, (1, 2, 5, 5)))
    msg = str(info.value)
    assert "\n" not in msg
    assert msg == ("Residual(block=Conv2d, shortcut=identity): block output of shape "
                   "(1, 3, 3, 3) does not match the input of shape (1, 2, 5, 5) "
                   "(input of shape (1, 2, 5, 5))"), msg
    proj = Residual(nnx.Conv2d(2, 3, 3, padding=1), nnx.Sequential(nnx.Conv2d(2, 3, 1, stride=2)))
    with pytest.raises(ValueError, match=r"^Residual\(block=Conv2d, shortcut=Sequential\): block "
                                         r"output of shape \(1, 3, 5, 5\) does not match shortcut "
                                         r"output of shape \(1, 3, 3, 3\)"):
        proj(f32(backend, (1, 2, 5, 5)))


def test_broadcastable_branches_are_refused(backend):
    # (2, 1) + (2, 4) would broadcast silently
    with pytest.raises(ValueError, match=r"\(2, 1\) does not match the input of shape \(2, 4\)"):
        Residual(nnx.Linear(4, 1))(f32(backend, (2, 4)))


def test_branch_dtype_mismatch(backend):
    class ToFloat64(nnx.Module):
        def forward(self, x):
            xp = array_namespace(x)
            return xp.astype(x, xp.float64)

    with pytest.raises(TypeError, match=r"^Residual\(block=ToFloat64, shortcut=identity\): block "
                                        r"output dtype float64 does not match the input dtype "
                                        r"float32$"):
        Residual(ToFloat64())(f32(backend, (2, 3)))


def test_backward_errors(backend):
    model = Residual(nnx.ReLU())
    with pytest.raises(RuntimeError, match=r"^Residual\(block=ReLU, shortcut=identity\): backward"):
        model.backward(f32(backend, (2, 3)))
    model(f32(backend, (2, 3)))
    for shape in [(1, 3), (2, 3, 1), (3,)]:
        with pytest.raises(ValueError) as info:
            model.backward(f32(backend, shape))
        msg = str(info.value)
        assert "\n" not in msg and msg.startswith("Residual(block=ReLU"), msg
        assert f"gradient of shape {shape}" in msg and "(2, 3)" in msg, msg
    with pytest.raises(ValueError, match=r"gradient of shape \(1, 3\)"):
        model.backward_params_only(f32(backend, (1, 3)))


@pytest.mark.parametrize("make,exc,match", [
    (lambda: Residual(lambda x: x), TypeError, r"^Residual: block must be a Module, got function$"),
    (lambda: Residual(nnx.ReLU(), "id"), TypeError, r"^Residual: shortcut must be a Module or None"),
    (lambda: (lambda c: Residual(c, c))(nnx.Conv2d(1, 1, 1)), ValueError,
     r"^Residual: the same Conv2d object is in both the block and the shortcut"),
    (lambda: (lambda c: Residual(nnx.Sequential(c, nnx.ReLU()), nnx.Sequential(c)))(
        nnx.Conv2d(1, 1, 1)), ValueError, r"same Conv2d object"),
], ids=["block", "shortcut", "same-layer", "shared-inside"])
def test_constructor_errors(make, exc, match):
    with pytest.raises(exc, match=match) as info:
        make()
    assert "\n" not in str(info.value)


def test_repr_lists_both_branches():
    text = repr(projection_residual())
    assert text.startswith("Residual(\n  (block): Sequential(")
    assert "(shortcut): Sequential(" in text
    assert "(shortcut)" not in repr(Residual(nnx.ReLU()))


def test_threaded_data_parallel_through_residuals(dtype):
    # replicas of a model with Residuals (deep copies sharing the parameter arrays) give
    # the full batch's gradients when each runs its own slice
    from nnx.parallel import BatchSplitter

    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 3, 6, 6)).astype(dtype)
    y = rng.integers(0, 5, 24)
    model = nnx.Sequential(projection_residual(dtype), nnx.ReLU(),
                           Residual(nnx.Conv2d(4, 4, 3, padding=1, dtype=dtype)),
                           AdaptiveAvgPool2d(1), nnx.Flatten(), nnx.Linear(4, 5, dtype=dtype))
    loss_fn = nnx.CrossEntropyLoss()
    loss_fn(model(x), y)
    model.backward(loss_fn.backward(), need_input_grad=False)
    ref = {k: nnx.to_numpy(p.grad).copy() for k, p in model.named_parameters()}
    dp = BatchSplitter(model, 2)
    try:
        loss_fn(dp.forward(x), y)
        dp.backward(loss_fn.backward(), need_input_grad=False)
    finally:
        dp.close()
    for k, p in model.named_parameters():
        nt.assert_close(p.grad, ref[k], dtype, what=k)
