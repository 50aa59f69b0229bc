"""Adam, AdamW and RMSprop against torch.optim and against an
independent NumPy float64 reference, on every backend in both dtypes.

The reference is written from the textbook formulas (host float64), per parameter, with
g = ∇ + λp for the L2 forms (λ: the parameter's own weight_decay, else its group's):

- Adam:    t ← t + 1 (this parameter's steps); m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²;
           u = max(u, v) (amsgrad) or v; m̂ = m/(1−β₁ᵗ); û = u/(1−β₂ᵗ); p ← p − lr·m̂/(√û + ε)
- AdamW:   p ← p(1 − lr·λ) first, then Adam's step with g = ∇
- RMSprop: s ← αs + (1−α)g²; a ← αa + (1−α)g and d = √(s − a²) + ε (centered), else
           d = √s + ε; b ← μb + g/d, p ← p − lr·b (μ > 0), else p ← p − lr·g/d
- SGD:     b ← g first, then μb + g; d = g + μb (Nesterov), b, or g (μ = 0); p ← p − lr·d

Gradients are g = R_t + 0.5·p (seeded R_t), so every trajectory depends on the update
itself; hyperparameters change midway (lr, and β₁ / momentum as OneCycleLR does).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import nnx
import nnx.testing as nt
from nnx.optim import SGD, Adam, AdamW, RMSprop

SHAPES = [(4, 3), (3,), (2, 2, 3, 3)]
STEPS = 200
CLASSES = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW, "RMSprop": RMSprop}


# ---------------------------------------------------------------------------
# The NumPy float64 reference (shared with tests/test_param_groups.py)
# ---------------------------------------------------------------------------


def ref_adam(p, g, st, h, decoupled=False):
    lr, lam, (b1, b2), eps = h["lr"], h["weight_decay"], h["betas"], h["eps"]
    if decoupled:
        p = p * (1.0 - lr * lam)
    else:
        g = g + lam * p
    st["t"] = st.get("t", 0) + 1
    t = st["t"]
    st["m"] = b1 * st.get("m", 0.0) + (1.0 - b1) * g
    st["v"] = b2 * st.get("v", 0.0) + (1.0 - b2) * g * g
    if h["amsgrad"]:
        st["u"] = np.maximum(st.get("u", 0.0), st["v"])
    u = st["u"] if h["amsgrad"] else st["v"]
    m_hat = st["m"] / (1.0 - b1 ** t)
    u_hat = u / (1.0 - b2 ** t)
    return p - lr * m_hat / (np.sqrt(u_hat) + eps)


def ref_rmsprop(p, g, st, h):
    g = g + h["weight_decay"] * p
    alpha, eps, mu = h["alpha"], h["eps"], h["momentum"]
    st["s"] = alpha * st.get("s", 0.0) + (1.0 - alpha) * g * g
    if h["centered"]:
        st["a"] = alpha * st.get("a", 0.0) + (1.0 - alpha) * g
        d = np.sqrt(st["s"] - st["a"] ** 2) + eps
    else:
        d = np.sqrt(st["s"]) + eps
    if mu > 0.0:
        st["b"] = mu * st.get("b", 0.0) + g / d
        return p - h["lr"] * st["b"]
    return p - h["lr"] * g / d


def ref_sgd(p, g, st, h):
    g = g + h["weight_decay"] * p
    mu = h["momentum"]
    if mu == 0.0:
        return p - h["lr"] * g
    st["b"] = g.copy() if "b" not in st else mu * st["b"] + g
    d = g + mu * st["b"] if h["nesterov"] else st["b"]
    return p - h["lr"] * d


REFERENCES = {
    "SGD": ref_sgd,
    "Adam": ref_adam,
    "AdamW": lambda p, g, st, h: ref_adam(p, g, st, h, decoupled=True),
    "RMSprop": ref_rmsprop,
}
DEFAULTS = {
    "SGD": dict(lr=0.05, momentum=0.0, weight_decay=0.0, nesterov=False),
    "Adam": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False),
    "AdamW": dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False),
    "RMSprop": dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False),
}


def problem(seed, shapes=SHAPES, steps=STEPS):
    """Initial values and the noise R_t of g = R_t + 0.5·p (host float64)."""
    rng = np.random.default_rng(seed)
    init = [rng.standard_normal(s) for s in shapes]
    noise = [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]
    return init, noise


def groups_of(kind, kw, groups, n):
    """The reference's groups: [(parameter indices, every setting)], PyTorch's filling-in
    of a group's settings from the constructor's."""
    base = {**DEFAULTS[kind], **kw}
    if groups is None:
        return [(list(range(n)), dict(base))]
    return [(list(idx), {**base, **over}) for idx, over in groups]


def reference(kind, kw, init, noise, *, groups=None, own=None, events=None, skip=None,
              steps=STEPS):
    """The parameters after every step, by the formulas (host float64).

    ``groups``: [(indices, overrides)] or None for one group; ``own``: each parameter's own
    weight_decay (None: its group's); ``events``: {step: fn(list of group dicts)} applied
    before that step; ``skip(t, i)``: parameter i has no gradient at step t."""
    n = len(init)
    own = own or [None] * n
    rgroups = groups_of(kind, kw, groups, n)
    ps = [a.copy() for a in init]
    states = [{} for _ in range(n)]
    out = []
    for t in range(steps):
        if events and t in events:
            events[t]([g for _, g in rgroups])
        for idx, settings in rgroups:
            for i in idx:
                if skip is not None and skip(t, i):
                    continue
                h = dict(settings)
                if own[i] is not None:
                    h["weight_decay"] = own[i]
                ps[i] = REFERENCES[kind](ps[i], noise[t][i] + 0.5 * ps[i], states[i], h)
        out.append([p.copy() for p in ps])
    return out


def make_params(init, dtype, own=None):
    own = own or [None] * len(init)
    # copies: on NumPy nnx.asarray returns a float64 host array itself
    return [nnx.Parameter(nnx.asarray(np.array(a, copy=True), dtype=dtype), wd)
            for a, wd in zip(init, own)]


def torch_groups(tparams, groups):
    if groups is None:
        return tparams
    return [{"params": [tparams[i] for i in idx], **over} for idx, over in groups]


def nnx_groups(params, groups):
    if groups is None:
        return params
    return [{"params": [params[i] for i in idx], **over} for idx, over in groups]


def run_against(kind, kw, dtype, seed, *, groups=None, own=None, events=None, skip=None,
                use_torch=False, steps=STEPS):
    """Step an nnx optimizer (on the active backend, in ``dtype``) through the problem and
    compare every parameter (after each of the first 5 steps, then every 10th) with the
    NumPy reference and, with ``use_torch``, with torch.optim in float64 stepped alongside.
    Returns the optimizer."""
    init, noise = problem(seed, steps=steps)
    expected = reference(kind, kw, init, noise, groups=groups, own=own, events=events,
                         skip=skip, steps=steps)
    params = make_params(init, dtype, own)
    opt = CLASSES[kind](nnx_groups(params, groups), **kw)
    like = nnx.asarray(np.zeros(1), dtype=dtype)  # the active backend's library and device
    torch = topt = tparams = None
    if use_torch:
        torch = pytest.importorskip("torch")
        assert own is None, "torch expresses per-parameter decay with groups only"
        tparams = [torch.tensor(a) for a in init]
        topt = getattr(torch.optim, kind)(torch_groups(tparams, groups), **kw)
    for t in range(steps):
        if events and t in events:
            events[t](opt.param_groups)
            if topt is not None:
                events[t](topt.param_groups)
        for i, p in enumerate(params):
            skipped = skip is not None and skip(t, i)
            p.grad = None if skipped else nnx.asarray(noise[t][i], dtype=dtype) + 0.5 * p.data
            if topt is not None:
                tparams[i].grad = None if skipped else torch.tensor(noise[t][i]) + 0.5 * tparams[i]
        opt.step()
        if topt is not None:
            topt.step()
        if not (t < 5 or (t + 1) % 10 == 0):  # an error persists in p: every 10th step is enough
            continue
        for i, p in enumerate(params):
            what = f"{opt!r}: param {i} after step {t + 1}"
            nt.check_placement(p.data, like, dtype, what)
            nt.assert_close(p.data, expected[t][i], dtype, what + " (reference)")
            if topt is not None:
                nt.assert_close(p.data, tparams[i].detach().numpy(), dtype, what + " (torch)")
    assert opt.step_count == steps
    return opt


def lr_change(groups):
    for g in groups:
        g["lr"] *= 0.3


def beta1_change(groups):  # what OneCycleLR does to Adam's groups
    for g in groups:
        g["betas"] = (0.8, g["betas"][1])


def momentum_change(groups):  # what OneCycleLR does to SGD's and RMSprop's groups
    for g in groups:
        g["momentum"] = 0.6


ADAM_EVENTS = {100: lr_change, 150: beta1_change}
MOMENTUM_EVENTS = {100: lr_change, 150: momentum_change}
LR_EVENTS = {100: lr_change}

# (optimizer, arguments, mid-run changes): every option, with and without weight decay
CONFIGS = {
    "Adam": ("Adam", dict(lr=0.01), ADAM_EVENTS),
    "Adam-wd": ("Adam", dict(lr=0.01, weight_decay=0.05), ADAM_EVENTS),
    "Adam-amsgrad": ("Adam", dict(lr=0.01, betas=(0.9, 0.95), amsgrad=True), ADAM_EVENTS),
    "Adam-amsgrad-wd-betas": ("Adam", dict(lr=0.02, betas=(0.5, 0.9), eps=0.1, weight_decay=0.1,
                                           amsgrad=True), LR_EVENTS),
    "Adam-defaults": ("Adam", dict(), LR_EVENTS),
    "AdamW": ("AdamW", dict(lr=0.01), ADAM_EVENTS),
    "AdamW-wd": ("AdamW", dict(lr=0.01, weight_decay=0.2), ADAM_EVENTS),
    "AdamW-amsgrad": ("AdamW", dict(lr=0.01, betas=(0.9, 0.95), weight_decay=0.1, amsgrad=True),
                      ADAM_EVENTS),
    "RMSprop": ("RMSprop", dict(), LR_EVENTS),
    "RMSprop-wd": ("RMSprop", dict(lr=0.005, weight_decay=0.1), LR_EVENTS),
    "RMSprop-centered": ("RMSprop", dict(lr=0.005, centered=True), LR_EVENTS),
    "RMSprop-momentum": ("RMSprop", dict(lr=0.002, momentum=0.9), MOMENTUM_EVENTS),
    "RMSprop-all": ("RMSprop", dict(lr=0.002, alpha=0.9, eps=0.1, weight_decay=0.05, momentum=0.5,
                                    centered=True), MOMENTUM_EVENTS),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_matches_torch_and_the_reference(backend, dtype, name):
    """200 steps against torch.optim (float64) and the NumPy reference, step by step, with
    the lr (and β₁ or momentum) changed midway through the parameter groups."""
    kind, kw, events = CONFIGS[name]
    run_against(kind, kw, dtype, seed=10, events=events, use_torch=True)


@pytest.mark.parametrize("name", CONFIGS)
def test_matches_the_reference_without_torch(backend, dtype, name):
    """The same trajectories against the formulas alone (what runs where torch is not
    installed), with a parameter's own weight_decay winning over the optimizer's."""
    kind, kw, events = CONFIGS[name]
    run_against(kind, kw, dtype, seed=11, events=events, own=[0.3, None, 0.0])


def skip_some(t, i):
    """Parameter 1 has no gradient for its first 30 steps and for steps 120-129."""
    return i == 1 and (t < 30 or 120 <= t < 130)


@pytest.mark.parametrize("kind,kw", [("Adam", dict(lr=0.01, weight_decay=0.05)),
                                     ("AdamW", dict(lr=0.01, betas=(0.9, 0.95), amsgrad=True)),
                                     ("RMSprop", dict(momentum=0.5, centered=True))])
def test_parameters_without_gradient_skip_the_step(backend, dtype, kind, kw):
    """A parameter whose grad is None is not moved and its step count (Adam's bias
    correction) does not advance, as in PyTorch."""
    opt = run_against(kind, kw, dtype, seed=12, skip=skip_some, use_torch=True)
    if kind != "RMSprop":
        assert opt.param_steps == [STEPS, STEPS - 40, STEPS]
        assert opt.state_dict()["param_steps"] == [STEPS, STEPS - 40, STEPS]


def test_skipping_parameters_matches_the_reference_without_torch(backend, dtype):
    run_against("Adam", dict(lr=0.01, betas=(0.9, 0.95), amsgrad=True), dtype, seed=13, skip=skip_some)


def test_the_reference_tells_the_forms_apart():
    """The reference itself: L2 vs decoupled decay, amsgrad, a per-parameter vs a global
    step count, and the RMSprop forms give clearly different trajectories here (else the
    comparisons above could not tell a wrong form)."""
    init, noise = problem(10)

    def last(kind, kw, **extra):
        return reference(kind, kw, init, noise, events=LR_EVENTS, **extra)[-1]

    global_t = {"skip": lambda t, i: i == 1 and t < 30}
    finals = {
        "adam": last("Adam", dict(lr=0.01, weight_decay=0.1)),
        "adamw": last("AdamW", dict(lr=0.01, weight_decay=0.1)),
        "adam-no-wd": last("Adam", dict(lr=0.01)),
        "adam-b2": last("Adam", dict(lr=0.01, betas=(0.9, 0.95), weight_decay=0.1)),
        "amsgrad": last("Adam", dict(lr=0.01, betas=(0.9, 0.95), weight_decay=0.1, amsgrad=True)),
        "rmsprop": last("RMSprop", dict(lr=0.005)),
        "centered": last("RMSprop", dict(lr=0.005, centered=True)),
        "rms-momentum": last("RMSprop", dict(lr=0.005, momentum=0.5)),
    }
    names = list(finals)
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            gap = max(np.abs(x - y).max() for x, y in zip(finals[names[a]], finals[names[b]]))
            assert gap > 1e-2, f"{names[a]} and {names[b]} agree to {gap}"
    # bias correction by the parameter's own count vs by the optimizer's: a parameter that
    # starts late (t = 1 at global step 31) moves differently
    per_param = reference("Adam", dict(lr=0.01), init, noise, steps=40, **global_t)[-1][1]
    shifted = [noise[t] for t in range(30, 40)]
    fresh = reference("Adam", dict(lr=0.01), [a.copy() for a in init], shifted, steps=10)[-1][1]
    np.testing.assert_allclose(per_param, fresh, rtol=1e-12)  # a late start is a fresh start
    st, p = {"t": 30}, init[1].copy()
    for r in shifted:
        p = ref_adam(p, r[1] + 0.5 * p, st, {**DEFAULTS["Adam"], "lr": 0.01})
    assert np.abs(p - per_param).max() > 1e-3, "a global step count would give the same"


# ---------------------------------------------------------------------------
# State: placement, state_dict across backends mid-run, checkpoints
# ---------------------------------------------------------------------------

SLOT_CONFIGS = [
    ("Adam", dict(lr=0.01), ("exp_avg", "exp_avg_sq")),
    ("Adam", dict(lr=0.01, amsgrad=True), ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")),
    ("AdamW", dict(lr=0.01), ("exp_avg", "exp_avg_sq")),
    ("RMSprop", dict(), ("square_avg",)),
    ("RMSprop", dict(momentum=0.9, centered=True), ("square_avg", "momentum_buffer", "grad_avg")),
]


@pytest.mark.parametrize("kind,kw,slots", SLOT_CONFIGS)
def test_state_lives_with_the_parameters(backend, dtype, kind, kw, slots):
    """Every state array is of the parameter's library, device and dtype; the gradients are
    left as backward wrote them; ``buffers`` lists the first slot."""
    init, noise = problem(20, steps=3)
    params = make_params(init, dtype)
    opt = CLASSES[kind](params, **kw)
    for t in range(3):
        for p, r in zip(params, noise[t]):
            p.grad = nnx.asarray(r.copy(), dtype=dtype)  # a copy: NumPy float64 would share
        opt.step()
        for i, p in enumerate(params):
            assert set(opt.state[i]) == set(slots), opt.state[i]
            for slot in slots:
                nt.check_placement(opt.state[i][slot], p.data, dtype, f"{kind} {slot} of param {i}")
            assert opt.buffers[i] is opt.state[i][slots[0]]
            np.testing.assert_array_equal(nnx.to_numpy(p.grad), noise[t][i].astype(dtype))
    state = opt.state_dict()
    assert sorted(state["buffers"]) == sorted(
        str(i) if s == slots[0] else f"{i}.{s}" for i in range(3) for s in slots)


def test_state_on_the_strict_second_device():
    d1 = nt.make_backend("array_api_strict:device1")
    init, noise = problem(21, steps=2)
    with nnx.use_backend(d1):
        params = make_params(init, "float32")
        for opt in (Adam(params, lr=0.1, amsgrad=True), RMSprop(params, momentum=0.9, centered=True)):
            for p, r in zip(params, noise[0]):
                p.grad = nnx.asarray(r, dtype="float32")
            opt.step()
            for st in opt.state:
                assert st and all("device1" in str(a.device) for a in st.values()), st


def _chain_backends():
    """numpy → torch → array_api_strict where torch is installed, else numpy →
    array_api_strict → numpy."""
    mid = "torch" if nt.backend_status("torch") is None else "array_api_strict"
    last = "array_api_strict" if mid == "torch" else "numpy"
    return mid, last


@pytest.mark.parametrize("name", ["Adam-amsgrad-wd-betas", "AdamW-amsgrad", "RMSprop-all"])
def test_state_dict_resumes_across_backends_mid_run(backend, dtype, name):
    """70 steps on NumPy float64, state_dict, 70 steps on torch (or array_api_strict),
    state_dict, the last 60 on the backend under test in ``dtype``: the trajectory is the
    uninterrupted one of the reference, with the lr and β₁/momentum changes in the middle.
    The non-array part of each state goes through JSON, as in a checkpoint."""
    kind, kw, events = CONFIGS[name]
    init, noise = problem(22)
    own = [0.3, None, 0.0]
    expected = reference(kind, kw, init, noise, events=events, own=own)
    mid, last = _chain_backends()
    legs = [("numpy", "float64", 0, 70), (mid, "float64", 70, 140), (backend, dtype, 140, STEPS)]
    host, state = init, None
    for be, dt, start, stop in legs:
        with nnx.use_backend(be):
            params = make_params(host, dt, own)
            opt = CLASSES[kind](params, lr=123.0)  # every setting comes from the state
            if state is not None:
                opt.load_state_dict(state)
                assert opt.step_count == start
                for i, p in enumerate(params):
                    for slot, arr in opt.state[i].items():
                        nt.check_placement(arr, p.data, dt, f"{slot} of param {i} on {be}")
            else:
                opt = CLASSES[kind](params, **kw)
            for t in range(start, stop):
                if t in events:
                    events[t](opt.param_groups)
                for p, r in zip(params, noise[t]):
                    p.grad = nnx.asarray(r, dtype=dt) + 0.5 * p.data
                opt.step()
            for i, p in enumerate(params):
                nt.assert_close(p.data, expected[stop - 1][i], dt, f"{kind} param {i} at {stop}")
            state = opt.state_dict()
            arrays = state.pop("buffers")
            state = {**json.loads(json.dumps(state)), "buffers": arrays}
            host = [nnx.to_numpy(p.data).copy() for p in params]
    if kind != "RMSprop":
        assert state["param_steps"] == [STEPS] * 3


@pytest.mark.parametrize("kind,kw", [("Adam", dict(lr=0.01, amsgrad=True, weight_decay=1e-3)),
                                     ("AdamW", dict(lr=0.01)),
                                     ("RMSprop", dict(momentum=0.9, centered=True))])
def test_checkpoint_resumes_exactly(tmp_path, kind, kw):
    """nnx.save / nnx.load().restore of a model and its optimizer, then more steps: the same
    numbers, bit for bit, as the run that never stopped."""
    rng = np.random.default_rng(23)
    data = [(rng.standard_normal((5, 6)), rng.integers(0, 3, 5)) for _ in range(8)]
    loss = nnx.CrossEntropyLoss()

    def train(model, opt, batches):
        for x, y in batches:
            loss(model(nnx.asarray(x, dtype="float64")), nnx.asarray(y))
            model.backward(loss.backward())
            opt.step()

    def build():
        nnx.manual_seed(5)
        model = nnx.models.MLP((6, 8, 3), dtype="float64")
        return model, CLASSES[kind](model, **kw)

    model, opt = build()
    train(model, opt, data[:4])
    nnx.save(tmp_path / "ck.safetensors", model, opt)
    train(model, opt, data[4:])
    model2, opt2 = build()
    nnx.load(tmp_path / "ck.safetensors").restore(model2, opt2)
    assert opt2.step_count == 4
    train(model2, opt2, data[4:])
    for (name, p), q in zip(model.named_parameters(), model2.parameters()):
        np.testing.assert_array_equal(nnx.to_numpy(q.data), nnx.to_numpy(p.data), name)
    assert opt2.state_dict()["step_count"] == opt.state_dict()["step_count"] == 8


@pytest.mark.parametrize("kind", ["Adam", "RMSprop"])
def test_state_follows_the_model_after_to(backend, dtype, kind):
    """Stepped on NumPy float32, then model.to(backend, dtype): every state array moves with
    its parameter and the run continues like one whose state was reloaded there."""
    if backend.name == "numpy" and dtype == "float32":
        pytest.skip("nothing moves")
    kw = dict(lr=0.01, amsgrad=True) if kind == "Adam" else dict(momentum=0.9, centered=True)
    rng = np.random.default_rng(24)
    data = [(rng.standard_normal((5, 6)), rng.integers(0, 3, 5)) for _ in range(6)]
    loss = nnx.CrossEntropyLoss()

    def build():
        nnx.manual_seed(3)
        with nnx.use_backend("numpy"):
            model = nnx.models.MLP((6, 8, 3))
        return model, CLASSES[kind](model, **kw)

    def train(model, opt, batches, be, dt):
        for x, y in batches:
            loss(model(nnx.asarray(x, be, dtype=dt)), nnx.asarray(y, be))
            model.backward(loss.backward())
            opt.step()

    (model, opt), (ref_model, ref_opt) = build(), build()
    train(model, opt, data[:3], "numpy", "float32")
    train(ref_model, ref_opt, data[:3], "numpy", "float32")
    model.to(backend, dtype=dtype)
    ref_model.to(backend, dtype=dtype)
    ref_opt.load_state_dict(ref_opt.state_dict())
    train(model, opt, data[3:], backend, dtype)
    train(ref_model, ref_opt, data[3:], backend, dtype)
    for i, (p, q) in enumerate(zip(model.parameters(), ref_model.parameters())):
        for slot, arr in opt.state[i].items():
            nt.check_placement(arr, p.data, dtype, f"{slot} of param {i}")
            np.testing.assert_array_equal(nnx.to_numpy(arr), nnx.to_numpy(ref_opt.state[i][slot]))
        np.testing.assert_array_equal(nnx.to_numpy(p.data), nnx.to_numpy(q.data), f"param {i}")


# ---------------------------------------------------------------------------
# Arguments and state validation
# ---------------------------------------------------------------------------


def _params():
    return [nnx.Parameter(nnx.asarray(np.zeros(2, dtype=np.float32)))]


BAD_ARGS = [
    (Adam, dict(lr=-1e-3), "lr"),
    (Adam, dict(lr=float("nan")), "lr"),
    (Adam, dict(betas=0.9), "betas"),
    (Adam, dict(betas=(0.9,)), "betas"),
    (Adam, dict(betas=(0.9, 0.99, 0.999)), "betas"),
    (Adam, dict(betas="ab"), "betas"),
    (Adam, dict(betas=(1.0, 0.999)), r"betas\[0\]"),
    (Adam, dict(betas=(-0.1, 0.999)), r"betas\[0\]"),
    (Adam, dict(betas=(0.9, 1.0)), r"betas\[1\]"),
    (Adam, dict(betas=(0.9, float("nan"))), r"betas\[1\]"),
    (Adam, dict(betas=(True, 0.9)), r"betas\[0\]"),
    (Adam, dict(eps=-1e-8), "eps"),
    (Adam, dict(eps=float("inf")), "eps"),
    (Adam, dict(weight_decay=-0.1), "weight_decay"),
    (Adam, dict(amsgrad=1), "amsgrad"),
    (Adam, dict(amsgrad="yes"), "amsgrad"),
    (AdamW, dict(weight_decay=-1e-2), "weight_decay"),
    (AdamW, dict(betas=[0.9, 1.5]), r"betas\[1\]"),
    (RMSprop, dict(lr=-0.01), "lr"),
    (RMSprop, dict(alpha=1.0), "alpha"),
    (RMSprop, dict(alpha=-0.5), "alpha"),
    (RMSprop, dict(eps=-1.0), "eps"),
    (RMSprop, dict(weight_decay=-1.0), "weight_decay"),
    (RMSprop, dict(momentum=1.0), "momentum"),
    (RMSprop, dict(momentum=-0.1), "momentum"),
    (RMSprop, dict(centered=0), "centered"),
    (RMSprop, dict(alpha=True), "alpha"),
]


@pytest.mark.parametrize("cls,kw,arg", BAD_ARGS,
                         ids=[f"{c.__name__}-{a}-{i}" for i, (c, _, a) in enumerate(BAD_ARGS)])
def test_bad_arguments_raise_one_line_naming_the_class_and_argument(cls, kw, arg):
    with pytest.raises(ValueError) as info:
        cls(_params(), **kw)
    msg = str(info.value)
    assert "\n" not in msg
    assert __import__("re").match(rf"^{cls.__name__}: {arg} must ", msg), msg


def test_valid_edges_and_defaults():
    opt = Adam(_params())
    assert (opt.lr, opt.betas, opt.eps, opt.weight_decay, opt.amsgrad) == (1e-3, (0.9, 0.999), 1e-8,
                                                                             0.0, False)
    assert AdamW(_params()).weight_decay == 1e-2
    rms = RMSprop(_params())
    assert (rms.lr, rms.alpha, rms.eps, rms.weight_decay, rms.momentum, rms.centered) == (
        1e-2, 0.99, 1e-8, 0.0, 0.0, False)
    Adam(_params(), lr=0.0, betas=[0.0, 0.0], eps=0.0)
    Adam(_params(), betas=(np.float32(0.5), np.float64(0.25)))
    RMSprop(_params(), lr=0.0, alpha=0.0, eps=0.0, momentum=0.0)
    assert Adam(_params(), betas=[0.5, 0.25]).betas == (0.5, 0.25)
    assert type(Adam(_params(), betas=(np.float32(0.5), 0.25)).betas[0]) is float
    assert repr(Adam(_params(), lr=0.1)) == ("Adam(lr=0.1, betas=(0.9, 0.999), eps=1e-08, "
                                             "weight_decay=0.0, amsgrad=False)")


def _stepped(cls, kw, steps=2):
    init, noise = problem(30, steps=steps)
    params = make_params(init, "float64")
    opt = cls(params, **kw)
    for t in range(steps):
        for p, r in zip(params, noise[t]):
            p.grad = nnx.asarray(r, dtype="float64")
        opt.step()
    return opt


def _snapshot(opt):
    return (opt.lr, opt.hyperparameters(), opt.step_count, list(getattr(opt, "param_steps", [])),
            [{k: nnx.to_numpy(v).copy() for k, v in st.items()} for st in opt.state])


@pytest.mark.parametrize("cls,change,match", [
    (Adam, {"hyperparameters": {"lr": 0.5, "betas": [0.9, 1.0]}}, r"betas\[1\]"),
    (Adam, {"hyperparameters": {"lr": 0.5, "betas": [0.9]}}, "betas"),
    (Adam, {"hyperparameters": {"lr": 0.5, "eps": -1.0}}, "eps"),
    (Adam, {"hyperparameters": {"lr": 0.5, "amsgrad": True}}, "lacks"),
    (Adam, {"param_steps": [2, 2]}, "param_steps must be a list of 3 ints"),
    (Adam, {"param_steps": [2, 3, 2]}, r"param_steps .* in \[0, step_count=2\]"),
    (Adam, {"param_steps": [2, -1, 2]}, "param_steps"),
    (Adam, {"param_steps": "2"}, "param_steps"),
    (Adam, {"param_steps": [2, True, 2]}, "param_steps"),
    (RMSprop, {"hyperparameters": {"lr": 0.5, "alpha": 1.5}}, "alpha"),
    (RMSprop, {"hyperparameters": {"lr": 0.5, "centered": True}}, "lacks"),
    (RMSprop, {"hyperparameters": {"lr": 0.5, "centered": "no"}}, "centered"),
])
def test_load_state_dict_validates_and_changes_nothing(cls, change, match):
    """A bad setting, a missing state array or bad step counts: ValueError naming it,
    before anything is applied."""
    opt = _stepped(cls, dict(lr=0.1))
    before = _snapshot(opt)
    state = {**opt.state_dict(), **change}
    with pytest.raises(ValueError, match=match) as info:
        opt.load_state_dict(state)
    assert str(info.value).startswith(f"{cls.__name__}.load_state_dict: ")
    after = _snapshot(opt)
    assert after[:4] == before[:4]
    for st_after, st_before in zip(after[4], before[4]):
        assert st_after.keys() == st_before.keys()
        for k in st_after:
            np.testing.assert_array_equal(st_after[k], st_before[k])


def test_load_state_dict_without_param_steps_counts_every_step():
    """A state written by hand (no "param_steps") means every parameter took every step."""
    opt = _stepped(Adam, dict(lr=0.1), steps=3)
    state = opt.state_dict()
    del state["param_steps"]
    fresh = Adam(make_params(problem(30, steps=1)[0], "float64"))
    fresh.load_state_dict(state)
    assert fresh.param_steps == [3, 3, 3] and fresh.lr == 0.1


def test_load_state_dict_refuses_another_optimizers_state():
    adam = _stepped(Adam, dict(lr=0.1))
    with pytest.raises(ValueError, match="AdamW"):
        adam.load_state_dict(_stepped(AdamW, dict(lr=0.1)).state_dict())
    with pytest.raises(ValueError, match="exp_avg"):
        RMSprop(adam.params).load_state_dict({**adam.state_dict(), "type": "RMSprop",
                                              "param_groups": None, "hyperparameters": {}})
