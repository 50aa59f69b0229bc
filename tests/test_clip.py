"""Gradient clipping: nnx.optim.clip_grad_norm_ and clip_grad_value_ against
torch.nn.utils and against a NumPy float64 reference, on every backend in both dtypes.

Reference: N = (Σ|g|^q)^(1/q) over every element of every gradient (N = max|g| for
q = inf); c = min(1, max_norm/(N + 1e-6)); every gradient becomes c·g. clip_grad_value_
clamps each element into [−v, v].
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnx
import nnx.testing as nt
from nnx.optim import clip_grad_norm_, clip_grad_value_

SHAPES = [(4, 3), (3,), (2, 2, 3, 3)]


def ref_total_norm(grads, q):
    flat = np.concatenate([g.ravel() for g in grads])
    if q == math.inf:
        return np.max(np.abs(flat))
    return np.sum(np.abs(flat) ** q) ** (1.0 / q)


def ref_clip(grads, max_norm, q):
    total = ref_total_norm(grads, q)
    coef = min(1.0, max_norm / (total + 1e-6))
    return total, [coef * g for g in grads]


def make(dtype, seed=0, scale=1.0, none=()):
    """Parameters with seeded gradients (scale·N(0,1)); those in ``none`` have no gradient."""
    rng = np.random.default_rng(seed)
    host = [scale * rng.standard_normal(s) for s in SHAPES]
    params = []
    for i, (s, g) in enumerate(zip(SHAPES, host)):
        p = nnx.Parameter(nnx.asarray(np.ones(s), dtype=dtype))
        p.grad = None if i in none else nnx.asarray(np.array(g, copy=True), dtype=dtype)
        params.append(p)
    return params, host


# (max_norm, norm_type, gradient scale): clipped (2, inf, 1, 3 norms) and left alone
CASES = {
    "2-norm-clipped": (1.0, 2.0, 1.0),
    "inf-norm-clipped": (0.5, math.inf, 1.0),
    "inf-as-string": (0.5, "inf", 1.0),
    "1-norm-clipped": (3.0, 1.0, 1.0),
    "3-norm-clipped": (0.7, 3.0, 2.0),
    "2-norm-below": (100.0, 2.0, 1.0),
    "inf-norm-below": (10.0, math.inf, 1.0),
    "int-max-norm": (2, 2, 1.0),
}


@pytest.mark.parametrize("case", CASES)
def test_clip_grad_norm_matches_torch_and_the_reference(backend, dtype, case):
    torch = pytest.importorskip("torch")
    max_norm, q, scale = CASES[case]
    params, host = make(dtype, seed=1, scale=scale)
    tparams = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in SHAPES]
    for tp, g in zip(tparams, host):
        tp.grad = torch.tensor(g)
    expected_total = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type=q)
    ref_total, ref_grads = ref_clip(host, max_norm, float(q))
    total = clip_grad_norm_(params, max_norm, norm_type=q)
    like = nnx.asarray(np.zeros(1), dtype=dtype)
    nt.check_placement(total, like, dtype, "total norm")
    assert tuple(total.shape) == ()
    nt.assert_close(total, np.asarray(expected_total.item()), dtype, "total norm (torch)")
    nt.assert_close(total, np.asarray(ref_total), dtype, "total norm (reference)")
    for i, (p, tp, rg) in enumerate(zip(params, tparams, ref_grads)):
        nt.check_placement(p.grad, like, dtype, f"grad {i}")
        nt.assert_close(p.grad, tp.grad.numpy(), dtype, f"grad {i} (torch)")
        nt.assert_close(p.grad, rg, dtype, f"grad {i} (reference)")
        np.testing.assert_array_equal(nnx.to_numpy(p.data), np.ones(SHAPES[i]))


@pytest.mark.parametrize("case", CASES)
def test_clip_grad_norm_matches_the_reference_without_torch(backend, dtype, case):
    max_norm, q, scale = CASES[case]
    params, host = make(dtype, seed=2, scale=scale)
    ref_total, ref_grads = ref_clip(host, max_norm, float(q))
    clipped = ref_total > max_norm
    assert clipped == ("below" not in case)
    total = clip_grad_norm_(params, max_norm, norm_type=q)
    nt.assert_close(total, np.asarray(ref_total), dtype, "total norm")
    for i, (p, rg) in enumerate(zip(params, ref_grads)):
        nt.assert_close(p.grad, rg, dtype, f"grad {i}")
    if clipped:  # the clipped gradients have the norm asked for (less PyTorch's 1e-6)
        after = ref_total_norm([nnx.to_numpy(p.grad).astype(np.float64) for p in params], float(q))
        assert after == pytest.approx(max_norm * ref_total / (ref_total + 1e-6),
                                      rel=nt.tolerance(dtype)[0])


def test_a_norm_below_max_norm_leaves_the_gradients_exactly(backend, dtype):
    params, host = make(dtype, seed=3)
    before = [nnx.to_numpy(p.grad).copy() for p in params]
    total = clip_grad_norm_(params, 1e3)
    for b, p in zip(before, params):
        np.testing.assert_array_equal(nnx.to_numpy(p.grad), b)
    # max_norm=inf only measures
    total_inf = clip_grad_norm_(params, math.inf)
    np.testing.assert_array_equal(nnx.to_numpy(total_inf), nnx.to_numpy(total))
    for b, p in zip(before, params):
        np.testing.assert_array_equal(nnx.to_numpy(p.grad), b)


def test_missing_gradients_are_skipped_and_modules_are_accepted(backend, dtype):
    params, host = make(dtype, seed=4, none=(1,))
    kept = [host[0], host[2]]
    ref_total, ref_grads = ref_clip(kept, 0.5, 2.0)
    total = clip_grad_norm_(params, 0.5)
    nt.assert_close(total, np.asarray(ref_total), dtype, "total norm")
    assert params[1].grad is None
    nt.assert_close(params[0].grad, ref_grads[0], dtype, "grad 0")
    nt.assert_close(params[2].grad, ref_grads[1], dtype, "grad 2")
    # a Module, and a single Parameter
    model = nnx.Sequential(nnx.Linear(3, 4, dtype=dtype), nnx.ReLU(), nnx.Linear(4, 2, dtype=dtype))
    x = nnx.asarray(np.random.default_rng(5).standard_normal((6, 3)), dtype=dtype)
    model.backward(model(x) * 0 + 10.0)
    grads = [nnx.to_numpy(p.grad).astype(np.float64) for p in model.parameters()]
    ref_total, ref_grads = ref_clip(grads, 1.0, 2.0)
    nt.assert_close(clip_grad_norm_(model, 1.0), np.asarray(ref_total), dtype, "module norm")
    for p, rg in zip(model.parameters(), ref_grads):
        nt.assert_close(p.grad, rg, dtype, "module grad")
    single = params[2]
    g = nnx.to_numpy(single.grad).astype(np.float64)
    nt.assert_close(clip_grad_norm_(single, 0.1, norm_type=math.inf), np.asarray(np.abs(g).max()),
                    dtype, "single parameter")
    nt.assert_close(single.grad, g * min(1.0, 0.1 / (np.abs(g).max() + 1e-6)), dtype, "single")


def test_no_gradients_give_a_zero_norm(backend, dtype):
    params, _ = make(dtype, none=(0, 1, 2))
    total = clip_grad_norm_(params, 1.0)
    nt.check_placement(total, params[0].data, dtype, "zero norm")
    assert float(total) == 0.0 and all(p.grad is None for p in params)
    empty = clip_grad_norm_([], 1.0)
    assert float(empty) == 0.0 and tuple(empty.shape) == ()
    nt.check_placement(empty, nnx.asarray(np.zeros(1), dtype="float32"), "float32", "empty")


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_non_finite_norms(backend):
    params, _ = make("float64", seed=6)
    params[1].grad = params[1].grad * float("nan")
    with pytest.raises(RuntimeError, match="^clip_grad_norm_: the total norm of order 2.0 .* nan"):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    total = clip_grad_norm_(params, 1.0)  # PyTorch's behaviour: NaN everywhere
    assert math.isnan(float(total))
    assert all(np.isnan(nnx.to_numpy(p.grad)).all() for p in params)
    params, _ = make("float64", seed=7)
    host = nnx.to_numpy(params[0].grad).copy()
    host[0, 0] = np.inf
    params[0].grad = nnx.asarray(host, dtype="float64")
    with pytest.raises(RuntimeError, match="inf"):
        clip_grad_norm_(params, 1.0, norm_type="inf", error_if_nonfinite=True)
    assert math.isinf(float(clip_grad_norm_(params, 1.0)))
    # c = 0: the finite elements become 0, the infinite one NaN
    g0 = nnx.to_numpy(params[0].grad)
    assert np.isnan(g0[0, 0]) and (g0.ravel()[1:] == 0).all()
    assert all((nnx.to_numpy(p.grad) == 0).all() for p in params[1:])


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_non_finite_norms_as_torch():
    torch = pytest.importorskip("torch")
    params, host = make("float64", seed=6)
    host[1] = host[1] * np.nan
    params[1].grad = nnx.asarray(host[1])
    tparams = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in SHAPES]
    for tp, g in zip(tparams, host):
        tp.grad = torch.tensor(g)
    t_total = torch.nn.utils.clip_grad_norm_(tparams, 1.0)
    total = clip_grad_norm_(params, 1.0)
    assert math.isnan(float(total)) and math.isnan(t_total.item())
    for p, tp in zip(params, tparams):
        np.testing.assert_array_equal(nnx.to_numpy(p.grad), tp.grad.numpy())


def test_clip_on_the_strict_second_device():
    d1 = nt.make_backend("array_api_strict:device1")
    with nnx.use_backend(d1):
        params, host = make("float32", seed=8)
        total = clip_grad_norm_(params, 0.5)
        assert "device1" in str(total.device)
        assert all("device1" in str(p.grad.device) for p in params)
        clip_grad_value_(params, 0.01)
        assert all("device1" in str(p.grad.device) for p in params)
    nt.assert_close(total, np.asarray(ref_total_norm(host, 2.0)), "float32", "norm on device1")


@pytest.mark.parametrize("clip_value", [0.0, 0.3, 1, 100.0])
def test_clip_grad_value_matches_torch_and_the_reference(backend, dtype, clip_value):
    params, host = make(dtype, seed=9, none=(1,))
    assert clip_grad_value_(params, clip_value) is None
    assert params[1].grad is None
    for i in (0, 2):
        expected = np.clip(host[i], -clip_value, clip_value)
        nt.check_placement(params[i].grad, params[i].data, dtype, f"grad {i}")
        nt.assert_close(params[i].grad, expected, dtype, f"grad {i}")
    torch = pytest.importorskip("torch")
    tparams = [torch.zeros(s, dtype=torch.float64, requires_grad=True) for s in SHAPES]
    for i, (tp, g) in enumerate(zip(tparams, host)):
        tp.grad = None if i == 1 else torch.tensor(g)
    torch.nn.utils.clip_grad_value_(tparams, clip_value)
    for i in (0, 2):
        nt.assert_close(params[i].grad, tparams[i].grad.numpy(), dtype, f"grad {i} (torch)")


@pytest.mark.parametrize("call,match", [
    (lambda ps: clip_grad_norm_(ps, -1.0), "max_norm must be a number >= 0"),
    (lambda ps: clip_grad_norm_(ps, float("nan")), "max_norm"),
    (lambda ps: clip_grad_norm_(ps, True), "max_norm"),
    (lambda ps: clip_grad_norm_(ps, "1"), "max_norm"),
    (lambda ps: clip_grad_norm_(ps, 1.0, norm_type=0), "norm_type must be a number > 0 or inf"),
    (lambda ps: clip_grad_norm_(ps, 1.0, norm_type=-2.0), "norm_type"),
    (lambda ps: clip_grad_norm_(ps, 1.0, norm_type=-math.inf), "norm_type"),
    (lambda ps: clip_grad_norm_(ps, 1.0, norm_type="two"), "norm_type"),
    (lambda ps: clip_grad_norm_(ps, 1.0, norm_type=float("nan")), "norm_type"),
    (lambda ps: clip_grad_norm_(ps, 1.0, error_if_nonfinite="yes"), "error_if_nonfinite"),
    (lambda ps: clip_grad_value_(ps, -0.1), "clip_value must be a number >= 0"),
    (lambda ps: clip_grad_value_(ps, float("nan")), "clip_value"),
])
def test_bad_arguments_raise_one_line(call, match):
    params, host = make("float32")
    with pytest.raises(ValueError) as info:
        call(params)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(("clip_grad_norm_: ", "clip_grad_value_: ")), msg
    assert match in msg
    for p, g in zip(params, host):  # nothing was touched
        np.testing.assert_array_equal(nnx.to_numpy(p.grad), g.astype(np.float32))


def test_params_must_be_parameters():
    with pytest.raises(TypeError, match="^clip_grad_norm_: expected nnx.Parameter objects, item 0"):
        clip_grad_norm_([np.zeros(3)], 1.0)
    with pytest.raises(TypeError, match="^clip_grad_value_: params must be a Module, a Parameter"):
        clip_grad_value_(3.0, 1.0)


def test_clip_before_a_step_equals_torch():
    """The usual loop: backward, clip_grad_norm_, step; 30 steps of Adam on a small MLP equal
    PyTorch's (same weights, same data, torch.nn.utils.clip_grad_norm_)."""
    torch = pytest.importorskip("torch")
    nnx.manual_seed(1)
    model = nnx.models.MLP((5, 7, 3), dtype="float64")
    tmodel = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3)).double()
    with torch.no_grad():
        for tp, (_, p) in zip(tmodel.parameters(), model.named_parameters()):
            a = nnx.to_numpy(p.data)
            tp.copy_(torch.tensor(a.T.copy() if a.ndim == 2 else a))
    opt = nnx.optim.Adam(model, lr=0.05)
    topt = torch.optim.Adam(tmodel.parameters(), lr=0.05)
    loss, tloss = nnx.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(2)
    for _ in range(30):
        x, y = 3 * rng.standard_normal((8, 5)), rng.integers(0, 3, 8)
        loss(model(nnx.asarray(x, dtype="float64")), nnx.asarray(y))
        model.backward(loss.backward())
        total = clip_grad_norm_(model, 0.25)
        topt.zero_grad()
        tloss(tmodel(torch.tensor(x)), torch.tensor(y)).backward()
        t_total = torch.nn.utils.clip_grad_norm_(tmodel.parameters(), 0.25)
        nt.assert_close(total, np.asarray(t_total.item()), "float64", "total norm")
        opt.step()
        topt.step()
    for tp, (name, p) in zip(tmodel.parameters(), model.named_parameters()):
        a = tp.detach().numpy()
        nt.assert_close(p.data, a.T if a.ndim == 2 else a, "float64", name)
