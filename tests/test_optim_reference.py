"""Optimizers against an independent NumPy float64 reference, without
PyTorch: every SGD form and MomentGD on every backend, and load_state_dict leaving the
optimizer untouched when it rejects a state.

The reference is written from the formulas, with g = ∇ + λp (λ: the parameter's own
weight_decay, else the optimizer's):

- SGD (PyTorch's): b ← g on the first step, then b ← μb + g; d = g + μb (Nesterov),
  b (momentum) or g (μ = 0); p ← p − lr·d.
- MomentGD (the course report's form): v ← μv − lr·g (v₀ = 0); p ← p + v.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnx
import nnx.testing as nt
from nnx.optim import SGD, MomentGD

SHAPES = [(5, 3), (4,), (2, 3, 3, 3)]
STEPS = 24
LRS = {0: 0.1, 9: 0.03, 17: 0.2}  # the lr changes midway (set at these steps)
OWN_DECAYS = {"none": [None, None, None], "mixed": [0.2, None, 0.0]}


def reference(kind, init, grads, lr_at, mu, weight_decay, own, nesterov=False):
    """The parameters after each step, by the formulas above (host float64)."""
    ps = [a.copy() for a in init]
    bufs = [None] * len(ps)
    out = []
    for t, gs in enumerate(grads):
        lr = lr_at(t)
        for i, grad in enumerate(gs):
            lam = weight_decay if own[i] is None else own[i]
            g = grad + lam * ps[i]
            if kind == "MomentGD":
                bufs[i] = (0.0 if bufs[i] is None else mu * bufs[i]) - lr * g
                ps[i] = ps[i] + bufs[i]
            elif mu == 0.0:
                ps[i] = ps[i] - lr * g
            else:
                bufs[i] = g.copy() if bufs[i] is None else mu * bufs[i] + g
                d = g + mu * bufs[i] if nesterov else bufs[i]
                ps[i] = ps[i] - lr * d
        out.append([p.copy() for p in ps])
    return out


def lr_schedule(t):
    return LRS[max(k for k in LRS if k <= t)]


def problem(seed):
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s) for s in SHAPES]
    grads = [[rng.standard_normal(s) for s in SHAPES] for _ in range(STEPS)]
    return init, grads


def run(opt_cls, kw, dtype, own, seed):
    """Step an nnx optimizer through the problem; compare with the reference after each step."""
    init, grads = problem(seed)
    params = [nnx.Parameter(nnx.asarray(np.array(a, copy=True), dtype=dtype), wd)
              for a, wd in zip(init, own)]
    opt = opt_cls(params, **kw)
    if opt_cls is MomentGD:
        expected = reference("MomentGD", init, grads, lr_schedule, kw.get("mu", 0.9),
                             kw.get("weight_decay", 0.0), own)
    else:
        expected = reference("SGD", init, grads, lr_schedule, kw.get("momentum", 0.0),
                             kw.get("weight_decay", 0.0), own, kw.get("nesterov", False))
    for t in range(STEPS):
        if t in LRS:
            opt.lr = LRS[t]
        for p, g in zip(params, grads[t]):
            p.grad = nnx.asarray(g, dtype=dtype)
        opt.step()
        for i, p in enumerate(params):
            nt.check_placement(p.data, p.grad, dtype, f"param {i}")
            nt.assert_close(p.data, expected[t][i], dtype, f"{opt!r}: param {i} after step {t + 1}")
    assert opt.step_count == STEPS


SGD_FORMS = {
    "plain": dict(),
    "momentum": dict(momentum=0.9),
    "nesterov": dict(momentum=0.9, nesterov=True),
    "nesterov-mu0.5": dict(momentum=0.5, nesterov=True),
}


@pytest.mark.parametrize("own", OWN_DECAYS)
@pytest.mark.parametrize("wd", [0.0, 0.05])
@pytest.mark.parametrize("form", SGD_FORMS)
def test_sgd_matches_the_numpy_reference(backend, dtype, form, wd, own):
    """SGD plain / momentum / Nesterov, with and without weight decay, a parameter's own
    decay winning over the optimizer's, through lr changes: the formula, step by step."""
    run(SGD, dict(lr=LRS[0], weight_decay=wd, **SGD_FORMS[form]), dtype, OWN_DECAYS[own], seed=1)


@pytest.mark.parametrize("own", OWN_DECAYS)
@pytest.mark.parametrize("wd", [0.0, 0.05])
def test_momentgd_matches_the_numpy_reference(backend, dtype, wd, own):
    """MomentGD v ← μv − lr(g + λp), p ← p + v, through lr changes, step by step."""
    run(MomentGD, dict(lr=LRS[0], mu=0.8, weight_decay=wd), dtype, OWN_DECAYS[own], seed=2)


