"""Parameter groups for every optimizer, PyTorch's form:
``SGD([{"params": [...], "weight_decay": 0.0}, {"params": [...]}], lr=0.1, momentum=0.9)``.

Trajectories with per-group lr / weight_decay / momentum / betas against torch.optim with
the same groups and against the NumPy float64 reference of tests/test_optim_adaptive.py;
a layer's own weight_decay winning over its group's; ``param_groups`` and ``lr``;
state_dict with groups; :func:`nnx.optim.weight_decay_groups`; bad groups.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_optim_adaptive import (
    CLASSES,
    SHAPES,
    STEPS,
    make_params,
    problem,
    reference,
    run_against,
)

import nnx
import nnx.testing as nt
from nnx.optim import SGD, Adam, AdamW, MomentGD, RMSprop, weight_decay_groups


def lr_change(groups):
    for g in groups:
        g["lr"] *= 0.3


def second_group_change(groups):
    """A scheduler that treats groups apart: only group 1's lr (and β₁ / momentum) moves."""
    g = groups[1]
    g["lr"] *= 2.0
    if "betas" in g:
        g["betas"] = (0.7, g["betas"][1])
    if g.get("momentum", 0.0) > 0.0:
        g["momentum"] = 0.5


EVENTS = {100: lr_change, 150: second_group_change}

# two groups: the first undecayed (as biases and norms usually are) with its own lr, the
# second with the constructor's settings, or its own weight_decay / momentum / betas
GROUPED = {
    "SGD-momentum": ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.05),
                     [([0], {"weight_decay": 0.0, "lr": 0.1}), ([1, 2], {})]),
    "SGD-nesterov": ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.05),
                     [([1], {"weight_decay": 0.0}), ([2, 0], {"momentum": 0.8, "lr": 0.02})]),
    "SGD-mixed": ("SGD", dict(lr=0.05), [([0, 2], {"momentum": 0.9}), ([1], {"weight_decay": 0.1})]),
    "Adam": ("Adam", dict(lr=0.01, weight_decay=0.05),
             [([0], {"weight_decay": 0.0, "lr": 0.02}), ([1, 2], {"betas": (0.8, 0.95)})]),
    "Adam-amsgrad-group": ("Adam", dict(lr=0.01),
                           [([0, 1], {"amsgrad": True, "betas": (0.9, 0.95)}), ([2], {"eps": 0.1})]),
    "AdamW": ("AdamW", dict(lr=0.01, weight_decay=0.1),
              [([0, 1], {"weight_decay": 0.0}), ([2], {"lr": 0.005, "weight_decay": 0.3})]),
    "RMSprop": ("RMSprop", dict(lr=0.005, momentum=0.5, weight_decay=0.05),
                [([2], {"weight_decay": 0.0, "centered": True}), ([0, 1], {"alpha": 0.9})]),
}


@pytest.mark.parametrize("name", GROUPED)
def test_groups_match_torch_and_the_reference(backend, dtype, name):
    """200 steps with two groups against torch.optim built from the same groups; every
    group's lr changes at step 100, group 1's lr and β₁ / momentum at step 150."""
    kind, kw, groups = GROUPED[name]
    run_against(kind, kw, dtype, seed=40, groups=groups, events=EVENTS, use_torch=True)


@pytest.mark.parametrize("name", GROUPED)
def test_groups_match_the_reference_with_own_decay(backend, dtype, name):
    """Without torch: the formulas, with a parameter's own weight_decay (set by a layer)
    winning over its group's (0.3 on parameter 0, 0.0 on parameter 2)."""
    kind, kw, groups = GROUPED[name]
    run_against(kind, kw, dtype, seed=41, groups=groups, events=EVENTS, own=[0.3, None, 0.0])


