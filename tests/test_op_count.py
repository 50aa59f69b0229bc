"""Array operations per training step: on a GPU each one is a kernel launch (or at least a
call into the library), so their number bounds a small model's step time there.

The counter (tests/opcount.py) runs the models on NumPy arrays behind an instrumented
namespace and counts every namespace call and every array operator, indexing and
assignment included (see its docstring for what counts). The step is the one
``nnx train`` takes: forward, cross-entropy, backward (no gradient for the data),
SGD with momentum 0.9 and weight decay, on a batch of 8 (the counts do not depend on
the batch size). Two figures per phase: all operations, and those that read or write
array data (all but the views, which launch nothing on a GPU).

The convolution and pooling layers pick their kernels by where the arrays live: on
host backends (NumPy, array-api-strict, PyTorch on the CPU) the variants with the
fewest passes over memory, on accelerators (CuPy, PyTorch on CUDA) the variants with
the fewest operations (``nnx.layers.conv.launch_bound``). Both are counted here,
``host`` being what NumPy runs and ``accelerator`` what a GPU runs; the tests further
down check that the accelerator variants compute what the host ones do, on every
backend.
"""

from __future__ import annotations

import numpy as np
import pytest
from opcount import CountedArray, counting, instrument, namespace, unwrap

import nnx
import nnx.layers.conv as conv_layer
import nnx.testing as nt

UPDATE = ("the number of array operations per training step changed; if that is intended, "
          "update COUNTS here and the table in bench/README.md (section 'Operations per "
          "training step')")

BATCH = 8
PHASES = ("forward", "loss", "backward", "step")

#: (model, kernels) -> {phase: (operations, of which read or write data)}: the second step
#: (the first one also allocates the momentum buffers and gathers the flat parameters).
#: Before this table existed (one kernel variant, a separate SGD update per parameter):
#: MLP 64, LeNet5 391, WideCNN 275 operations per step.
COUNTS = {
    ("MLP", "host"): {"forward": (6, 5), "loss": (20, 18), "backward": (14, 11),
                      "step": (11, 7)},
    ("MLP", "accelerator"): {"forward": (6, 5), "loss": (20, 18), "backward": (14, 11),
                             "step": (11, 7)},
    ("LeNet5", "host"): {"forward": (96, 25), "loss": (20, 18), "backward": (213, 132),
                         "step": (17, 9)},
    ("LeNet5", "accelerator"): {"forward": (60, 23), "loss": (20, 18), "backward": (86, 49),
                                "step": (17, 9)},
    ("WideCNN", "host"): {"forward": (63, 24), "loss": (20, 18), "backward": (142, 94),
                          "step": (15, 9)},
    ("WideCNN", "accelerator"): {"forward": (51, 22), "loss": (20, 18), "backward": (74, 43),
                                 "step": (15, 9)},
}


@pytest.fixture(params=["host", "accelerator"])
def kernels(request, monkeypatch):
    """Which kernel variants the layers take: forced, whatever the backend."""
    monkeypatch.setattr(conv_layer, "launch_bound", lambda x: request.param == "accelerator")
    return request.param