def test_reference_tells_the_forms_apart():
    """The reference itself: Nesterov, momentum and MomentGD give different trajectories
    on this problem (else the comparisons above could not tell a wrong form)."""
    init, grads = problem(1)
    own = OWN_DECAYS["mixed"]
    last = {
        "momentum": reference("SGD", init, grads, lr_schedule, 0.9, 0.05, own)[-1],
        "nesterov": reference("SGD", init, grads, lr_schedule, 0.9, 0.05, own, True)[-1],
        "moment_gd": reference("MomentGD", init, grads, lr_schedule, 0.9, 0.05, own)[-1],
        "plain": reference("SGD", init, grads, lr_schedule, 0.0, 0.05, own)[-1],
    }
    names = list(last)
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            gap = max(np.abs(x - y).max() for x, y in zip(last[names[a]], last[names[b]]))
            assert gap > 1e-2, f"{names[a]} and {names[b]} agree to {gap}"


# ---------------------------------------------------------------------------
# load_state_dict: a rejected state changes nothing
# ---------------------------------------------------------------------------


def snapshot(opt):
    return {"lr": opt.lr, "hyper": opt.hyperparameters(), "step_count": opt.step_count,
            "buffers": [None if b is None else nnx.to_numpy(b).copy() for b in opt.buffers]}


# each bad state also carries a different, valid lr and weight_decay (and momentum where
# it is not the bad one), so applying any of them before the check would show
BAD_STATES = {
    SGD: [
        ({"lr": 0.5, "momentum": 1.5, "weight_decay": 0.3, "nesterov": False}, "momentum"),
        ({"lr": 0.5, "momentum": 0.5, "weight_decay": -0.3, "nesterov": False}, "weight_decay"),
        ({"lr": 0.5, "momentum": 0.0, "weight_decay": 0.3, "nesterov": True}, "nesterov"),
        ({"lr": 0.5, "momentum": 0.5, "weight_decay": 0.3, "nesterov": False, "beta": 0.9},
         "beta"),
    ],
    MomentGD: [
        ({"lr": 0.5, "mu": 1.5, "weight_decay": 0.3}, "mu"),
        ({"lr": 0.5, "mu": -0.2, "weight_decay": 0.3}, "mu"),
        ({"lr": 0.5, "mu": 0.5, "weight_decay": -0.3}, "weight_decay"),
    ],
}
CASES = [(cls, hyper, match) for cls, cases in BAD_STATES.items() for hyper, match in cases]


@pytest.mark.parametrize("opt_cls,hyper,match", CASES,
                         ids=[f"{c.__name__}-{m}-{i}" for i, (c, _, m) in enumerate(CASES)])
def test_rejected_state_changes_nothing(opt_cls, hyper, match):
    """A state with a bad hyperparameter raises ValueError before anything is applied: lr,
    momentum, weight_decay, buffers and step count stay, and the next steps are the ones
    an optimizer that never saw the state takes."""
    init, grads = problem(3)
    kw = dict(momentum=0.9) if opt_cls is SGD else dict(mu=0.9)
    pa = [nnx.Parameter(nnx.asarray(np.array(a, copy=True), dtype="float64")) for a in init]
    pb = [nnx.Parameter(nnx.asarray(np.array(a, copy=True), dtype="float64")) for a in init]
    opt, twin = opt_cls(pa, lr=0.1, weight_decay=0.01, **kw), opt_cls(pb, lr=0.1, weight_decay=0.01, **kw)
    for t in range(2):
        for ps, o in ((pa, opt), (pb, twin)):
            for p, g in zip(ps, grads[t]):
                p.grad = nnx.asarray(g, dtype="float64")
            o.step()
    before = snapshot(opt)
    state = {"type": opt_cls.__name__, "hyperparameters": hyper, "step_count": 42,
             "buffers": {str(i): np.zeros(s) for i, s in enumerate(SHAPES)}}
    with pytest.raises(ValueError, match=match):
        opt.load_state_dict(state)
    after = snapshot(opt)
    assert after["lr"] == before["lr"], "the rejected state changed lr"
    assert after["hyper"] == before["hyper"], "the rejected state changed a hyperparameter"
    assert after["step_count"] == before["step_count"], "the rejected state changed step_count"
    for i, (b, saved) in enumerate(zip(after["buffers"], before["buffers"])):
        np.testing.assert_array_equal(b, saved, err_msg=f"buffer {i}")
    for t in range(2, 5):
        for ps, o in ((pa, opt), (pb, twin)):
            for p, g in zip(ps, grads[t]):
                p.grad = nnx.asarray(g, dtype="float64")
            o.step()
    for i, (p, q) in enumerate(zip(pa, pb)):
        np.testing.assert_array_equal(nnx.to_numpy(p.data), nnx.to_numpy(q.data),
                                      err_msg=f"param {i} after the rejected load")