def test_the_groups_change_the_trajectories():
    """The reference itself: each grouped run differs from the ungrouped one, so the tests
    above see it when group settings are ignored."""
    init, noise = problem(40)
    for name, (kind, kw, groups) in GROUPED.items():
        grouped = reference(kind, kw, init, noise, groups=groups, events={100: lr_change})[-1]
        plain = reference(kind, kw, init, noise, events={100: lr_change})[-1]
        gap = max(np.abs(a - b).max() for a, b in zip(grouped, plain))
        assert gap > 1e-2, f"{name}: groups change nothing ({gap})"


# ---------------------------------------------------------------------------
# The param_groups and lr surface
# ---------------------------------------------------------------------------


def _params(n=3):
    return [nnx.Parameter(nnx.asarray(np.zeros(2, dtype=np.float32))) for _ in range(n)]


def test_param_groups_are_dicts_with_every_setting():
    a, b, c = _params()
    opt = SGD([{"params": [a], "weight_decay": 0.0}, {"params": (p for p in (b, c))}],
              lr=0.1, momentum=0.9)
    assert isinstance(opt.param_groups, list) and len(opt.param_groups) == 2
    assert opt.param_groups[0] == {"params": [a], "lr": 0.1, "momentum": 0.9, "weight_decay": 0.0,
                                   "nesterov": False}
    assert opt.param_groups[1] == {"params": [b, c], "lr": 0.1, "momentum": 0.9,
                                   "weight_decay": 0.0, "nesterov": False}
    assert opt.params == [a, b, c]
    adam = Adam([{"params": [a], "betas": [0.5, 0.6]}, {"params": [b], "lr": 0.5}], lr=0.01)
    assert adam.param_groups[0]["betas"] == (0.5, 0.6) and adam.param_groups[1]["betas"] == (0.9, 0.999)
    assert [g["lr"] for g in adam.param_groups] == [0.01, 0.5]
    rms = RMSprop([{"params": [c], "centered": True}])
    assert rms.param_groups[0]["centered"] is True and rms.centered is True


def test_lr_is_the_first_groups_and_assignment_sets_all():
    a, b, c = _params()
    opt = Adam([{"params": [a], "lr": 0.5}, {"params": [b, c]}], lr=0.01)
    assert opt.lr == 0.5
    opt.param_groups[0]["lr"] = 0.25
    assert opt.lr == 0.25
    opt.lr = 0.125
    assert [g["lr"] for g in opt.param_groups] == [0.125, 0.125]
    with pytest.raises(ValueError, match="^Adam: lr must be >= 0"):
        opt.lr = -1.0
    assert [g["lr"] for g in opt.param_groups] == [0.125, 0.125]
    assert opt.betas == (0.9, 0.999)  # the first group's, as lr
    assert "2 groups" in repr(opt)


def test_a_layers_own_weight_decay_wins_over_its_groups(backend, dtype):
    """Linear(weight_decay=0.5) in a group with weight_decay 0.0, its bias in a group with
    0.1: one SGD step W' = W − 0.1·(dW + 0.5·W), b' = b − 0.1·(db + 0.1·b)."""
    lin = nnx.Linear(2, 2, weight_decay=0.5, dtype=dtype)
    w = np.array([[1.0, 2.0], [3.0, 4.0]])
    b = np.array([1.0, -1.0])
    lin.weight.data = nnx.asarray(w.copy(), dtype=dtype)  # copies: NumPy float64 would share
    lin.bias.data = nnx.asarray(b.copy(), dtype=dtype)
    lin(nnx.asarray(np.array([[1.0, 2.0]]), dtype=dtype))
    lin.backward(nnx.asarray(np.array([[0.5, -1.0]]), dtype=dtype))
    dw, db = np.array([[0.5, -1.0], [1.0, -2.0]]), np.array([0.5, -1.0])
    SGD([{"params": [lin.weight], "weight_decay": 0.0}, {"params": [lin.bias], "weight_decay": 0.1}],
        lr=0.1).step()
    nt.assert_close(lin.weight.data, w - 0.1 * (dw + 0.5 * w), dtype, "weight")
    nt.assert_close(lin.bias.data, b - 0.1 * (db + 0.1 * b), dtype, "bias")


