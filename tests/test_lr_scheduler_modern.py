"""The schedulers beyond the closed forms: CosineAnnealingLR, LinearLR,
OneCycleLR (with momentum / β₁ cycling), SequentialLR and ReduceLROnPlateau, and every
scheduler over several parameter groups.

Each sequence is checked against torch.optim.lr_scheduler (when torch is installed) to
1e-12 relative, and, so that the suite checks without torch, against NumPy float64
closed forms or hand-derived sequences written here. CosineAnnealingLR and LinearLR
follow PyTorch's recursions; over these 300 steps they stay within 1e-13 relative of
the closed form (measured: 7.4e-14 worst, T_max=7 through 40 periods), so the closed
form is checked to 1e-12 relative as well.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import nnx
from nnx import lr_scheduler as nls
from nnx.optim import SGD, MomentGD, Optimizer

GROUP_LRS = {"one group": [0.1], "two groups": [0.1, 0.02]}
STEPS = 300


def _torch():
    return pytest.importorskip("torch")


class BetaOpt(Optimizer):
    """An Adam-like stand-in: a ``betas`` hyperparameter, whose β₁ OneCycleLR cycles."""

    def __init__(self, params, lr, betas=(0.9, 0.999), weight_decay=0.0):
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    def _check_hyper(self, hyper, owner):
        b1, b2 = hyper["betas"]
        return {"betas": (float(b1), float(b2)), "weight_decay": float(hyper["weight_decay"])}

    def _update(self, xp, p, state, group):
        p.data -= group["lr"] * p.grad


def make_opt(lrs, cls=SGD, **kwargs):
    params = [nnx.Parameter(nnx.asarray(np.zeros(3))) for _ in lrs]
    return cls([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], lr=lrs[0], **kwargs)


def make_torch_opt(torch, lrs, name="SGD", **kwargs):
    params = [torch.zeros(3, requires_grad=True) for _ in lrs]
    return getattr(torch.optim, name)([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)],
                                      lr=lrs[0], **kwargs)


def group_lrs(opt):
    return [g["lr"] for g in opt.param_groups]


# name -> builder(module, optimizer, n_groups): the same call on nnx and torch
SCHEDULES = {
    "StepLR": lambda m, o, n: m.StepLR(o, step_size=7, gamma=0.5),
    "MultiStepLR": lambda m, o, n: m.MultiStepLR(o, milestones=[10, 30, 30, 80], gamma=0.3),
    "ExponentialLR": lambda m, o, n: m.ExponentialLR(o, gamma=0.99),
    "CosineAnnealingLR": lambda m, o, n: m.CosineAnnealingLR(o, T_max=40),
    "CosineAnnealingLR-eta": lambda m, o, n: m.CosineAnnealingLR(o, T_max=7, eta_min=1e-3),
    "CosineAnnealingLR-1": lambda m, o, n: m.CosineAnnealingLR(o, T_max=1, eta_min=0.01),
    "CosineAnnealingLR-long": lambda m, o, n: m.CosineAnnealingLR(o, T_max=1000, eta_min=1e-4),
    "LinearLR": lambda m, o, n: m.LinearLR(o),
    "LinearLR-warmup": lambda m, o, n: m.LinearLR(o, start_factor=0.05, end_factor=0.5,
                                                   total_iters=40),
    "LinearLR-decay": lambda m, o, n: m.LinearLR(o, start_factor=1.0, end_factor=0.0,
                                                  total_iters=17),
    "OneCycleLR": lambda m, o, n: m.OneCycleLR(o, max_lr=1.0, total_steps=STEPS),
    "OneCycleLR-3": lambda m, o, n: m.OneCycleLR(o, max_lr=[1.0, 0.3][:n], epochs=30,
                                                 steps_per_epoch=10, three_phase=True,
                                                 pct_start=0.25, div_factor=10.0,
                                                 final_div_factor=100.0),
    "OneCycleLR-linear": lambda m, o, n: m.OneCycleLR(o, max_lr=0.5, total_steps=STEPS,
                                                      anneal_strategy="linear", pct_start=0.4),
    "SequentialLR": lambda m, o, n: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.1, total_iters=20),
            m.CosineAnnealingLR(o, T_max=100, eta_min=1e-4)], milestones=[20]),
    "SequentialLR-3": lambda m, o, n: m.SequentialLR(
        o, [m.LinearLR(o), m.StepLR(o, step_size=10, gamma=0.5), m.ExponentialLR(o, gamma=0.97)],
        milestones=[10, 50]),
    "SequentialLR-0": lambda m, o, n: m.SequentialLR(
        o, [m.ExponentialLR(o, gamma=0.9), m.CosineAnnealingLR(o, T_max=30)], milestones=[0]),
    "SequentialLR-repeated": lambda m, o, n: m.SequentialLR(
        o, [m.LinearLR(o), m.MultiStepLR(o, milestones=[0, 3], gamma=0.5),
            m.CosineAnnealingLR(o, T_max=13, eta_min=0.01)], milestones=[5, 5]),
    "SequentialLR-cos-then-decay": lambda m, o, n: m.SequentialLR(
        o, [m.CosineAnnealingLR(o, T_max=30),
            m.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=50)], milestones=[30]),
}


def build(module, name, opt):
    return SCHEDULES[name](module, opt, len(opt.param_groups))


def n_values(name):
    """How many learning rates the run sees: t = 0..300 (OneCycleLR: t = total_steps is
    PyTorch's last allowed step), but t = 0..299 for the linear OneCycleLR, whose
    extrapolation at t = total_steps is negative (refused; see below)."""
    return STEPS if name == "OneCycleLR-linear" else STEPS + 1


# ---------------------------------------------------------------------------
# The same values as PyTorch, one and two parameter groups
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("groups", list(GROUP_LRS))
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_same_sequence_as_torch(name, groups):
    torch = _torch()
    lrs = GROUP_LRS[groups]
    opt, topt = make_opt(lrs, momentum=0.9), make_torch_opt(torch, lrs, momentum=0.9)
    sched, tsched = build(nls, name, opt), build(torch.optim.lr_scheduler, name, topt)
    for t in range(n_values(name)):
        ours, theirs = sched.get_last_lr(), tsched.get_last_lr()
        assert isinstance(ours, list) and len(ours) == len(lrs)
        assert sched.last_epoch == tsched.last_epoch == t
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0, err_msg=f"t={t}")
        np.testing.assert_allclose(group_lrs(opt), group_lrs(topt), rtol=1e-12, atol=0)
        np.testing.assert_allclose([g["momentum"] for g in opt.param_groups],
                                   [g["momentum"] for g in topt.param_groups], rtol=1e-12, atol=0)
        if t < n_values(name) - 1:
            topt.step()
            sched.step()
            tsched.step()
    if name.startswith("SequentialLR"):
        assert [s.last_epoch for s in sched.schedulers] == \
            [s.last_epoch for s in tsched._schedulers]


# ---------------------------------------------------------------------------
# Closed forms in NumPy float64 (no torch needed)
# ---------------------------------------------------------------------------


def cosine(lr0, t, T, eta=0.0):
    return eta + (lr0 - eta) * (1 + np.cos(np.pi * t / T)) / 2


def linear(lr0, t, s=1 / 3, e=1.0, T=5):
    return lr0 * (s + (e - s) * np.minimum(t, T) / T)


def one_cycle(max_lr, t, total, pct=0.3, div=25.0, final_div=1e4, three=False, anneal="cos",
              base_m=0.85, max_m=0.95):
    """(lr, momentum) at the float64 steps t: each phase anneals from its start to its end
    value as pct = (t − start)/(end − start) goes from 0 to 1."""
    init = max_lr / div
    low = init / final_div
    if three:
        phases = [(pct * total - 1, init, max_lr, max_m, base_m),
                  (2 * pct * total - 2, max_lr, init, base_m, max_m),
                  (total - 1, init, low, max_m, max_m)]
    else:
        phases = [(pct * total - 1, init, max_lr, max_m, base_m),
                  (total - 1, max_lr, low, base_m, max_m)]

    def ann(a, b, p):
        return b + (a - b) / 2 * (1 + np.cos(np.pi * p)) if anneal == "cos" else a + (b - a) * p

    lr, mom = np.full(t.shape, np.nan), np.full(t.shape, np.nan)
    done = np.zeros(t.shape, dtype=bool)
    start = 0.0
    for i, (end, a, b, ma, mb) in enumerate(phases):  # the first phase with t <= end, or the last
        mask = ~done & ((t <= end) | (i == len(phases) - 1))
        p = (t[mask] - start) / (end - start)
        lr[mask], mom[mask] = ann(a, b, p), ann(ma, mb, p)
        done |= mask
        start = end
    return lr, mom


def seq_warmup_cosine(lr0, t):
    return np.where(t < 20, linear(lr0, t, s=0.1, T=20), cosine(lr0, t - 20, 100, 1e-4))


def seq_three(lr0, t):
    return np.where(t < 10, linear(lr0, t), np.where(t < 50, lr0 * 0.5 ** ((t - 10) // 10),
                                                        lr0 * 0.97 ** (t - 50)))


CLOSED_FORMS = {
    "StepLR": lambda lr0, t: lr0 * 0.5 ** (t // 7),
    "MultiStepLR": lambda lr0, t: lr0 * 0.3 ** sum((t >= m).astype(int) for m in [10, 30, 30, 80]),
    "ExponentialLR": lambda lr0, t: lr0 * 0.99 ** t,
    "CosineAnnealingLR": lambda lr0, t: cosine(lr0, t, 40),
    "CosineAnnealingLR-eta": lambda lr0, t: cosine(lr0, t, 7, 1e-3),
    "CosineAnnealingLR-1": lambda lr0, t: cosine(lr0, t, 1, 0.01),
    "CosineAnnealingLR-long": lambda lr0, t: cosine(lr0, t, 1000, 1e-4),
    "LinearLR": lambda lr0, t: linear(lr0, t),
    "LinearLR-warmup": lambda lr0, t: linear(lr0, t, 0.05, 0.5, 40),
    "LinearLR-decay": lambda lr0, t: linear(lr0, t, 1.0, 0.0, 17),
    "OneCycleLR": lambda lr0, t: one_cycle(1.0, t, STEPS)[0],
    "OneCycleLR-linear": lambda lr0, t: one_cycle(0.5, t, STEPS, pct=0.4, anneal="linear")[0],
    "SequentialLR": seq_warmup_cosine,
    "SequentialLR-3": seq_three,
    "SequentialLR-cos-then-decay": lambda lr0, t: np.where(
        t < 30, cosine(lr0, t, 30), linear(lr0, t - 30, 1.0, 0.1, 50)),
}


@pytest.mark.parametrize("groups", list(GROUP_LRS))
@pytest.mark.parametrize("name", list(CLOSED_FORMS))
def test_closed_form_over_300_steps(name, groups):
    lrs = GROUP_LRS[groups]
    opt = make_opt(lrs, momentum=0.9)
    sched = build(nls, name, opt)
    t = np.arange(n_values(name), dtype=np.float64)
    seen = []
    for step in range(n_values(name)):
        seen.append(sched.get_last_lr())
        assert group_lrs(opt) == seen[-1] and sched.last_epoch == step
        if step < n_values(name) - 1:
            sched.step()
    seen = np.array(seen)
    for g, lr0 in enumerate(lrs):
        # OneCycleLR's groups share max_lr here; the others scale each group's own lr0
        expected = CLOSED_FORMS[name](lr0, t)
        np.testing.assert_allclose(seen[:, g], expected, rtol=1e-12, atol=0, err_msg=f"group {g}")


def test_base_lrs_are_each_groups_initial_lr():
    opt = make_opt([0.1, 0.02, 0.5])
    sched = nls.CosineAnnealingLR(opt, T_max=10)
    assert sched.base_lrs == [0.1, 0.02, 0.5] and sched.get_last_lr() == [0.1, 0.02, 0.5]
    sched.step()
    assert sched.get_last_lr() == pytest.approx([cosine(b, 1, 10) for b in (0.1, 0.02, 0.5)],
                                                rel=1e-15, abs=0)
    opt.lr = 0.3  # PyTorch's recursion continues from the groups' current learning rates
    sched.step()
    ratio = (1 + math.cos(2 * math.pi / 10)) / (1 + math.cos(math.pi / 10))
    assert sched.get_last_lr() == pytest.approx([0.3 * ratio] * 3, rel=1e-15, abs=0)
    # OneCycleLR starts from max_lr / div_factor, not from the group's lr
    opt = make_opt([0.1, 0.02], momentum=0.9)
    oc = nls.OneCycleLR(opt, max_lr=[2.0, 0.5], total_steps=10)
    assert oc.base_lrs == [2.0 / 25.0, 0.5 / 25.0]
    # t = 0 anneals max_lr → lr_i at pct 0: lr_i up to rounding, as PyTorch
    assert group_lrs(opt) == pytest.approx(oc.base_lrs, rel=1e-15, abs=0)


def test_linear_and_cosine_hand_values():
    opt = make_opt([0.3])
    sched = nls.LinearLR(opt, start_factor=0.5, end_factor=1.0, total_iters=4)
    seen = []
    for _ in range(7):
        seen.append(opt.lr)
        sched.step()
    assert seen == pytest.approx([0.15, 0.1875, 0.225, 0.2625, 0.3, 0.3, 0.3], rel=1e-15, abs=0)
    opt = make_opt([1.0])
    sched = nls.CosineAnnealingLR(opt, T_max=4, eta_min=0.2)
    seen = []
    for _ in range(9):
        seen.append(opt.lr)
        sched.step()
    half = 0.2 + 0.8 * (1 + math.cos(math.pi / 4)) / 2
    low = 0.2 + 0.8 * (1 - math.cos(math.pi / 4)) / 2
    assert seen == pytest.approx([1.0, half, 0.6, low, 0.2, low, 0.6, half, 1.0], rel=1e-15, abs=0)


# ---------------------------------------------------------------------------
# OneCycleLR: momentum and β₁
# ---------------------------------------------------------------------------


def test_one_cycle_hand_values():
    opt = make_opt([0.1], momentum=0.5)
    sched = nls.OneCycleLR(opt, max_lr=1.0, total_steps=100)
    seen = {}
    for t in range(101):
        seen[t] = (opt.lr, opt.param_groups[0]["momentum"])
        if t < 100:
            sched.step()
    assert seen[0] == pytest.approx((0.04, 0.95), rel=1e-15, abs=0)
    assert seen[29] == pytest.approx((1.0, 0.85), rel=1e-15, abs=0)  # pct_start·N − 1
    assert seen[99] == pytest.approx((4e-6, 0.95), rel=1e-12, abs=0)  # N − 1: lr_i / 1e4
    lr, mom = one_cycle(1.0, np.arange(101.0), 100)
    np.testing.assert_allclose([seen[t][0] for t in range(101)], lr, rtol=1e-12, atol=0)
    np.testing.assert_allclose([seen[t][1] for t in range(101)], mom, rtol=1e-12, atol=0)


def test_one_cycle_three_phase_momentum_closed_form():
    opt = make_opt([0.1, 0.1], momentum=0.9)
    sched = nls.OneCycleLR(opt, max_lr=[1.0, 0.3], epochs=30, steps_per_epoch=10,
                           three_phase=True, pct_start=0.25, div_factor=10.0,
                           final_div_factor=100.0, base_momentum=[0.8, 0.7],
                           max_momentum=[0.9, 0.95])
    assert sched.total_steps == 300
    seen = []
    for t in range(301):
        seen.append([(g["lr"], g["momentum"]) for g in opt.param_groups])
        if t < 300:
            sched.step()
    seen = np.array(seen)
    t = np.arange(301.0)
    for g, (mx, bm, mm) in enumerate([(1.0, 0.8, 0.9), (0.3, 0.7, 0.95)]):
        lr, mom = one_cycle(mx, t, 300, pct=0.25, div=10.0, final_div=100.0, three=True,
                            base_m=bm, max_m=mm)
        np.testing.assert_allclose(seen[:, g, 0], lr, rtol=1e-12, atol=0)
        np.testing.assert_allclose(seen[:, g, 1], mom, rtol=1e-12, atol=0)


def beta_optimizers():
    """(label, nnx class, torch class name): the stand-in always; nnx's own Adam-likes once
    nnx.optim exports them."""
    out = [pytest.param(BetaOpt, "Adam", id="stand-in")]
    for name in ("Adam", "AdamW"):
        if hasattr(nnx.optim, name):
            out.append(pytest.param(getattr(nnx.optim, name), name, id=name))
    return out


@pytest.mark.parametrize("cls,tname", beta_optimizers())
@pytest.mark.parametrize("groups", list(GROUP_LRS))
def test_one_cycle_cycles_beta1_as_torch(cls, tname, groups):
    lrs = GROUP_LRS[groups]
    opt = make_opt(lrs, cls=cls, betas=(0.9, 0.99))
    sched = nls.OneCycleLR(opt, max_lr=[0.01, 0.004][:len(lrs)], total_steps=STEPS,
                           base_momentum=0.8, max_momentum=0.92)
    t = np.arange(STEPS + 1.0)
    seen = []
    for step in range(STEPS + 1):
        seen.append([g["betas"] for g in opt.param_groups])
        assert all(isinstance(b, tuple) and b[1] == 0.99 for b in seen[-1])
        if step < STEPS:
            sched.step()
    seen = np.array(seen)
    _, mom = one_cycle(0.01, t, STEPS, base_m=0.8, max_m=0.92)
    for g in range(len(lrs)):
        np.testing.assert_allclose(seen[:, g, 0], mom, rtol=1e-12, atol=0)
    try:
        import torch
    except ImportError:
        return
    topt = make_torch_opt(torch, lrs, tname, betas=(0.9, 0.99))
    tsched = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=[0.01, 0.004][:len(lrs)],
                                                 total_steps=STEPS, base_momentum=0.8,
                                                 max_momentum=0.92)
    theirs = []
    for step in range(STEPS + 1):
        theirs.append([g["betas"] for g in topt.param_groups])
        if step < STEPS:
            topt.step()
            tsched.step()
    np.testing.assert_allclose(seen, np.array(theirs), rtol=1e-12, atol=0)


@pytest.mark.skipif(not hasattr(nnx.optim, "RMSprop"), reason="nnx.optim.RMSprop not exported yet")
def test_one_cycle_cycles_rmsprop_momentum_as_torch():
    torch = _torch()
    opt = make_opt([0.1], cls=nnx.optim.RMSprop, momentum=0.5)
    topt = make_torch_opt(torch, [0.1], "RMSprop", momentum=0.5)
    sched = nls.OneCycleLR(opt, max_lr=0.05, total_steps=50)
    tsched = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=0.05, total_steps=50)
    for _ in range(50):
        assert opt.param_groups[0]["momentum"] == pytest.approx(
            topt.param_groups[0]["momentum"], rel=1e-12, abs=0)
        sched.step()
        topt.step()
        tsched.step()


def test_one_cycle_sets_momentum_at_construction_and_needs_one():
    opt = make_opt([0.1, 0.2], momentum=0.0)  # SGD without momentum: cycling turns it on
    nls.OneCycleLR(opt, max_lr=0.1, total_steps=10, max_momentum=[0.9, 0.93])
    assert [g["momentum"] for g in opt.param_groups] == pytest.approx([0.9, 0.93], rel=1e-15)
    opt = make_opt([0.1], momentum=0.5)
    nls.OneCycleLR(opt, max_lr=0.1, total_steps=10, cycle_momentum=False)
    assert opt.param_groups[0]["momentum"] == 0.5
    mgd = make_opt([0.1], cls=MomentGD, mu=0.9)
    with pytest.raises(ValueError, match=r"^OneCycleLR: cycle_momentum=True needs an optimizer "
                                         r"with a 'momentum' or 'betas' hyperparameter; MomentGD"):
        nls.OneCycleLR(mgd, max_lr=0.1, total_steps=10)
    assert mgd.lr == 0.1 and mgd.param_groups[0]["mu"] == 0.9
    sched = nls.OneCycleLR(mgd, max_lr=0.1, total_steps=10, cycle_momentum=False)
    assert mgd.lr == pytest.approx(0.004, rel=1e-15) and mgd.param_groups[0]["mu"] == 0.9
    sched.step()


def test_one_cycle_past_total_steps_is_an_error_changing_nothing():
    opt = make_opt([0.1], momentum=0.9)
    sched = nls.OneCycleLR(opt, max_lr=1.0, total_steps=20)
    for _ in range(20):
        sched.step()  # t = 20 = total_steps: PyTorch's last allowed step
    lr, mom = opt.lr, opt.param_groups[0]["momentum"]
    with pytest.raises(ValueError, match=r"^OneCycleLR: tried to step 21 times; total_steps is 20$"):
        sched.step()
    assert sched.last_epoch == 20 and opt.lr == lr and opt.param_groups[0]["momentum"] == mom
    assert sched.get_last_lr() == [lr]


def test_one_cycle_past_total_steps_torch_agrees():
    torch = _torch()
    topt = make_torch_opt(torch, [0.1], momentum=0.9)
    tsched = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=1.0, total_steps=20)
    for _ in range(20):
        topt.step()
        tsched.step()
    with pytest.raises(ValueError, match="Tried to step 21 times"):
        tsched.step()


def test_one_cycle_refuses_a_negative_extrapolated_lr_and_an_empty_last_phase():
    """At t = total_steps PyTorch extrapolates the last phase: linearly below lr_min, even
    below 0 (nnx refuses a negative lr); and with pct_start=1 PyTorch divides by zero."""
    opt = make_opt([0.1], momentum=0.9)
    sched = nls.OneCycleLR(opt, max_lr=1.0, total_steps=30, anneal_strategy="linear",
                           three_phase=True, pct_start=0.25)
    for _ in range(29):
        sched.step()
    with pytest.raises(ValueError, match=r"^OneCycleLR: the learning rate of parameter group 0 "
                                         r"at step 30 is -"):
        sched.step()
    assert sched.last_epoch == 29
    opt = make_opt([0.1], momentum=0.9)
    sched = nls.OneCycleLR(opt, max_lr=1.0, total_steps=10, pct_start=1.0)
    for _ in range(9):
        sched.step()
    assert opt.lr == pytest.approx(1.0, rel=1e-15)
    with pytest.raises(ValueError, match=r"^OneCycleLR: step 10 falls in an empty last phase"):
        sched.step()


# ---------------------------------------------------------------------------
# SequentialLR
# ---------------------------------------------------------------------------


def test_sequential_warmup_then_cosine_hand_values():
    opt = make_opt([0.1, 0.5])
    warm = nls.LinearLR(opt, start_factor=0.25, total_iters=4)
    cos = nls.CosineAnnealingLR(opt, T_max=8, eta_min=0.0)
    assert cos.base_lrs == [0.1 * 0.25, 0.5 * 0.25]  # built after the warm-up changed the lrs
    sched = nls.SequentialLR(opt, [warm, cos], milestones=[4])
    assert cos.base_lrs == warm.base_lrs == sched.base_lrs == [0.1, 0.5]  # PyTorch's initial_lr
    assert (warm.last_epoch, cos.last_epoch, sched.last_epoch) == (0, -1, 0)
    seen = []
    for _ in range(14):
        seen.append(sched.get_last_lr())
        assert group_lrs(opt) == seen[-1]
        sched.step()
    assert (warm.last_epoch, cos.last_epoch, sched.last_epoch) == (3, 10, 14)
    factors = [0.25, 0.4375, 0.625, 0.8125] + [(1 + math.cos(math.pi * k / 8)) / 2
                                               for k in range(10)]
    for g, lr0 in enumerate([0.1, 0.5]):
        assert [row[g] for row in seen] == pytest.approx([lr0 * f for f in factors], rel=1e-14,
                                                         abs=0)


@pytest.mark.parametrize("make,exc,match", [
    (lambda o, p: nls.SequentialLR(o, [], milestones=[]), ValueError,
     r"^SequentialLR: schedulers must hold at least one scheduler"),
    (lambda o, p: nls.SequentialLR(o, [nls.LinearLR(o), object()], milestones=[3]), TypeError,
     r"^SequentialLR: schedulers\[1\] is a object, not an nnx scheduler"),
    (lambda o, p: nls.SequentialLR(o, [nls.LinearLR(o), nls.LinearLR(p)], milestones=[3]),
     ValueError, r"^SequentialLR: schedulers\[1\] \(LinearLR\) drives another optimizer"),
    (lambda o, p: nls.SequentialLR(o, [nls.LinearLR(o), nls.ReduceLROnPlateau(o)], [3]),
     ValueError, r"^SequentialLR: schedulers\[1\] is a ReduceLROnPlateau"),
    (lambda o, p: nls.SequentialLR(o, [nls.OneCycleLR(o, max_lr=1.0, total_steps=9)], []),
     ValueError, r"^SequentialLR: schedulers\[0\] is a OneCycleLR"),
    (lambda o, p: nls.SequentialLR(o, [nls.LinearLR(o), nls.LinearLR(o)], milestones=[]),
     ValueError, r"^SequentialLR: milestones must number one fewer than the schedulers \(2\), "
                 r"got 0"),
    (lambda o, p: nls.SequentialLR(o, [nls.LinearLR(o), nls.LinearLR(o), nls.LinearLR(o)],
                                   milestones=[5, 3]),
     ValueError, r"^SequentialLR: milestones must be sorted ints >= 0, got \[5, 3\]"),
    (lambda o, p: nls.SequentialLR(o, [nls.LinearLR(o), nls.LinearLR(o)], milestones=[2.5]),
     ValueError, r"^SequentialLR: milestones must be ints, got \[2.5\]"),
    (lambda o, p: nls.SequentialLR(o, [nls.LinearLR(o), nls.LinearLR(o)], milestones=[-1]),
     ValueError, r"^SequentialLR: milestones must be sorted ints >= 0"),
    (lambda o, p: (lambda s: nls.SequentialLR(o, [s, s], milestones=[2]))(nls.LinearLR(o)),
     ValueError, r"^SequentialLR: schedulers\[1\] is listed twice"),
    (lambda o, p: (lambda s: (s.step(), nls.SequentialLR(o, [s], milestones=[])))(
        nls.LinearLR(o)),
     ValueError, r"^SequentialLR: schedulers\[0\] \(LinearLR\) has been stepped \(last_epoch 1\)"),
    (lambda o, p: nls.SequentialLR(p, [nls.LinearLR(p)], milestones=[], last_epoch=3),
     ValueError, r"^SequentialLR: only last_epoch=-1 is supported, got 3"),
    (lambda o, p: nls.SequentialLR(object(), [nls.LinearLR(p)], milestones=[]), TypeError,
     r"^SequentialLR: expected an nnx optimizer, got object"),
])
def test_sequential_refuses(make, exc, match):
    opt, other = make_opt([0.1]), make_opt([0.2])
    with pytest.raises(exc, match=match):
        make(opt, other)


# ---------------------------------------------------------------------------
# ReduceLROnPlateau
# ---------------------------------------------------------------------------

# name -> (constructor arguments, group lrs, metrics, expected lrs after each step per group)
PLATEAU = {
    "min-abs": (dict(mode="min", factor=0.5, patience=2, threshold=0.1, threshold_mode="abs"),
                [1.0],
                [5.0, 4.95, 4.8, 4.8, 4.8, 4.75, 4.6, 4.6, 4.6, 4.6, 4.6, 4.6, 4.6],
                [[1, 1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]]),
    "max-rel-cooldown-min_lr": (
        dict(mode="max", factor=0.1, patience=1, threshold=0.01, threshold_mode="rel",
             cooldown=2, min_lr=[0.002, 0.0]),
        [0.1, 0.05],
        [0.5, 0.6, 0.605, 0.603, 0.61, 0.62, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6],
        [[0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.002, 0.002, 0.002, 0.002, 0.002, 0.002, 0.002],
         [0.05, 0.05, 0.05, 0.005, 0.005, 0.005, 0.005, 5e-4, 5e-4, 5e-4, 5e-4, 5e-5, 5e-5, 5e-5]]),
    "min-rel-default-threshold-nan": (
        dict(patience=1), [0.2],
        [1.0, 0.99995, 0.99989, float("nan"), 0.9999, 0.5, float("inf"), 0.5],
        [[0.2, 0.2, 0.2, 0.2, 0.02, 0.02, 0.02, 0.002]]),
    "max-abs-min_lr-scalar": (
        dict(mode="max", factor=0.5, patience=0, threshold=0.5, threshold_mode="abs",
             min_lr=0.3), [1.0, 2.0],
        [1.0, 1.4, 1.6, 1.0, 1.0, 1.0, 3.0, 3.2],
        [[1.0, 0.5, 0.5, 0.3, 0.3, 0.3, 0.3, 0.3], [2.0, 1.0, 1.0, 0.5, 0.3, 0.3, 0.3, 0.3]]),
    "eps-keeps-a-tiny-step": (
        dict(factor=0.5, patience=0, eps=1e-8), [1e-8, 1.0], [1.0, 2.0, 3.0],
        [[1e-8, 1e-8, 1e-8], [1.0, 0.5, 0.25]]),
}


@pytest.mark.parametrize("name", list(PLATEAU))
def test_plateau_scripted_metrics(name):
    kwargs, lrs, metrics, expected = PLATEAU[name]
    opt = make_opt(lrs)
    sched = nls.ReduceLROnPlateau(opt, **kwargs)
    assert sched.needs_metric is True and sched.last_epoch == 0
    assert sched.get_last_lr() == lrs and sched.base_lrs == lrs
    seen = []
    for m in metrics:
        sched.step(m)
        seen.append(group_lrs(opt))
        assert sched.get_last_lr() == seen[-1]
    assert sched.last_epoch == len(metrics)
    for g in range(len(lrs)):
        assert [row[g] for row in seen] == pytest.approx(expected[g], rel=1e-12, abs=0)


@pytest.mark.parametrize("name", list(PLATEAU))
def test_plateau_same_as_torch(name):
    torch = _torch()
    kwargs, lrs, metrics, _ = PLATEAU[name]
    opt, topt = make_opt(lrs), make_torch_opt(torch, lrs)
    sched = nls.ReduceLROnPlateau(opt, **kwargs)
    tsched = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kwargs)
    for m in metrics:
        sched.step(m)
        tsched.step(m)
        np.testing.assert_allclose(sched.get_last_lr(), tsched.get_last_lr(), rtol=1e-12, atol=0)
        assert (sched.num_bad_epochs, sched.cooldown_counter, sched.last_epoch) == \
            (tsched.num_bad_epochs, tsched.cooldown_counter, tsched.last_epoch)
        assert sched.best == tsched.best or (math.isnan(sched.best) and math.isnan(tsched.best))


def test_plateau_metric_types():
    opt = make_opt([1.0])
    sched = nls.ReduceLROnPlateau(opt, patience=0)
    sched.step(np.float32(2.0))
    sched.step(np.array(3.0))  # a 0-d array
    assert sched.best == 2.0 and opt.lr == pytest.approx(0.1, rel=1e-15)
    for bad in ("1.0", True, None, [1.0, 2.0]):
        with pytest.raises(ValueError, match=r"^ReduceLROnPlateau: metrics must be a real number"):
            sched.step(bad)
    assert sched.last_epoch == 2
    with pytest.raises(TypeError):
        sched.step()  # the Trainer must pass the metric (needs_metric)


def test_needs_metric_flags():
    opt = make_opt([0.1])
    assert nls.LRScheduler.needs_metric is False
    for sched in (nls.StepLR(opt, 2), nls.CosineAnnealingLR(opt, 5), nls.LinearLR(opt),
                  nls.OneCycleLR(make_opt([0.1], momentum=0.9), max_lr=1.0, total_steps=5)):
        assert sched.needs_metric is False
    assert nls.ReduceLROnPlateau.needs_metric is True
    assert isinstance(nls.ReduceLROnPlateau(opt), nls.LRScheduler)


# ---------------------------------------------------------------------------
# State: JSON round trips mid-sequence continue identically
# ---------------------------------------------------------------------------


def json_round_trip(state):
    return json.loads(json.dumps(state, allow_nan=False))


@pytest.mark.parametrize("groups", list(GROUP_LRS))
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_state_dict_json_round_trip_continues_identically(name, groups):
    lrs = GROUP_LRS[groups]
    opt = make_opt(lrs, momentum=0.9)
    sched = build(nls, name, opt)
    for _ in range(137):
        sched.step()
    state = json_round_trip(sched.state_dict())
    assert state["type"] == type(sched).__name__ and state["last_epoch"] == 137
    assert len(state["base_lrs"]) == len(lrs)
    opt2 = make_opt([0.7] * len(lrs), momentum=0.3)  # whatever the resumed optimizer starts with
    sched2 = build(nls, name, opt2)
    sched2.load_state_dict(state)
    assert sched2.last_epoch == 137 and sched2.base_lrs == sched.base_lrs
    for _ in range(n_values(name) - 1 - 137):
        assert group_lrs(opt2) == group_lrs(opt) and sched2.get_last_lr() == sched.get_last_lr()
        if name.startswith("OneCycleLR"):  # the others leave the momentum alone
            assert [g["momentum"] for g in opt2.param_groups] == \
                [g["momentum"] for g in opt.param_groups]
        sched.step()
        sched2.step()
    assert sched2.state_dict() == sched.state_dict()


@pytest.mark.parametrize("name", list(PLATEAU))
def test_plateau_state_round_trip_continues_identically(name):
    kwargs, lrs, metrics, _ = PLATEAU[name]
    opt = make_opt(lrs)
    sched = nls.ReduceLROnPlateau(opt, **kwargs)
    fresh = json_round_trip(sched.state_dict())
    assert fresh["best"] == ("inf" if kwargs.get("mode", "min") == "min" else "-inf")
    cut = len(metrics) // 2 + 1
    for m in metrics[:cut]:
        sched.step(m)
    state = json_round_trip(sched.state_dict())
    for key in ("best", "num_bad_epochs", "cooldown_counter", "last_epoch", "last_lr", "min_lrs"):
        assert key in state
    opt2 = make_opt([0.9] * len(lrs))
    sched2 = nls.ReduceLROnPlateau(opt2, **kwargs)
    sched2.load_state_dict(state)
    assert group_lrs(opt2) == group_lrs(opt)
    for m in metrics[cut:]:
        sched.step(m)
        sched2.step(m)
        assert group_lrs(opt2) == group_lrs(opt)
    assert sched2.state_dict() == sched.state_dict()
    sched2.load_state_dict(fresh)
    assert sched2.best == (math.inf if kwargs.get("mode", "min") == "min" else -math.inf)


def test_checkpoint_round_trip_through_nnx_save(tmp_path):
    """The states go through nnx.save / nnx.load (JSON metadata) and restore()."""
    nnx.manual_seed(0)
    cases = [
        lambda o: nls.SequentialLR(o, [nls.LinearLR(o, total_iters=3),
                                       nls.CosineAnnealingLR(o, T_max=10)], milestones=[3]),
        lambda o: nls.OneCycleLR(o, max_lr=0.5, total_steps=30),
        lambda o: nls.ReduceLROnPlateau(o, patience=1),
    ]
    for i, make in enumerate(cases):
        model = nnx.models.MLP((4, 3, 2))
        opt = nnx.optim.SGD(model, lr=0.1, momentum=0.9)
        sched = make(opt)
        for k in range(7):
            if sched.needs_metric:
                sched.step(1.0 + k % 2)
            else:
                sched.step()
        nnx.save(tmp_path / f"{i}.safetensors", model, opt, sched)
        model2 = nnx.models.MLP((4, 3, 2))
        opt2 = nnx.optim.SGD(model2, lr=0.1, momentum=0.5)
        sched2 = make(opt2)
        nnx.load(tmp_path / f"{i}.safetensors").restore(model2, opt2, sched2)
        assert sched2.state_dict() == sched.state_dict()
        assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
        assert opt2.param_groups[0]["momentum"] == opt.param_groups[0]["momentum"]


# ---------------------------------------------------------------------------
# load_state_dict validates before changing anything
# ---------------------------------------------------------------------------


def _cos(o):
    return nls.CosineAnnealingLR(o, T_max=10, eta_min=0.01)


@pytest.mark.parametrize("make,change,match", [
    (_cos, dict(T_max=11), "T_max is 10 here but 11 in the state"),
    (_cos, dict(eta_min=0.0), "eta_min is 0.01 here but 0.0 in the state"),
    (_cos, dict(last_lr=[0.1]), r"last_lr must be a list of 2 number\(s\), got a list of 1"),
    (_cos, dict(last_lr=[0.1, -1.0]), r"last_lr\[1\] must be >= 0, got -1.0"),
    (_cos, dict(last_lr=[0.1, "x"]), r"last_lr\[1\] must be a real number"),
    (_cos, dict(last_lr=None, drop=True), "the state has no 'last_lr'"),
    (_cos, dict(base_lrs=[0.1]), r"base_lrs must be a list of 2 number\(s\), got a list of 1"),
    (_cos, dict(type="LinearLR"), "state is for 'LinearLR'"),
    (lambda o: nls.LinearLR(o), dict(total_iters=6), "total_iters is 5 here but 6 in the state"),
    (lambda o: nls.LinearLR(o), dict(start_factor=0.5), "start_factor is 0.3333333333333333 here"),
    (lambda o: nls.OneCycleLR(o, max_lr=1.0, total_steps=20), dict(last_epoch=21),
     "tried to step 21 times; total_steps is 20"),
    (lambda o: nls.OneCycleLR(o, max_lr=1.0, total_steps=20), dict(max_lr=[1.0, 2.0]),
     r"max_lr is \[1.0, 1.0\] here but \[1.0, 2.0\] in the state"),
    (lambda o: nls.OneCycleLR(o, max_lr=1.0, total_steps=20), dict(base_lrs=[0.5, 0.5]),
     r"base_lrs is \[0.5, 0.5\] in the state but max_lr / div_factor is \[0.04, 0.04\] here"),
    (lambda o: nls.OneCycleLR(o, max_lr=1.0, total_steps=20), dict(three_phase=True),
     "three_phase is False here but True in the state"),
    (lambda o: nls.ReduceLROnPlateau(o, patience=3, cooldown=2), dict(num_bad_epochs=4),
     r"num_bad_epochs must be an int in \[0, patience 3\], got 4"),
    (lambda o: nls.ReduceLROnPlateau(o, patience=3, cooldown=2), dict(cooldown_counter=-1),
     r"cooldown_counter must be an int in \[0, cooldown 2\], got -1"),
    (lambda o: nls.ReduceLROnPlateau(o), dict(best="nan"), "best must be a number, 'inf' or "
                                                          "'-inf', got 'nan'"),
    (lambda o: nls.ReduceLROnPlateau(o), dict(best=None, drop=True), "the state has no 'best'"),
    (lambda o: nls.ReduceLROnPlateau(o), dict(mode="max"), "mode is 'min' here but 'max'"),
    (lambda o: nls.ReduceLROnPlateau(o), dict(min_lrs=[0.0]), r"min_lrs is \[0.0, 0.0\] here"),
])
def test_load_state_dict_refuses_and_changes_nothing(make, change, match):
    opt = make_opt([0.1, 0.2], momentum=0.9)
    sched = make(opt)
    for _ in range(3):
        if sched.needs_metric:
            sched.step(1.0)
        else:
            sched.step()
    before = (json.dumps(sched.state_dict()), json.dumps([
        {k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]))
    state = sched.state_dict()
    if change.pop("drop", False):
        state = {k: v for k, v in state.items() if k not in change}
    else:
        state.update(change)
    name = type(sched).__name__
    with pytest.raises(ValueError, match=rf"^{name}.load_state_dict: {match}"):
        sched.load_state_dict(state)
    after = (json.dumps(sched.state_dict()), json.dumps([
        {k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]))
    assert after == before


def test_sequential_load_state_dict_checks_its_schedulers():
    def make(o):
        return nls.SequentialLR(o, [nls.LinearLR(o, total_iters=4),
                                    nls.CosineAnnealingLR(o, T_max=10)], milestones=[4])

    opt = make_opt([0.1])
    sched = make(opt)
    for _ in range(6):
        sched.step()
    good = sched.state_dict()
    assert [s["type"] for s in good["schedulers"]] == ["LinearLR", "CosineAnnealingLR"]
    opt2 = make_opt([0.1])
    sched2 = make(opt2)
    lr = opt2.lr
    bad_sub = json_round_trip(good)
    bad_sub["schedulers"][1]["T_max"] = 12
    bad_pos = json_round_trip(good)
    bad_pos["schedulers"][1]["last_epoch"] = 5
    for state, match in [
        (bad_sub, r"^SequentialLR.load_state_dict: schedulers\[1\]: CosineAnnealingLR."
                  r"load_state_dict: T_max is 10 here but 12 in the state"),
        (bad_pos, r"^SequentialLR.load_state_dict: at step 6 schedulers\[1\] should be at step "
                  r"2, but its state has last_epoch 5"),
        ({**good, "milestones": [5]}, r"^SequentialLR.load_state_dict: milestones is \[4\] here"),
        ({**good, "schedulers": good["schedulers"][:1]},
         r"^SequentialLR.load_state_dict: schedulers must be a list of 2 states, got a list of 1"),
    ]:
        with pytest.raises(ValueError, match=match):
            sched2.load_state_dict(state)
        assert sched2.last_epoch == 0 and opt2.lr == lr
        assert [s.last_epoch for s in sched2.schedulers] == [0, -1]
    sched2.load_state_dict(json_round_trip(good))
    assert opt2.lr == opt.lr and [s.last_epoch for s in sched2.schedulers] == [3, 2]


# ---------------------------------------------------------------------------
# Bad arguments: one-line ValueErrors naming the class and the argument
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("make,match", [
    (lambda o: nls.CosineAnnealingLR(o, T_max=0), r"CosineAnnealingLR: T_max must be an int >= 1"),
    (lambda o: nls.CosineAnnealingLR(o, T_max=10.0), r"CosineAnnealingLR: T_max must be an int"),
    (lambda o: nls.CosineAnnealingLR(o, T_max=True), r"CosineAnnealingLR: T_max must be an int"),
    (lambda o: nls.CosineAnnealingLR(o, 10, eta_min=-0.1),
     r"CosineAnnealingLR: eta_min must be >= 0, got -0.1"),
    (lambda o: nls.CosineAnnealingLR(o, 10, eta_min=math.nan),
     r"CosineAnnealingLR: eta_min must be finite"),
    (lambda o: nls.CosineAnnealingLR(o, 10, last_epoch=4),
     r"CosineAnnealingLR: only last_epoch=-1 is supported, got 4"),
    (lambda o: nls.LinearLR(o, start_factor=0.0), r"LinearLR: start_factor must lie in \(0, 1\]"),
    (lambda o: nls.LinearLR(o, start_factor=1.5), r"LinearLR: start_factor must lie in \(0, 1\]"),
    (lambda o: nls.LinearLR(o, end_factor=-0.1), r"LinearLR: end_factor must lie in \[0, 1\]"),
    (lambda o: nls.LinearLR(o, end_factor=1.1), r"LinearLR: end_factor must lie in \[0, 1\]"),
    (lambda o: nls.LinearLR(o, total_iters=0), r"LinearLR: total_iters must be an int >= 1"),
    (lambda o: nls.LinearLR(o, start_factor="0.5"), r"LinearLR: start_factor must be a real"),
    (lambda o: nls.OneCycleLR(o, max_lr=1.0), r"OneCycleLR: give total_steps, or epochs and "
                                              r"steps_per_epoch"),
    (lambda o: nls.OneCycleLR(o, max_lr=1.0, epochs=3), r"OneCycleLR: give total_steps"),
    (lambda o: nls.OneCycleLR(o, max_lr=1.0, total_steps=0),
     r"OneCycleLR: total_steps must be an int >= 1, got 0"),
    (lambda o: nls.OneCycleLR(o, max_lr=1.0, total_steps=10.0),
     r"OneCycleLR: total_steps must be an int >= 1, got 10.0"),
    (lambda o: nls.OneCycleLR(o, max_lr=1.0, epochs=0, steps_per_epoch=3),
     r"OneCycleLR: epochs must be an int >= 1, got 0"),
    (lambda o: nls.OneCycleLR(o, max_lr=1.0, epochs=2, steps_per_epoch=-3),
     r"OneCycleLR: steps_per_epoch must be an int >= 1, got -3"),
    (lambda o: nls.OneCycleLR(o, max_lr=-1.0, total_steps=10),
     r"OneCycleLR: max_lr must be >= 0, got -1.0"),
    (lambda o: nls.OneCycleLR(o, max_lr=[1.0], total_steps=10),
     r"OneCycleLR: max_lr must be a number or a list of 2 \(one per parameter group\), got a "
     r"list of 1"),
    (lambda o: nls.OneCycleLR(o, max_lr=[1.0, math.inf], total_steps=10),
     r"OneCycleLR: max_lr\[1\] must be finite"),
    (lambda o: nls.OneCycleLR(o, max_lr=1.0, total_steps=10, pct_start=1.2),
     r"OneCycleLR: pct_start must lie in \[0, 1\], got 1.2"),
    (lambda o: nls.OneCycleLR(o, max_lr=1.0, total_steps=10, anneal_strategy="exp"),
     r"OneCycleLR: anneal_strategy must be one of 'cos', 'linear', got 'exp'"),
    (lambda o: nls.OneCycleLR(o, max_lr=1.0, total_steps=10, div_factor=0),
     r"OneCycleLR: div_factor must be > 0, got 0"),
    (lambda o: nls.OneCycleLR(o, max_lr=1.0, total_steps=10, final_div_factor=-1.0),
     r"OneCycleLR: final_div_factor must be > 0, got -1.0"),
    (lambda o: nls.OneCycleLR(o, max_lr=1.0, total_steps=10, max_momentum=1.0),
     r"OneCycleLR: max_momentum must lie in \[0, 1\), got 1.0"),
    (lambda o: nls.OneCycleLR(o, max_lr=1.0, total_steps=10, base_momentum=[0.8, -0.1]),
     r"OneCycleLR: base_momentum\[1\] must lie in \[0, 1\), got -0.1"),
    (lambda o: nls.OneCycleLR(o, max_lr=1.0, total_steps=10, three_phase=1),
     r"OneCycleLR: three_phase must be True or False, got 1"),
    (lambda o: nls.OneCycleLR(o, max_lr=1.0, total_steps=10, cycle_momentum="yes"),
     r"OneCycleLR: cycle_momentum must be True or False"),
    (lambda o: nls.ReduceLROnPlateau(o, mode="minimum"),
     r"ReduceLROnPlateau: mode must be one of 'min', 'max', got 'minimum'"),
    (lambda o: nls.ReduceLROnPlateau(o, threshold_mode="relative"),
     r"ReduceLROnPlateau: threshold_mode must be one of 'rel', 'abs'"),
    (lambda o: nls.ReduceLROnPlateau(o, factor=1.0), r"ReduceLROnPlateau: factor must lie in "
                                                     r"\[0, 1\), got 1.0"),
    (lambda o: nls.ReduceLROnPlateau(o, factor=-0.5), r"ReduceLROnPlateau: factor must lie in"),
    (lambda o: nls.ReduceLROnPlateau(o, patience=-1),
     r"ReduceLROnPlateau: patience must be an int >= 0, got -1"),
    (lambda o: nls.ReduceLROnPlateau(o, patience=2.0), r"ReduceLROnPlateau: patience must be an int"),
    (lambda o: nls.ReduceLROnPlateau(o, cooldown=-2),
     r"ReduceLROnPlateau: cooldown must be an int >= 0, got -2"),
    (lambda o: nls.ReduceLROnPlateau(o, threshold=-1e-4),
     r"ReduceLROnPlateau: threshold must be >= 0"),
    (lambda o: nls.ReduceLROnPlateau(o, threshold=1.0),
     r"ReduceLROnPlateau: threshold must be < 1 with threshold_mode 'rel', got 1.0"),
    (lambda o: nls.ReduceLROnPlateau(o, min_lr=[0.0]),
     r"ReduceLROnPlateau: min_lr must be a number or a list of 2 \(one per parameter group\)"),
    (lambda o: nls.ReduceLROnPlateau(o, min_lr=[0.0, -1.0]),
     r"ReduceLROnPlateau: min_lr\[1\] must be >= 0, got -1.0"),
    (lambda o: nls.ReduceLROnPlateau(o, eps=-1.0), r"ReduceLROnPlateau: eps must be >= 0"),
])
def test_invalid_arguments_name_the_class_and_argument(make, match):
    opt = make_opt([0.1, 0.2], momentum=0.5)
    with pytest.raises(ValueError, match="^" + match) as info:
        make(opt)
    assert "\n" not in str(info.value)
    # a refused scheduler leaves the optimizer alone
    assert group_lrs(opt) == [0.1, 0.2] and [g["momentum"] for g in opt.param_groups] == [0.5, 0.5]


def test_new_schedulers_need_an_nnx_optimizer():
    for make in (lambda o: nls.CosineAnnealingLR(o, 3), lambda o: nls.LinearLR(o),
                 lambda o: nls.OneCycleLR(o, max_lr=1.0, total_steps=3),
                 lambda o: nls.ReduceLROnPlateau(o)):
        with pytest.raises(TypeError, match="expected an nnx optimizer, got object"):
            make(object())


def test_numpy_scalars_are_accepted():
    opt = make_opt([0.1], momentum=0.9)
    sched = nls.OneCycleLR(opt, max_lr=np.float32(0.5), total_steps=np.int64(10),
                           pct_start=np.float64(0.3))
    assert sched.total_steps == 10 and type(sched.total_steps) is int
    assert json.dumps(sched.state_dict(), allow_nan=False)
    sched = nls.CosineAnnealingLR(make_opt([0.1]), T_max=np.int32(5), eta_min=np.float32(0.0))
    assert type(sched.T_max) is int and type(sched.eta_min) is float


@pytest.mark.parametrize("name", ["CosineAnnealingLR-eta", "CosineAnnealingLR-long", "LinearLR-warmup",
                                  "LinearLR-decay", "SequentialLR", "SequentialLR-cos-then-decay"])
def test_recursions_are_pytorchs_bit_for_bit(name):
    """Stricter than 1e-12: the recursions repeat PyTorch's operations in its order, so
    their values are PyTorch's exactly (a closed form would drift from them by ~1e-14)."""
    torch = _torch()
    opt, topt = make_opt([0.1, 0.02]), make_torch_opt(torch, [0.1, 0.02])
    sched, tsched = build(nls, name, opt), build(torch.optim.lr_scheduler, name, topt)
    for t in range(STEPS):
        assert sched.get_last_lr() == tsched.get_last_lr(), f"t={t}"
        topt.step()
        sched.step()
        tsched.step()