def step_counts(model_name: str, batch: int = BATCH) -> dict[str, tuple[int, int]]:
    """{phase: (operations, of which read or write data)} of the second training step."""
    nnx.manual_seed(0)
    with nnx.use_backend("numpy"):
        model = getattr(nnx.models, model_name)()
    model.threads = 1  # one pass, no batch split across threads
    instrument(model)
    loss_fn = nnx.CrossEntropyLoss()
    opt = nnx.optim.SGD(model, lr=0.01, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(0)
    x = CountedArray(rng.random((batch, 1, 28, 28), dtype=np.float32))
    y = CountedArray(rng.integers(0, 10, batch))
    counts = {}
    for _ in range(2):
        with counting() as forward:
            out = model(x)
        with counting() as loss:
            loss_fn(out, y)
        with counting() as backward:
            model.backward_params_only(loss_fn.backward())
        with counting() as step:
            opt.step()
        counts = {name: (c.total, c.kernels)
                  for name, c in zip(PHASES, (forward, loss, backward, step))}
    return counts


@pytest.mark.parametrize("model_name", ["MLP", "LeNet5", "WideCNN"])
def test_operations_per_training_step(kernels, model_name):
    assert step_counts(model_name) == COUNTS[model_name, kernels], UPDATE


def test_the_counts_do_not_depend_on_the_batch_size(kernels):
    assert step_counts("LeNet5", batch=3) == step_counts("LeNet5", batch=BATCH)


def test_lenet5_on_an_accelerator_takes_less_than_half_the_operations_it_took():
    lenet = COUNTS["LeNet5", "accelerator"]
    assert sum(total for total, _ in lenet.values()) <= 391 // 2


def test_the_instrumented_step_computes_what_numpy_computes(kernels):
    """The counter only watches: the instrumented model trains as the plain one does."""
    rng = np.random.default_rng(1)
    x = rng.random((BATCH, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, BATCH)
    runs = []
    for wrap in (False, True):
        nnx.manual_seed(0)
        with nnx.use_backend("numpy"):
            model = nnx.models.LeNet5()
        model.threads = 1
        if wrap:
            instrument(model)
        loss_fn = nnx.CrossEntropyLoss()
        opt = nnx.optim.SGD(model, lr=0.05, momentum=0.9, weight_decay=1e-4)
        xb, yb = (CountedArray(x), CountedArray(y)) if wrap else (x, y)
        losses = []
        for _ in range(3):
            losses.append(float(loss_fn(model(xb), yb)))
            model.backward_params_only(loss_fn.backward())
            opt.step()
        runs.append((losses, [unwrap(p.data) for p in model.parameters()]))
    (plain_losses, plain_weights), (counted_losses, counted_weights) = runs
    assert plain_losses == counted_losses
    for a, b in zip(plain_weights, counted_weights):
        assert type(b) is np.ndarray
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------
# The counter itself
# ---------------------------------------------------------------------------


def test_the_counter_counts_each_operation_once():
    x = CountedArray(np.arange(6.0).reshape(2, 3))
    xp = x.__array_namespace__()
    assert xp is namespace
    with counting() as c:
        y = xp.reshape(x, (3, 2))  # a view
        z = y * 2.0
        z += 1.0
        z[0, :] = 0.0
        s = xp.sum(z[1:, :])  # a view, then a reduction
        positive = bool(s > 0)  # a comparison and a read to the host
        # not operations: metadata, dtypes, dtype queries
        assert z.shape == (3, 2) and z.ndim == 2 and z.dtype == xp.float64
        assert xp.isdtype(z.dtype, "real floating") and xp.finfo(xp.float32).bits == 32
    assert positive and float(unwrap(s)) == 2 * (2 + 3 + 4 + 5) + 4
    assert dict(c) == {"xp.reshape": 1, "array.__mul__": 1, "array.__iadd__": 1,
                       "array.__setitem__": 1, "array.__getitem__": 1, "xp.sum": 1,
                       "array.__gt__": 1, "array.__bool__": 1}
    assert dict(c.views) == {"xp.reshape": 1, "array.__getitem__": 1}
    assert (c.total, c.kernels) == (8, 6)


def test_counters_nest_and_count_only_inside_their_block():
    x = CountedArray(np.ones((4, 4), dtype=np.float32))
    xp = x.__array_namespace__()
    x + x  # noqa: B018 - outside every block: not counted anywhere
    with counting() as outer:
        xp.matmul(x, x.T)
        with counting() as inner:
            -x  # noqa: B018
    assert dict(outer) == {"xp.matmul": 1, "array.T": 1, "array.__neg__": 1}
    assert dict(inner) == {"array.__neg__": 1}
    assert dict(outer.views) == {"array.T": 1}


def test_reductions_give_arrays_and_operators_reach_the_counter():
    """NumPy's reductions return scalars; the counter hands back 0-d arrays (as GPU
    libraries do), so what is done with them is still counted."""
    x = CountedArray(np.array([1.0, 2.0, 3.0], dtype=np.float32))
    xp = x.__array_namespace__()
    with counting() as c:
        total = xp.sum(x)
        mean = total / 3
        scaled = 2.0 * mean
    assert type(total) is CountedArray and total.ndim == 0 and total.dtype == np.float32
    assert float(unwrap(scaled)) == 4.0
    assert dict(c) == {"xp.sum": 1, "array.__truediv__": 1, "array.__rmul__": 1}


# ---------------------------------------------------------------------------
# The accelerator variants compute what the host ones do, on every backend
# ---------------------------------------------------------------------------

# (batch, in, out, H, W, kernel, stride, padding): stride 1 takes the correlation for the
# input gradient (padding < kernel), other strides the two-stage col2im
CONV_CASES = [
    (2, 1, 6, 12, 12, 5, 1, 2),
    (2, 6, 4, 9, 9, 5, 1, 0),
    (1, 3, 2, 7, 6, (3, 2), 1, (1, 0)),
    (2, 2, 3, 7, 8, 3, 2, 1),
    (1, 2, 2, 8, 7, (2, 3), (2, 1), (1, 2)),
    (1, 2, 3, 6, 6, 4, 1, (3, 4)),  # padding of the kernel size: col2im
    (2, 3, 2, 5, 5, 1, 1, 0),
    (1, 2, 2, 5, 6, (1, 3), 1, (0, 1)),
    (1, 1, 2, 6, 5, (3, 1), (1, 2), (1, 0)),
]


def _conv_id(case):
    b, c, o, h, w, k, s, p = case
    return f"b{b}c{c}o{o}_{h}x{w}_k{k}_s{s}_p{p}".replace(" ", "")


def _run(layer, x, g, accelerator, monkeypatch):
    monkeypatch.setattr(conv_layer, "launch_bound", lambda _: accelerator)
    y = layer(x)
    dx = layer.backward(g)
    return [y, dx] + [p.grad for p in layer.parameters()]


@pytest.mark.parametrize("case", CONV_CASES, ids=_conv_id)
def test_conv2d_accelerator_variant_matches_host_variant(backend, dtype, rng, monkeypatch, case):
    bsz, c, o, h, w, k, s, p = case
    layer = nnx.Conv2d(c, o, k, stride=s, padding=p, dtype=dtype)
    x = backend.from_numpy(rng.standard_normal((bsz, c, h, w)).astype(dtype))
    ho, wo = layer.output_shape(h, w)
    g = backend.from_numpy(rng.standard_normal((bsz, o, ho, wo)).astype(dtype))
    host = _run(layer, x, g, False, monkeypatch)
    accelerator = _run(layer, x, g, True, monkeypatch)
    assert layer._cache[3] is True  # the accelerator variant ran
    for name, a, e in zip(["y", "dx", "dW", "db"], accelerator, host):
        nt.check_placement(a, x, dtype, name)
        nt.assert_close(a, nnx.to_numpy(e), dtype, name)


@pytest.mark.parametrize("case", CONV_CASES[:6], ids=_conv_id)
def test_conv2d_accelerator_variant_gradcheck(backend, rng, monkeypatch, case):
    monkeypatch.setattr(conv_layer, "launch_bound", lambda _: True)
    bsz, c, o, h, w, k, s, p = case
    nt.gradcheck(nnx.Conv2d(c, o, k, stride=s, padding=p, dtype="float64"),
                 backend.from_numpy(rng.standard_normal((min(bsz, 1), c, h, w))))


# (batch, channels, H, W, kernel): windows that tile the input
POOL_CASES = [(2, 3, 8, 8, 2), (1, 2, 9, 6, (3, 2)), (2, 1, 4, 4, 4), (1, 2, 6, 4, (1, 2))]


@pytest.mark.parametrize("kind", ["random", "ties"])
@pytest.mark.parametrize("case", POOL_CASES, ids=str)
def test_maxpool2d_accelerator_variant_matches_host_variant(backend, dtype, rng, monkeypatch,
                                                             case, kind):
    bsz, c, h, w, k = case
    shape = (bsz, c, h, w)
    # small integers: ties inside most windows (the first maximum, row-major, must win)
    xh = rng.integers(-2, 1, size=shape) if kind == "ties" else rng.standard_normal(shape)
    x = backend.from_numpy(xh.astype(dtype))
    layer = nnx.MaxPool2d(k)
    kh, kw = (k, k) if isinstance(k, int) else k
    g = backend.from_numpy(rng.standard_normal((bsz, c, h // kh, w // kw)).astype(dtype))
    host = _run(layer, x, g, False, monkeypatch)
    accelerator = _run(layer, x, g, True, monkeypatch)
    assert layer._cache[0] == "windows"  # the accelerator variant ran
    for name, a, e in zip(["y", "dx"], accelerator, host):
        nt.check_placement(a, x, dtype, name)
        np.testing.assert_array_equal(nnx.to_numpy(a), nnx.to_numpy(e), err_msg=name)


def test_maxpool2d_accelerator_variant_first_maximum_in_row_major_order(backend, monkeypatch):
    monkeypatch.setattr(conv_layer, "launch_bound", lambda _: True)
    # the maximum 5 at (0, 2), (1, 0) and (2, 2) of one 3x3 window: (0, 2) gets it all
    x = np.array([[1, 2, 5], [5, 0, 1], [3, 4, 5]], dtype=np.float64)[None, None]
    layer = nnx.MaxPool2d(3)
    layer(backend.from_numpy(x))
    dx = nnx.to_numpy(layer.backward(backend.from_numpy(np.full((1, 1, 1, 1), 7.0))))
    expected = np.zeros((3, 3))
    expected[0, 2] = 7.0
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_maxpool2d_accelerator_variant_gradcheck(backend, rng, monkeypatch):
    monkeypatch.setattr(conv_layer, "launch_bound", lambda _: True)
    nt.gradcheck(nnx.MaxPool2d(2), backend.from_numpy(rng.standard_normal((2, 2, 4, 6))))


def test_host_backends_take_the_host_variants(backend):
    x = backend.from_numpy(np.zeros((1, 1, 4, 4), dtype=np.float32))
    assert conv_layer.launch_bound(x) is (not backend.is_host)
    assert conv_layer.launch_bound(CountedArray(np.zeros(1))) is False  # unknown: host


# ---------------------------------------------------------------------------
# SGD's flat update: the per-parameter arithmetic, element by element
# ---------------------------------------------------------------------------

SHAPES = [(3, 4), (4,), (2, 3, 2), (1,)]


def _sgd_pair(backend, dtype, decays=(None, 0.3, None, 0.0), **hyper):
    """The same parameters twice: one SGD over one group (the flat update), one over a
    group per parameter (a group of one is updated per parameter)."""
    rng = np.random.default_rng(5)
    init = [rng.standard_normal(s) for s in SHAPES]
    runs = []
    for flat in (True, False):
        params = [nnx.Parameter(backend.from_numpy(a.astype(dtype)), wd)
                  for a, wd in zip(init, decays)]
        groups = params if flat else [{"params": [p]} for p in params]
        runs.append((params, nnx.optim.SGD(groups, **hyper)))
    return runs


def _set_grads(runs, backend, dtype, t):
    rng = np.random.default_rng(100 + t)
    grads = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    for params, _ in runs:
        for p, g in zip(params, grads):
            p.grad = backend.from_numpy(g.copy())


def _assert_same(runs, what):
    (flat_params, flat_opt), (ref_params, ref_opt) = runs
    for i, (p, q) in enumerate(zip(flat_params, ref_params)):
        assert p.shape == q.shape
        np.testing.assert_array_equal(nnx.to_numpy(p.data), nnx.to_numpy(q.data),
                                      err_msg=f"{what}: param {i}")
        a, b = flat_opt.buffers[i], ref_opt.buffers[i]
        assert (a is None) == (b is None), f"{what}: buffer {i}"
        if a is not None:
            assert tuple(a.shape) == p.shape
            np.testing.assert_array_equal(nnx.to_numpy(a), nnx.to_numpy(b),
                                          err_msg=f"{what}: buffer {i}")


@pytest.mark.parametrize("hyper", [dict(lr=0.1, momentum=0.9, weight_decay=0.01),
                                   dict(lr=0.1, momentum=0.9, nesterov=True),
                                   dict(lr=0.05, weight_decay=0.02)], ids=str)
def test_flat_sgd_equals_the_per_parameter_update_bit_for_bit(backend, dtype, hyper):
    runs = _sgd_pair(backend, dtype, **hyper)
    for t in range(4):
        _set_grads(runs, backend, dtype, t)
        for _, opt in runs:
            opt.step()
        _assert_same(runs, f"step {t}")
    params, opt = runs[0]
    assert opt._flat  # the flat update ran
    for p in params:
        nt.check_placement(p.data, params[0].data, dtype, "param")


def test_flat_sgd_follows_what_rebinds_the_arrays(backend, dtype):
    """A parameter or a buffer rebound between steps (by a user, model.to, a load) is
    gathered again; a momentum switched off and on, a missing gradient, a changed
    weight decay all give the per-parameter update's numbers."""
    runs = _sgd_pair(backend, dtype, lr=0.1, momentum=0.9, weight_decay=0.01)

    def step(t, *, edit=None):
        _set_grads(runs, backend, dtype, t)
        for params, opt in runs:
            if edit is not None:
                edit(params, opt)
            opt.step()
        _assert_same(runs, f"step {t}")

    step(0)
    step(1)
    new = np.full(SHAPES[0], 0.5, dtype=dtype)
    step(2, edit=lambda params, opt: setattr(params[0], "data", backend.from_numpy(new.copy())))
    step(3, edit=lambda params, opt: opt.load_state_dict(opt.state_dict()))
    step(4, edit=lambda params, opt: setattr(params[2], "grad", None))
    step(5, edit=lambda params, opt: [g.update(momentum=0.0) for g in opt.param_groups])
    step(6, edit=lambda params, opt: [g.update(momentum=0.5) for g in opt.param_groups])
    step(7, edit=lambda params, opt: setattr(params[1], "weight_decay", 0.25))
    if backend.mutable_arrays:  # (JAX arrays cannot be written in place)
        # writing into a parameter writes into the flat array the update reads
        step(8, edit=lambda params, opt: params[3].data.__setitem__(0, 2.0))


def test_flat_sgd_takes_a_few_vector_operations():
    """Ten parameters: the gradients' concatenation (ten reshapes, one concat) and six
    vector operations, not six per parameter."""
    params = [nnx.Parameter(CountedArray(np.ones((i + 1, 3), dtype=np.float32)))
              for i in range(10)]
    opt = nnx.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=0.01)
    for t in range(2):
        for p in params:
            p.grad = CountedArray(np.full(tuple(p.shape), 0.5 + t, dtype=np.float32))
        with counting() as c:
            opt.step()
    assert dict(c) == {"xp.reshape": 10, "xp.concat": 1, "array.__rmul__": 2,
                       "array.__iadd__": 2, "array.__imul__": 1, "array.__isub__": 1}
    assert all(p.data.shape == (i + 1, 3) for i, p in enumerate(params))


def main() -> None:
    """``python tests/test_op_count.py``: the table of bench/README.md."""
    real = conv_layer.launch_bound
    print("| model | kernels | " + " | ".join(PHASES) + " | total | of which read/write data |")
    print("|---|---|" + "---|" * (len(PHASES) + 2))
    try:
        for model_name in ("MLP", "LeNet5", "WideCNN"):
            for kind in ("host", "accelerator"):
                conv_layer.launch_bound = lambda x, kind=kind: kind == "accelerator"
                counts = step_counts(model_name)
                cells = " | ".join(str(counts[p][0]) for p in PHASES)
                total = sum(t for t, _ in counts.values())
                data = sum(k for _, k in counts.values())
                print(f"| {model_name} | {kind} | {cells} | {total} | {data} |")
    finally:
        conv_layer.launch_bound = real


if __name__ == "__main__":
    main()