@pytest.mark.parametrize("cls", [SGD, MomentGD, Adam, AdamW, RMSprop])
def test_every_optimizer_takes_groups(backend, cls):
    """Two groups with different lr: each group moves by its own lr (lr 0 freezes one)."""
    init, noise = problem(42, steps=3)
    params = make_params(init, "float64")
    opt = cls([{"params": params[:1], "lr": 0.0}, {"params": params[1:]}], lr=0.01)
    for t in range(3):
        for p, r in zip(params, noise[t]):
            p.grad = nnx.asarray(r, dtype="float64")
        opt.step()
    np.testing.assert_array_equal(nnx.to_numpy(params[0].data), init[0])
    assert all(np.abs(nnx.to_numpy(p.data) - a).max() > 1e-4 for p, a in zip(params[1:], init[1:]))


# ---------------------------------------------------------------------------
# State with groups
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["SGD-nesterov", "Adam", "RMSprop"])
def test_state_dict_with_groups_resumes_on_another_backend(backend, dtype, name):
    """100 steps on NumPy float64, then the state (every group's settings, as changed midway)
    loaded on the backend under test into an optimizer built with other settings: the rest
    of the run is the uninterrupted reference."""
    kind, kw, groups = GROUPED[name]
    init, noise = problem(43)
    expected = reference(kind, kw, init, noise, groups=groups, events=EVENTS)
    with nnx.use_backend("numpy"):
        params = make_params(init, "float64")
        opt = CLASSES[kind]([{"params": [params[i] for i in idx], **o} for idx, o in groups], **kw)
        for t in range(120):
            if t in EVENTS:
                EVENTS[t](opt.param_groups)
            for p, r in zip(params, noise[t]):
                p.grad = nnx.asarray(r, dtype="float64") + 0.5 * p.data
            opt.step()
        state = opt.state_dict()
        host = [nnx.to_numpy(p.data).copy() for p in params]
    # the state names parameters by their index in opt.params (groups in order)
    assert [g["params"] for g in state["param_groups"]] == [
        [opt.params.index(params[i]) for i in idx] for idx, _ in groups]
    params = make_params(host, dtype)
    other = dict(lr=9.0) if kind != "SGD" else dict(lr=9.0, momentum=0.1, nesterov=True)
    opt = CLASSES[kind]([{"params": [params[i] for i in idx]} for idx, _ in groups], **other)
    opt.load_state_dict(state)
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in state["param_groups"]]
    for t in range(120, STEPS):
        if t in EVENTS:
            EVENTS[t](opt.param_groups)
        for p, r in zip(params, noise[t]):
            p.grad = nnx.asarray(r, dtype=dtype) + 0.5 * p.data
        opt.step()
    for i, p in enumerate(params):
        nt.assert_close(p.data, expected[-1][i], dtype, f"{name}: param {i} after resuming")


def test_load_state_dict_checks_the_partition():
    a, b, c = _params()
    opt = SGD([{"params": [a]}, {"params": [b, c]}], lr=0.1)
    with pytest.raises(ValueError, match=r"parameter group 0 holds parameters \[0, 1\] there, \[0\] here"):
        opt.load_state_dict(SGD([{"params": [a, b]}, {"params": [c]}], lr=0.1).state_dict())
    with pytest.raises(ValueError, match="the state has 1 parameter groups, this optimizer 2"):
        opt.load_state_dict(SGD([a, b, c], lr=0.1).state_dict())
    with pytest.raises(ValueError, match=r"^SGD.load_state_dict: group 1: momentum must lie"):
        state = opt.state_dict()
        state["param_groups"][1]["momentum"] = 2.0
        opt.load_state_dict(state)


# ---------------------------------------------------------------------------
# weight_decay_groups
# ---------------------------------------------------------------------------


def _convnet(dtype="float32"):
    return nnx.Sequential(nnx.Conv2d(1, 2, 3, dtype=dtype), nnx.BatchNorm2d(2, dtype=dtype),
                          nnx.ReLU(), nnx.Flatten(), nnx.Linear(8, 3, dtype=dtype))


