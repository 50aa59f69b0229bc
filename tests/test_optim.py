"""Optimizers: SGD against torch.optim.SGD, MomentGD against
SGD and hand-computed values, weight decay applied exactly once, validation,
state round trips across backends, buffer placement."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
import nnx.testing as nt
from nnx import lr_scheduler as nls
from nnx.optim import SGD, MomentGD

SHAPES = [(4, 3), (3,), (2, 2, 3, 3)]
STEPS = 120


def _torch():
    return pytest.importorskip("torch")


def problem(seed=0, steps=STEPS):
    """Initial values and a gradient sequence (host float64)."""
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s) for s in SHAPES]
    noise = [[rng.standard_normal(s) for s in SHAPES] for _ in range(steps)]
    return init, noise


def set_grads(params, noise_t):
    """g = R_t + 0.5·p: the gradient depends on where the parameter is."""
    for p, r in zip(params, noise_t):
        p.grad = nnx.asarray(r, dtype=nt.dtype_of(p.data)) + 0.5 * p.data


def make_params(init, dtype, weight_decays=None):
    wds = weight_decays or [None] * len(init)
    # copies: on NumPy nnx.asarray returns a float64 host array itself
    return [nnx.Parameter(nnx.asarray(np.array(a, copy=True), dtype=dtype), wd)
            for a, wd in zip(init, wds)]


def make_scheduler(module, opt, kind):
    if kind is None:
        return None
    if kind == "step":
        return module.StepLR(opt, step_size=25, gamma=0.5)
    if kind == "multistep":
        return module.MultiStepLR(opt, milestones=[10, 40, 40, 90], gamma=0.5)
    return module.ExponentialLR(opt, gamma=0.98)


# (SGD arguments, schedule): every schedule meets plain, momentum, Nesterov and decay
SGD_CONFIGS = [
    (dict(lr=0.05), "step"),
    (dict(lr=0.05, momentum=0.9), "multistep"),
    (dict(lr=0.05, momentum=0.9, nesterov=True), "exp"),
    (dict(lr=0.05, momentum=0.9, weight_decay=0.01), "step"),
    (dict(lr=0.03, momentum=0.5, weight_decay=0.05, nesterov=True), "multistep"),
    (dict(lr=0.05, weight_decay=0.1), "exp"),
]


@pytest.mark.parametrize("cfg,sched", SGD_CONFIGS,
                         ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items())
                         if isinstance(c, dict) else c)
def test_sgd_trajectory_equals_torch(backend, dtype, cfg, sched):
    torch = _torch()
    init, noise = problem()
    params = make_params(init, dtype)
    opt = SGD(params, **cfg)
    scheduler = make_scheduler(nls, opt, sched)
    tparams = [torch.tensor(a, dtype=torch.float64) for a in init]
    topt = torch.optim.SGD(tparams, **cfg)
    tsched = make_scheduler(torch.optim.lr_scheduler, topt, sched)
    for t in range(STEPS):
        set_grads(params, noise[t])
        for tp, r in zip(tparams, noise[t]):
            tp.grad = torch.tensor(r) + 0.5 * tp
        assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12, abs=0)
        opt.step()
        topt.step()
        for i, (p, tp) in enumerate(zip(params, tparams)):
            nt.check_placement(p.data, p.grad, dtype, f"param {i}")
            nt.assert_close(p.data, tp.numpy(), dtype, f"param {i} at step {t}")
        scheduler.step()
        tsched.step()
        assert scheduler.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-12, abs=0)


def test_sgd_per_parameter_weight_decay_equals_torch_param_groups(backend, dtype):
    torch = _torch()
    init, noise = problem(seed=1, steps=100)
    # a layer-level decay on the first (weight-like) tensor, None elsewhere
    params = make_params(init, dtype, [0.2, None, None])
    opt = SGD(params, lr=0.05, momentum=0.9, weight_decay=0.01)
    sched = nls.StepLR(opt, step_size=30, gamma=0.3)
    tparams = [torch.tensor(a) for a in init]
    topt = torch.optim.SGD([{"params": tparams[:1], "weight_decay": 0.2},
                            {"params": tparams[1:]}], lr=0.05, momentum=0.9, weight_decay=0.01)
    tsched = torch.optim.lr_scheduler.StepLR(topt, step_size=30, gamma=0.3)
    for t in range(100):
        set_grads(params, noise[t])
        for tp, r in zip(tparams, noise[t]):
            tp.grad = torch.tensor(r) + 0.5 * tp
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
    for i, (p, tp) in enumerate(zip(params, tparams)):
        nt.assert_close(p.data, tp.numpy(), dtype, f"param {i}")


def test_parameters_without_gradient_are_left_alone(backend):
    init, noise = problem(steps=2)
    params = make_params(init, "float32")
    opt = SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1)
    params[0].grad = nnx.asarray(noise[0][0], dtype="float32")
    opt.step()
    np.testing.assert_array_equal(nnx.to_numpy(params[1].data), init[1].astype(np.float32))
    assert opt.buffers[1] is None and opt.buffers[0] is not None


# ---------------------------------------------------------------------------
# MomentGD
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("wd", [0.0, 0.02])
def test_momentgd_equals_sgd_momentum_at_constant_lr(backend, dtype, wd):
    init, noise = problem(seed=2, steps=100)
    a, b = make_params(init, dtype), make_params(init, dtype)
    mgd = MomentGD(a, lr=0.05, mu=0.8, weight_decay=wd)
    sgd = SGD(b, lr=0.05, momentum=0.8, weight_decay=wd)
    for t in range(100):
        set_grads(a, noise[t])
        set_grads(b, noise[t])
        mgd.step()
        sgd.step()
    for i, (p, q) in enumerate(zip(a, b)):
        nt.check_placement(p.data, q.data, dtype, f"param {i}")
        nt.assert_close(p.data, nnx.to_numpy(q.data), dtype, f"param {i}")
        # the velocity is −lr times SGD's buffer
        nt.assert_close(mgd.buffers[i], -0.05 * nnx.to_numpy(sgd.buffers[i]), dtype, f"buffer {i}")


def test_momentgd_and_sgd_differ_when_lr_changes(backend, dtype):
    """p₀ = 1, g = 1 each step, μ = 0.9, lr 0.1 then 0.01.

    MomentGD: v₁ = −0.1,  p₁ = 0.9;  v₂ = 0.9·(−0.1) − 0.01·1 = −0.1,  p₂ = 0.8
    SGD:      b₁ = 1,     p₁ = 0.9;  b₂ = 0.9·1 + 1 = 1.9,  p₂ = 0.9 − 0.01·1.9 = 0.881
    (MomentGD's velocity remembers the old lr; SGD applies the new lr to the whole buffer.)
    """
    pm = nnx.Parameter(nnx.asarray(np.ones(1), dtype=dtype))
    ps = nnx.Parameter(nnx.asarray(np.ones(1), dtype=dtype))
    mgd, sgd = MomentGD([pm], lr=0.1, mu=0.9), SGD([ps], lr=0.1, momentum=0.9)
    expected = {"MomentGD": [0.9, 0.8], "SGD": [0.9, 0.881]}
    for t, lr in enumerate([0.1, 0.01]):
        mgd.lr = sgd.lr = lr
        for p in (pm, ps):
            p.grad = nnx.asarray(np.ones(1), dtype=dtype)
        mgd.step()
        sgd.step()
        nt.assert_close(pm.data, [expected["MomentGD"][t]], dtype, f"MomentGD step {t + 1}")
        nt.assert_close(ps.data, [expected["SGD"][t]], dtype, f"SGD step {t + 1}")


def test_momentgd_with_a_scheduler_matches_its_formula(backend):
    """v ← μv − lr_t(g + λp), p ← p + v, with lr_t from ExponentialLR, in float64 by hand."""
    init, noise = problem(seed=3, steps=30)
    params = make_params(init, "float64")
    opt = MomentGD(params, lr=0.1, mu=0.7, weight_decay=0.05)
    sched = nls.ExponentialLR(opt, gamma=0.9)
    ps = [a.copy() for a in init]
    vs = [np.zeros_like(a) for a in init]
    for t in range(30):
        set_grads(params, noise[t])
        opt.step()
        sched.step()
        lr = 0.1 * 0.9 ** t
        for i in range(len(ps)):
            g = noise[t][i] + 0.5 * ps[i]
            vs[i] = 0.7 * vs[i] - lr * (g + 0.05 * ps[i])
            ps[i] = ps[i] + vs[i]
    for i, p in enumerate(params):
        nt.assert_close(p.data, ps[i], "float64", f"param {i}")


# ---------------------------------------------------------------------------
# Weight decay exactly once
# ---------------------------------------------------------------------------


def _linear_with_grads(dtype, layer_wd):
    """Linear(2, 2) with W = [[1, 2], [3, 4]], b = [1, −1], after backward of
    x = [[1, 2]], G = [[0.5, −1]]: dW = xᵀG = [[0.5, −1], [1, −2]], db = [0.5, −1]."""
    lin = nnx.Linear(2, 2, weight_decay=layer_wd, dtype=dtype)
    lin.weight.data = nnx.asarray(np.array([[1.0, 2.0], [3.0, 4.0]]), dtype=dtype)
    lin.bias.data = nnx.asarray(np.array([1.0, -1.0]), dtype=dtype)
    lin(nnx.asarray(np.array([[1.0, 2.0]]), dtype=dtype))
    lin.backward(nnx.asarray(np.array([[0.5, -1.0]]), dtype=dtype))
    return lin


DW = np.array([[0.5, -1.0], [1.0, -2.0]])
DB = np.array([0.5, -1.0])


@pytest.mark.parametrize("opt_cls", [SGD, MomentGD])
def test_layer_weight_decay_wins_and_is_applied_once(backend, dtype, opt_cls):
    lin = _linear_with_grads(dtype, 0.5)
    # backward writes the loss gradient only (no λW from the layer)
    nt.assert_close(lin.weight.grad, DW, dtype, "dW from backward")
    nt.assert_close(lin.bias.grad, DB, dtype, "db from backward")
    opt = opt_cls(lin, lr=0.1, weight_decay=0.01)
    opt.step()
    # W' = W − 0.1·(dW + 0.5·W) = 0.95·W − 0.1·dW; b' = b − 0.1·(db + 0.01·b)
    nt.assert_close(lin.weight.data, [[0.9, 2.0], [2.75, 4.0]], dtype, "weight after one step")
    nt.assert_close(lin.bias.data, [0.949, -0.899], dtype, "bias after one step")
    # the gradients are left as backward wrote them
    nt.assert_close(lin.weight.grad, DW, dtype, "dW after step")
    nt.assert_close(lin.bias.grad, DB, dtype, "db after step")


def test_optimizer_weight_decay_applies_when_the_layer_has_none(backend, dtype):
    lin = _linear_with_grads(dtype, None)
    SGD(lin, lr=0.1, weight_decay=0.01).step()
    # W' = W − 0.1·(dW + 0.01·W) = 0.999·W − 0.1·dW
    nt.assert_close(lin.weight.data, [[0.949, 2.098], [2.897, 4.196]], dtype, "weight")
    nt.assert_close(lin.bias.data, [0.949, -0.899], dtype, "bias")


def test_layer_weight_decay_zero_wins_over_the_optimizers(backend, dtype):
    lin = _linear_with_grads(dtype, 0.0)
    SGD(lin, lr=0.1, weight_decay=0.01).step()
    nt.assert_close(lin.weight.data, [[0.95, 2.1], [2.9, 4.2]], dtype, "weight (no decay)")
    nt.assert_close(lin.bias.data, [0.949, -0.899], dtype, "bias (optimizer's decay)")


def test_layer_weight_decay_with_momentum_second_step(backend, dtype):
    lin = _linear_with_grads(dtype, 0.5)
    opt = SGD(lin, lr=0.1, momentum=0.9)
    opt.step()  # W₁ = [[0.9, 2.0], [2.75, 4.0]], buffer b₁ = dW + 0.5·W₀
    opt.step()  # same dW; b₂ = 0.9·b₁ + dW + 0.5·W₁; W₂ = W₁ − 0.1·b₂
    w0 = np.array([[1.0, 2.0], [3.0, 4.0]])
    b1 = DW + 0.5 * w0
    w1 = w0 - 0.1 * b1
    w2 = w1 - 0.1 * (0.9 * b1 + DW + 0.5 * w1)
    nt.assert_close(lin.weight.data, w2, dtype, "weight after two steps")


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


def _params():
    return [nnx.Parameter(nnx.asarray(np.zeros(2, dtype=np.float32)))]


@pytest.mark.parametrize("make,arg", [
    (lambda p: SGD(p, lr=-0.1), "lr"),
    (lambda p: SGD(p, lr=float("nan")), "lr"),
    (lambda p: SGD(p, lr=0.1, momentum=1.0), "momentum"),
    (lambda p: SGD(p, lr=0.1, momentum=-0.1), "momentum"),
    (lambda p: SGD(p, lr=0.1, weight_decay=-1e-4), "weight_decay"),
    (lambda p: SGD(p, lr=0.1, nesterov=True), "nesterov"),
    (lambda p: SGD(p, lr=0.1, momentum=0.0, nesterov=True), "nesterov"),
    (lambda p: MomentGD(p, lr=-1.0), "lr"),
    (lambda p: MomentGD(p, lr=0.1, mu=1.0), "mu"),
    (lambda p: MomentGD(p, lr=0.1, mu=-0.5), "mu"),
    (lambda p: MomentGD(p, lr=0.1, weight_decay=-0.1), "weight_decay"),
])
def test_constructor_validation_names_the_argument(make, arg):
    with pytest.raises(ValueError, match=rf"^{arg}\b|\b{arg}\b"):
        make(_params())


def test_valid_edges_are_accepted():
    SGD(_params(), lr=0.0, momentum=0.0, weight_decay=0.0)
    SGD(_params(), lr=1.0, momentum=0.999, nesterov=True)
    MomentGD(_params(), lr=0.0, mu=0.0)


def test_params_argument(backend):
    model = nnx.Sequential(nnx.Linear(2, 3), nnx.ReLU(), nnx.Linear(3, 1))
    assert SGD(model, lr=0.1).params == model.parameters()
    assert SGD((p for p in model.parameters()), lr=0.1).params == model.parameters()
    with pytest.raises(TypeError, match="item 0"):
        SGD([np.zeros(2)], lr=0.1)
    with pytest.raises(ValueError, match="empty"):
        SGD([], lr=0.1)


# ---------------------------------------------------------------------------
# State and placement
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("opt_cls,kw", [(SGD, dict(momentum=0.9, weight_decay=0.01)),
                                        (SGD, dict(momentum=0.9, nesterov=True)),
                                        (MomentGD, dict(mu=0.9, weight_decay=0.01))])
def test_state_dict_roundtrip_resumes_identically(backend, opt_cls, kw):
    init, noise = problem(seed=4, steps=10)
    a = make_params(init, "float64")
    opt_a = opt_cls(a, lr=0.05, **kw)
    for t in range(5):
        set_grads(a, noise[t])
        opt_a.step()
    state = opt_a.state_dict()
    assert state["type"] == opt_cls.__name__ and state["step_count"] == 5
    assert state["hyperparameters"]["lr"] == 0.05
    b = make_params([nnx.to_numpy(p.data) for p in a], "float64")
    opt_b = opt_cls(b, lr=1.0)  # lr comes from the state
    opt_b.load_state_dict(state)
    assert opt_b.lr == 0.05 and opt_b.step_count == 5
    assert opt_b.hyperparameters() == opt_a.hyperparameters()
    for t in range(5, 10):
        set_grads(a, noise[t])
        set_grads(b, noise[t])
        opt_a.step()
        opt_b.step()
    for i, (p, q) in enumerate(zip(a, b)):
        np.testing.assert_array_equal(nnx.to_numpy(q.data), nnx.to_numpy(p.data), f"param {i}")


def test_state_dict_across_backends(backend, dtype):
    """Buffers saved on NumPy float64 land on the parameters' backend, device and dtype."""
    init, noise = problem(seed=5, steps=8)
    with nnx.use_backend("numpy"):
        a = make_params(init, "float64")
        opt_a = SGD(a, lr=0.05, momentum=0.9, weight_decay=0.01)
        for t in range(4):
            set_grads(a, noise[t])
            opt_a.step()
        state = opt_a.state_dict()
        host = [nnx.to_numpy(p.data).copy() for p in a]
    b = make_params(host, dtype)
    opt_b = SGD(b, lr=0.05, momentum=0.9, weight_decay=0.01)
    opt_b.load_state_dict(state)
    for i, (buf, p) in enumerate(zip(opt_b.buffers, b)):
        nt.check_placement(buf, p.data, dtype, f"buffer {i}")
        nt.assert_close(buf, nnx.to_numpy(opt_a.buffers[i]), dtype, f"buffer {i}")
    # loading copies: stepping the source does not change the loaded buffers
    saved = [nnx.to_numpy(buf).copy() for buf in opt_b.buffers]
    with nnx.use_backend("numpy"):
        set_grads(a, noise[4])
        opt_a.step()
    for i, buf in enumerate(opt_b.buffers):
        np.testing.assert_array_equal(nnx.to_numpy(buf), saved[i])
    for t in range(4, 8):
        set_grads(b, noise[t])
        opt_b.step()
    with nnx.use_backend("numpy"):
        for t in range(5, 8):
            set_grads(a, noise[t])
            opt_a.step()
    for i, (p, q) in enumerate(zip(a, b)):
        nt.check_placement(q.data, q.grad, dtype, f"param {i}")
        nt.assert_close(q.data, nnx.to_numpy(p.data), dtype, f"param {i} after resuming")


def test_load_state_dict_errors(backend):
    params = make_params(problem(steps=1)[0], "float32")
    opt = SGD(params, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="MomentGD"):
        opt.load_state_dict(MomentGD(params, lr=0.1).state_dict())
    bad = {"type": "SGD", "hyperparameters": {"lr": 0.1}, "step_count": 1,
           "buffers": {"0": np.zeros((5, 5), dtype=np.float32)}}
    with pytest.raises(ValueError, match="buffer 0 has shape"):
        opt.load_state_dict(bad)
    bad["buffers"] = {"7": np.zeros(3, dtype=np.float32)}
    with pytest.raises(ValueError, match="buffer 7"):
        opt.load_state_dict(bad)


@pytest.mark.parametrize("hyper,match", [
    ({"lr": -1.0}, "lr"),
    ({"lr": 0.1, "momentum": 1.5}, "momentum"),
    ({"lr": 0.1, "weight_decay": -0.1}, "weight_decay"),
    ({"lr": 0.1, "momentum": 0.0, "nesterov": True}, "nesterov"),
    ({"lr": 0.1, "nesterov": "yes"}, "nesterov"),
    ({"lr": 0.1, "betas": [0.9, 0.99]}, "betas"),
])
def test_load_state_dict_validates_hyperparameters_and_changes_nothing(backend, hyper, match):
    init, noise = problem(seed=8, steps=1)
    params = make_params(init, "float32")
    opt = SGD(params, lr=0.1, momentum=0.9, nesterov=True)
    set_grads(params, noise[0])
    opt.step()
    before = (opt.lr, opt.hyperparameters(), opt.step_count,
              [nnx.to_numpy(b).copy() for b in opt.buffers])
    state = opt.state_dict()
    state = {**state, "hyperparameters": hyper,
             "buffers": {k: nnx.to_numpy(v) * 0 for k, v in state["buffers"].items()},
             "step_count": 99}
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(state)
    assert (opt.lr, opt.hyperparameters(), opt.step_count) == before[:3]
    for b, saved in zip(opt.buffers, before[3]):
        np.testing.assert_array_equal(nnx.to_numpy(b), saved)


def test_load_state_dict_sets_hyperparameters():
    opt = MomentGD(_params(), lr=0.1, mu=0.5)
    opt.load_state_dict(MomentGD(_params(), lr=0.2, mu=0.8, weight_decay=0.01).state_dict())
    assert (opt.lr, opt.mu, opt.weight_decay) == (0.2, 0.8, 0.01)


@pytest.mark.parametrize("wd", [0.0, 0.01])
@pytest.mark.parametrize("opt_cls", [SGD, MomentGD])
def test_buffers_keep_parameter_placement(backend, dtype, opt_cls, wd):
    init, noise = problem(seed=6, steps=3)
    params = make_params(init, dtype)
    kw = dict(momentum=0.9) if opt_cls is SGD else dict(mu=0.9)
    opt = opt_cls(params, lr=0.1, weight_decay=wd, **kw)
    for t in range(3):
        set_grads(params, noise[t])
        grads_before = [nnx.to_numpy(p.grad).copy() for p in params]
        opt.step()
        for i, (p, buf) in enumerate(zip(params, opt.buffers)):
            nt.check_placement(buf, p.data, dtype, f"buffer {i}")
            nt.check_placement(p.data, p.grad, dtype, f"param {i}")
            np.testing.assert_array_equal(nnx.to_numpy(p.grad), grads_before[i])
    assert opt.step_count == 3


def test_buffers_on_strict_second_device():
    d1 = nt.make_backend("array_api_strict:device1")
    init, noise = problem(seed=7, steps=2)
    with nnx.use_backend(d1):
        params = make_params(init, "float32")
        for opt in (SGD(params, lr=0.1, momentum=0.9, weight_decay=0.1),
                    MomentGD(params, lr=0.1, weight_decay=0.1)):
            set_grads(params, noise[0])
            opt.step()
            for p, buf in zip(params, opt.buffers):
                assert "device1" in str(buf.device) and "device1" in str(p.data.device)
    # a NumPy state loads onto device1
    with nnx.use_backend("numpy"):
        host_params = make_params(init, "float32")
        host_opt = SGD(host_params, lr=0.1, momentum=0.9)
        set_grads(host_params, noise[1])
        host_opt.step()
    with nnx.use_backend(d1):
        opt = SGD(params, lr=0.1, momentum=0.9)
        opt.load_state_dict(host_opt.state_dict())
        assert all("device1" in str(b.device) for b in opt.buffers)


# ---------------------------------------------------------------------------
# Hyperparameter types (issue: SGD(model, lr=np.float32(0.1)) was refused)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("make,want", [
    (lambda p: SGD(p, lr=np.float32(0.5), momentum=np.float64(0.75), weight_decay=np.float32(0.25)),
     dict(lr=0.5, momentum=0.75, weight_decay=0.25)),
    (lambda p: SGD(p, lr=np.int64(1), momentum=np.float16(0.5)), dict(lr=1.0, momentum=0.5)),
    (lambda p: MomentGD(p, lr=np.float32(0.5), mu=np.float32(0.5), weight_decay=np.int32(0)),
     dict(lr=0.5, mu=0.5, weight_decay=0.0)),
], ids=["SGD-float", "SGD-int", "MomentGD"])
def test_numpy_scalar_hyperparameters_are_accepted(make, want):
    opt = make(_params())
    for key, value in want.items():
        got = getattr(opt, key)
        assert type(got) is float and got == value, (key, got)
    # and the same in load_state_dict
    state = opt.state_dict()
    state["hyperparameters"] = {k: np.float32(v) for k, v in want.items()}
    opt.load_state_dict(state)
    assert all(type(getattr(opt, k)) is float and getattr(opt, k) == v for k, v in want.items())


