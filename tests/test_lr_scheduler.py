"""Learning-rate schedulers StepLR, MultiStepLR, ExponentialLR: the same sequences as
torch.optim.lr_scheduler, closed forms with no drift, validation, state."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnx
from nnx import lr_scheduler as nls
from nnx.optim import SGD, MomentGD

LR0 = 0.1


def _torch():
    return pytest.importorskip("torch")


def make_opt(lr=LR0, cls=SGD):
    p = nnx.Parameter(nnx.asarray(np.zeros(3, dtype=np.float32)))
    return cls([p], lr=lr)


# name -> (nnx/torch constructor arguments, closed form of lr(t)/lr0)
SCHEDULES = {
    "StepLR": (dict(step_size=7, gamma=0.5), lambda t: 0.5 ** (t // 7)),
    "StepLR-1": (dict(step_size=1, gamma=0.97), lambda t: 0.97 ** t),
    "MultiStepLR": (dict(milestones=[10, 30, 30, 80, 81], gamma=0.3),
                    lambda t: 0.3 ** sum(m <= t for m in [10, 30, 30, 80, 81])),
    "MultiStepLR-0": (dict(milestones=[0, 5], gamma=0.1),
                      lambda t: 0.1 ** sum(m <= t for m in [0, 5])),
    "ExponentialLR": (dict(gamma=0.97), lambda t: 0.97 ** t),
    "ExponentialLR-up": (dict(gamma=1.01), lambda t: 1.01 ** t),
}


def build(module, name, opt):
    kwargs, _ = SCHEDULES[name]
    return getattr(module, name.split("-")[0])(opt, **kwargs)


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_same_sequence_as_torch(name):
    torch = _torch()
    opt = make_opt()
    sched = build(nls, name, opt)
    topt = torch.optim.SGD([torch.zeros(3, requires_grad=True)], lr=LR0)
    tsched = build(torch.optim.lr_scheduler, name, topt)
    assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12, abs=0)
    for t in range(150):
        ours, theirs = sched.get_last_lr(), tsched.get_last_lr()
        assert isinstance(ours, list) and len(ours) == 1
        assert sched.last_epoch == tsched.last_epoch == t
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0, err_msg=f"t={t}")
        np.testing.assert_allclose(opt.lr, topt.param_groups[0]["lr"], rtol=1e-12, atol=0)
        sched.step()
        topt.step()
        tsched.step()


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_closed_form_over_150_steps(name):
    _, form = SCHEDULES[name]
    opt = make_opt()
    sched = build(nls, name, opt)
    assert sched.base_lrs == [LR0]
    for t in range(150):
        assert sched.last_epoch == t
        assert opt.lr == pytest.approx(LR0 * form(t), rel=1e-15, abs=0)
        assert sched.get_last_lr() == [opt.lr]
        sched.step()


@pytest.mark.parametrize("name,kwargs,factor", [
    ("ExponentialLR", dict(gamma=0.9993), lambda t: 0.9993 ** t),
    ("StepLR", dict(step_size=1, gamma=0.99), lambda t: 0.99 ** t),
    ("StepLR", dict(step_size=3, gamma=0.9993), lambda t: 0.9993 ** (t // 3)),
    ("MultiStepLR", dict(milestones=list(range(1, 10001)), gamma=0.9993),
     lambda t: 0.9993 ** t),
])
def test_no_drift_after_10000_steps(name, kwargs, factor):
    """Repeated multiplication drifts by several 1e-15 relative after 10,000 steps with
    these gammas (7.6e-15 for 0.9993, 8.2e-15 for 0.99); the closed form does not."""
    opt = make_opt()
    sched = getattr(nls, name)(opt, **kwargs)
    for _ in range(10_000):
        sched.step()
    assert sched.last_epoch == 10_000
    expected = LR0 * factor(10_000)
    assert opt.lr == pytest.approx(expected, rel=1e-15, abs=0)
    assert sched.get_last_lr()[0] == pytest.approx(expected, rel=1e-15, abs=0)


def test_closed_form_exponent_counts_repeated_milestones():
    opt = make_opt(lr=1.0)
    sched = nls.MultiStepLR(opt, milestones=[2, 2, 2], gamma=0.5)
    lrs = []
    for _ in range(4):
        lrs.append(opt.lr)
        sched.step()
    assert lrs == [1.0, 1.0, 0.125, 0.125]


def test_scheduler_drives_momentgd_too():
    opt = make_opt(lr=0.2, cls=MomentGD)
    sched = nls.StepLR(opt, step_size=2, gamma=0.5)
    seen = []
    for _ in range(5):
        seen.append(opt.lr)
        sched.step()
    assert seen == [0.2, 0.2, 0.1, 0.1, 0.05]


def test_scheduler_sets_lr_used_by_step(backend):
    p = nnx.Parameter(nnx.asarray(np.zeros(1)))
    opt = SGD([p], lr=1.0)
    sched = nls.StepLR(opt, step_size=1, gamma=0.5)
    expected = 0.0
    for t in range(4):
        p.grad = nnx.asarray(np.ones(1))
        opt.step()
        expected -= 0.5 ** t
        sched.step()
    assert float(nnx.to_numpy(p.data)[0]) == expected


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("make,arg", [
    (lambda o: nls.StepLR(o, step_size=0), "step_size"),
    (lambda o: nls.StepLR(o, step_size=-3), "step_size"),
    (lambda o: nls.StepLR(o, step_size=2.0), "step_size"),
    (lambda o: nls.StepLR(o, step_size=2, gamma=0.0), "gamma"),
    (lambda o: nls.StepLR(o, step_size=2, gamma=-0.1), "gamma"),
    (lambda o: nls.MultiStepLR(o, milestones=[5, 3]), "milestones"),
    (lambda o: nls.MultiStepLR(o, milestones=[-1, 3]), "milestones"),
    (lambda o: nls.MultiStepLR(o, milestones=[1.5]), "milestones"),
    (lambda o: nls.MultiStepLR(o, milestones=[1, 2], gamma=0), "gamma"),
    (lambda o: nls.ExponentialLR(o, gamma=0.0), "gamma"),
    (lambda o: nls.ExponentialLR(o, gamma=-1.0), "gamma"),
    (lambda o: nls.ExponentialLR(o, gamma=math.inf), "gamma"),
])
def test_invalid_arguments_name_the_argument(make, arg):
    opt = make_opt()
    with pytest.raises(ValueError, match=arg):
        make(opt)
    assert opt.lr == LR0  # a refused scheduler leaves the optimizer alone


def test_scheduler_needs_an_nnx_optimizer():
    with pytest.raises(TypeError, match="optimizer"):
        nls.StepLR(object(), step_size=1)


def test_empty_milestones_keep_lr():
    opt = make_opt()
    sched = nls.MultiStepLR(opt, milestones=[])
    for _ in range(5):
        sched.step()
    assert opt.lr == LR0


# ---------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["StepLR", "MultiStepLR", "ExponentialLR"])
def test_state_dict_roundtrip(name):
    opt = make_opt()
    sched = build(nls, name, opt)
    for _ in range(25):
        sched.step()
    state = sched.state_dict()
    assert state["last_epoch"] == 25 and state["base_lrs"] == [LR0]
    opt2 = make_opt(lr=LR0 * 0.1 ** 25)  # whatever lr the resumed optimizer starts with
    sched2 = build(nls, name, opt2)
    sched2.load_state_dict(state)
    assert sched2.last_epoch == 25 and sched2.base_lrs == [LR0]
    assert opt2.lr == opt.lr and sched2.get_last_lr() == sched.get_last_lr()
    for _ in range(30):
        sched.step()
        sched2.step()
        assert opt2.lr == opt.lr


def test_load_state_dict_checks_type_and_config():
    opt = make_opt()
    sched = nls.StepLR(opt, step_size=5)
    with pytest.raises(ValueError, match="ExponentialLR"):
        sched.load_state_dict(nls.ExponentialLR(make_opt(), gamma=0.5).state_dict())
    with pytest.raises(ValueError, match="step_size"):
        sched.load_state_dict(nls.StepLR(make_opt(), step_size=6).state_dict())


# ---------------------------------------------------------------------------
# Overflow and malformed state
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("make,bad_step,k", [
    (lambda o: nls.StepLR(o, step_size=1, gamma=1e200), 2, 2),
    (lambda o: nls.StepLR(o, step_size=3, gamma=1e200), 6, 2),
    (lambda o: nls.MultiStepLR(o, milestones=[1, 4], gamma=1e200), 4, 2),
    (lambda o: nls.ExponentialLR(o, gamma=1e200), 2, 2),
], ids=["StepLR", "StepLR-3", "MultiStepLR", "ExponentialLR"])
def test_gamma_overflow_is_a_value_error_naming_the_step(make, bad_step, k):
    """gamma**k beyond the float range: a ValueError naming the scheduler, gamma and the
    step (not OverflowError (34, 'Numerical result out of range')); nothing changes."""
    opt = make_opt()
    sched = make(opt)
    for _ in range(bad_step - 1):
        sched.step()
    lr = opt.lr
    name = type(sched).__name__
    with pytest.raises(ValueError, match=rf"^{name}: the learning rate overflows at step "
                                         rf"{bad_step}: lr0 0.1 \* gamma 1e\+200 \*\* {k} "):
        sched.step()
    assert sched.last_epoch == bad_step - 1 and opt.lr == lr and sched.get_last_lr() == [lr]


def test_a_learning_rate_that_becomes_inf_is_refused():
    """1e300 · 10^9 is inf without any OverflowError from the power: refused too."""
    opt = make_opt(lr=1e300)
    sched = nls.ExponentialLR(opt, gamma=10.0)
    for _ in range(8):
        sched.step()
    assert opt.lr == 1e300 * 10.0 ** 8
    with pytest.raises(ValueError, match=r"^ExponentialLR: the learning rate overflows at step "
                                         r"9: lr0 1e\+300 \* gamma 10.0 \*\* 9"):
        sched.step()
    assert sched.last_epoch == 8 and math.isfinite(opt.lr)
    # and a state that would put it there
    state = {**sched.state_dict(), "last_epoch": 400}
    with pytest.raises(ValueError, match=r"^ExponentialLR.load_state_dict: the learning rate "
                                         r"overflows at step 400"):
        sched.load_state_dict(state)
    assert sched.last_epoch == 8


@pytest.mark.parametrize("change,match", [
    (dict(last_epoch="x"), "last_epoch must be an int >= 0, got 'x'"),
    (dict(last_epoch=2.5), "last_epoch must be an int >= 0, got 2.5"),
    (dict(last_epoch=None), "last_epoch must be an int >= 0, got None"),
    (dict(last_epoch=True), "last_epoch must be an int >= 0, got True"),
    (dict(last_epoch=-3), "last_epoch must be an int >= 0, got -3"),
    (dict(base_lrs="x"), "base_lrs must be a list of 1 number"),
    (dict(base_lrs=[]), "base_lrs must be a list of 1 number"),
    (dict(base_lrs=[float("nan")]), r"base_lrs\[0\] must be finite"),
    (dict(base_lrs=["0.1"]), r"base_lrs\[0\] must be a real number"),
    (dict(base_lrs=[-0.1]), r"base_lrs\[0\] must be >= 0"),
    (dict(last_epoch=None, base_lrs=None, drop=True), "the state has no 'last_epoch'"),
])
def test_load_state_dict_refuses_malformed_values(change, match):
    opt = make_opt()
    sched = nls.StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(3):
        sched.step()
    state = sched.state_dict()
    if change.pop("drop", False):
        state = {k: v for k, v in state.items() if k not in change}
    else:
        state.update(change)
    with pytest.raises(ValueError, match=rf"^StepLR.load_state_dict: {match}"):
        sched.load_state_dict(state)
    assert sched.last_epoch == 3 and sched.base_lrs == [LR0] and opt.lr == LR0 * 0.5


def test_constructor_last_epoch_and_numpy_gamma():
    with pytest.raises(ValueError, match=r"^StepLR: only last_epoch=-1 is supported, got 'x'"):
        nls.StepLR(make_opt(), step_size=2, last_epoch="x")
    opt = make_opt()
    sched = nls.ExponentialLR(opt, gamma=np.float32(0.5))  # a NumPy scalar, as the optimizers
    sched.step()
    assert type(sched.gamma) is float and opt.lr == LR0 * 0.5


def test_scheduler_and_optimizer_state_resume_together(backend):
    """A checkpoint of optimizer + scheduler (state dicts) resumes the same trajectory."""
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(4) for _ in range(20)]

    def run(steps, resume_from=None):
        p = nnx.Parameter(nnx.asarray(np.ones(4)))
        opt = SGD([p], lr=0.1, momentum=0.9)
        sched = nls.MultiStepLR(opt, milestones=[3, 6, 6, 12], gamma=0.5)
        start = 0
        if resume_from is not None:
            p.data = nnx.asarray(resume_from[0])
            opt.load_state_dict(resume_from[1])
            sched.load_state_dict(resume_from[2])
            start = resume_from[2]["last_epoch"]
        for t in range(start, steps):
            p.grad = nnx.asarray(grads[t])
            opt.step()
            sched.step()
        return p, opt, sched

    p_full, _, _ = run(20)
    p_half, opt_half, sched_half = run(9)
    ckpt = (nnx.to_numpy(p_half.data).copy(), opt_half.state_dict(), sched_half.state_dict())
    p_res, opt_res, _ = run(20, ckpt)
    assert opt_res.lr == 0.1 * 0.5 ** 4
    np.testing.assert_array_equal(nnx.to_numpy(p_res.data), nnx.to_numpy(p_full.data))