def test_weight_decay_groups_puts_every_one_dimensional_parameter_apart():
    model = _convnet()
    named = dict(model.named_parameters())
    groups = weight_decay_groups(model, 0.05)
    assert [sorted(g) for g in groups] == [["params", "weight_decay"]] * 2
    assert groups[0]["weight_decay"] == 0.05 and groups[1]["weight_decay"] == 0.0
    assert groups[0]["params"] == [named["0.weight"], named["4.weight"]]
    assert groups[1]["params"] == [named["0.bias"], named["1.weight"], named["1.bias"],
                                   named["4.bias"]]
    # Parameters, and a group that would be empty is left out
    only_biases = [named["0.bias"], named["4.bias"]]
    assert weight_decay_groups(only_biases, 0.1) == [{"params": only_biases, "weight_decay": 0.0}]
    opt = AdamW(weight_decay_groups(model, 0.05), lr=1e-3)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), True, "0.1"])
def test_weight_decay_groups_validates(bad):
    with pytest.raises(ValueError, match="^weight_decay_groups: weight_decay must"):
        weight_decay_groups(_convnet(), bad)


def test_weight_decay_groups_train_like_torch(backend, dtype):
    """AdamW over weight_decay_groups(params, 0.1) for a weight (4, 3), a bias (3,) and a
    kernel (2, 2, 3, 3) is torch's AdamW with the weight and kernel decayed, the bias not."""
    init, _ = problem(44, steps=1)
    params = make_params(init, dtype)
    groups = weight_decay_groups(params, 0.1)
    assert [g["params"] for g in groups] == [[params[0], params[2]], [params[1]]]
    assert SHAPES == [(4, 3), (3,), (2, 2, 3, 3)]
    run_against("AdamW", dict(lr=0.01), dtype, seed=44, use_torch=True,
                groups=[([0, 2], {"weight_decay": 0.1}), ([1], {"weight_decay": 0.0})])


# ---------------------------------------------------------------------------
# Bad groups
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("make,exc,match", [
    (lambda a, b, c: SGD([{"params": [a]}, {"params": [b], "betas": (0.9, 0.9)}], lr=0.1),
     ValueError, "^SGD: parameter group 1 has unknown settings betas"),
    (lambda a, b, c: Adam([{"params": [a]}, {"params": [b], "momentum": 0.9}]),
     ValueError, "^Adam: parameter group 1 has unknown settings momentum"),
    (lambda a, b, c: SGD([{"params": [a, b]}, {"params": [b]}], lr=0.1),
     ValueError, "^SGD: a parameter is in groups 0 and 1"),
    (lambda a, b, c: RMSprop([{"params": [a, a]}]), ValueError, "^RMSprop: a parameter is listed twice"),
    (lambda a, b, c: Adam([{"params": [a]}, {"lr": 0.1}]), ValueError,
     "^Adam: parameter group 1 has no 'params'"),
    (lambda a, b, c: Adam([{"params": []}]), ValueError, "^Adam: parameter group 0: .*empty"),
    (lambda a, b, c: Adam([{"params": [a]}, b]), TypeError, "^Adam: give either Parameters or"),
    (lambda a, b, c: SGD([{"params": [a]}, {"params": [b], "momentum": 1.5}], lr=0.1),
     ValueError, r"^SGD group 1: momentum must lie in \[0, 1\)"),
    (lambda a, b, c: Adam([{"params": [a], "betas": (0.9, 1.0)}]),
     ValueError, r"^Adam group 0: betas\[1\] must lie in \[0, 1\)"),
    (lambda a, b, c: RMSprop([{"params": [a]}, {"params": [b], "alpha": -1.0}]),
     ValueError, "^RMSprop group 1: alpha must"),
    (lambda a, b, c: AdamW([{"params": [a], "lr": float("nan")}]), ValueError, "^AdamW group 0: lr must"),
])
def test_bad_groups_raise_one_line(make, exc, match):
    with pytest.raises(exc, match=match) as info:
        make(*_params())
    assert "\n" not in str(info.value)