@pytest.mark.parametrize("cls,kw,arg", [
    (SGD, dict(lr=True), "lr"),
    (SGD, dict(lr=float("inf")), "lr"),
    (SGD, dict(lr=np.float32("nan")), "lr"),
    (SGD, dict(lr=10**400), "lr"),
    (SGD, dict(lr="0.1"), "lr"),
    (SGD, dict(lr=None), "lr"),
    (SGD, dict(lr=0.1, momentum=np.float64("nan")), "momentum"),
    (SGD, dict(lr=0.1, momentum=False), "momentum"),
    (SGD, dict(lr=0.1, weight_decay=float("inf")), "weight_decay"),
    (SGD, dict(lr=0.1, weight_decay=np.bool_(True)), "weight_decay"),
    (MomentGD, dict(lr=-np.inf), "lr"),
    (MomentGD, dict(lr=0.1, mu=float("nan")), "mu"),
    (MomentGD, dict(lr=0.1, mu=True), "mu"),
    (MomentGD, dict(lr=0.1, weight_decay=-float("inf")), "weight_decay"),
])
def test_bools_and_non_finite_hyperparameters_are_refused(cls, kw, arg):
    with pytest.raises(ValueError) as info:
        cls(_params(), **kw)
    msg = str(info.value)
    assert msg.startswith(f"{cls.__name__}: {arg} must "), msg
    assert "\n" not in msg


@pytest.mark.parametrize("hyper,match", [
    ({"lr": float("inf")}, r"^SGD.load_state_dict: lr must be finite, got inf$"),
    ({"lr": True}, r"^SGD.load_state_dict: lr must be a real number, got True"),
    ({"weight_decay": float("inf")}, r"^SGD.load_state_dict: weight_decay must be finite"),
    ({"momentum": float("nan")}, r"^SGD.load_state_dict: momentum must be finite"),
])
def test_load_state_dict_refuses_bools_and_non_finite_values(hyper, match):
    opt = SGD(_params(), lr=0.1, momentum=0.9)
    state = {**opt.state_dict(), "hyperparameters": {"lr": 0.1, **hyper}}
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(state)
    assert (opt.lr, opt.momentum, opt.weight_decay) == (0.1, 0.9, 0.0)


@pytest.mark.parametrize("change,match", [
    (dict(step_count="3"), "step_count must be an int >= 0, got '3'"),
    (dict(step_count=-1), "step_count must be an int >= 0, got -1"),
    (dict(hyperparameters=[0.1]), "hyperparameters must be a dict"),
    (dict(buffers={"x": np.zeros(3)}), "buffer key 'x' is not a parameter index"),
])
def test_load_state_dict_refuses_malformed_state(change, match):
    opt = SGD(_params(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=rf"^SGD.load_state_dict: {match}"):
        opt.load_state_dict({**opt.state_dict(), **change})
    assert opt.step_count == 0


# ---------------------------------------------------------------------------
# Buffers follow their parameters after model.to(...)
# ---------------------------------------------------------------------------


def _mlp_and_optimizer(opt_cls):
    nnx.manual_seed(3)
    with nnx.use_backend("numpy"):
        model = nnx.models.MLP((6, 8, 3))
    kw = dict(momentum=0.9) if opt_cls is SGD else dict(mu=0.9)
    return model, opt_cls(model, lr=0.1, weight_decay=1e-3, **kw)


def _mlp_batches(n):
    rng = np.random.default_rng(11)
    return [(rng.standard_normal((5, 6)), rng.integers(0, 3, 5)) for _ in range(n)]


def _train(model, opt, data, be, dtype):
    loss = nnx.CrossEntropyLoss()
    for x, y in data:
        loss(model(nnx.asarray(x, be, dtype=dtype)), nnx.asarray(y, be))
        model.backward(loss.backward())
        opt.step()


@pytest.mark.parametrize("opt_cls", [SGD, MomentGD])
def test_buffers_follow_the_parameters_after_model_to(backend, dtype, opt_cls):
    """Stepped on NumPy float32, then model.to(backend, dtype): further steps work, equal a
    run whose optimizer state was moved by hand, and the buffers live with the parameters."""
    if backend.name == "numpy" and dtype == "float32":
        pytest.skip("nothing moves")
    data = _mlp_batches(6)
    model, opt = _mlp_and_optimizer(opt_cls)
    ref_model, ref_opt = _mlp_and_optimizer(opt_cls)
    _train(model, opt, data[:3], "numpy", "float32")
    _train(ref_model, ref_opt, data[:3], "numpy", "float32")
    model.to(backend, dtype=dtype)
    ref_model.to(backend, dtype=dtype)
    ref_opt.load_state_dict(ref_opt.state_dict())  # moves the buffers to the parameters
    _train(model, opt, data[3:], backend, dtype)
    _train(ref_model, ref_opt, data[3:], backend, dtype)
    for i, (p, q) in enumerate(zip(model.parameters(), ref_model.parameters())):
        nt.check_placement(opt.buffers[i], p.data, dtype, f"buffer {i}")
        np.testing.assert_array_equal(nnx.to_numpy(p.data), nnx.to_numpy(q.data), f"param {i}")
        np.testing.assert_array_equal(nnx.to_numpy(opt.buffers[i]),
                                      nnx.to_numpy(ref_opt.buffers[i]), f"buffer {i}")


@pytest.mark.parametrize("opt_cls", [SGD, MomentGD])
def test_buffers_follow_a_float64_move_like_a_float64_run(opt_cls):
    """After model.to(dtype="float64") the buffers are float64 and the run continues as a
    NumPy float64 run started from the same state (no float32 rounding left in them)."""
    data = _mlp_batches(6)
    model, opt = _mlp_and_optimizer(opt_cls)
    _train(model, opt, data[:3], "numpy", "float32")
    ref_model, ref_opt = _mlp_and_optimizer(opt_cls)
    ref_model.load_state_dict(model.state_dict())
    ref_model.to(dtype="float64")
    ref_opt.load_state_dict(opt.state_dict())  # buffers converted to float64 by the load
    model.to(dtype="float64")
    _train(model, opt, data[3:], "numpy", "float64")
    _train(ref_model, ref_opt, data[3:], "numpy", "float64")
    for i, (p, q) in enumerate(zip(model.parameters(), ref_model.parameters())):
        assert opt.buffers[i].dtype == np.float64 and p.data.dtype == np.float64
        np.testing.assert_array_equal(p.data, q.data, f"param {i}")


def test_buffers_follow_a_device_move():
    d0, d1 = nt.make_backend("array_api_strict"), nt.make_backend("array_api_strict:device1")
    data = _mlp_batches(4)
    model, opt = _mlp_and_optimizer(SGD)
    model.to(d0)
    _train(model, opt, data[:2], d0, "float32")
    model.to(device=d1.device)
    _train(model, opt, data[2:], d1, "float32")
    for i, (p, buf) in enumerate(zip(model.parameters(), opt.buffers)):
        assert "device1" in str(buf.device), i
        nt.check_placement(buf, p.data, "float32", f"buffer {i}")


def test_repr_and_lr_attribute():
    opt = SGD(_params(), lr=0.1, momentum=0.9)
    assert opt.lr == 0.1 and "momentum=0.9" in repr(opt)
    opt.lr = 0.01
    assert opt.state_dict()["hyperparameters"]["lr"] == 0.01


@pytest.mark.parametrize("make", [lambda ps: SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: nnx.optim.Adam(ps, lr=0.1)])
def test_a_parameter_that_never_had_a_gradient_does_not_block_resuming(make):
    """Such a parameter keeps no state; its state_dict still loads (a parameter with only
    part of its state, or a group with none, is refused: tests/test_cli_hostile.py)."""
    params = [nnx.Parameter(nnx.asarray(np.ones(3, np.float32))),
              nnx.Parameter(nnx.asarray(np.ones(2, np.float32)))]
    opt = make(params)
    params[0].grad = nnx.asarray(np.full(3, 0.5, np.float32))
    opt.step()
    again = make(params)
    again.load_state_dict(opt.state_dict())
    assert again.step_count == 1 and again.state[1] == {}
