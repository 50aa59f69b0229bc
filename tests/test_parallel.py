"""Threaded data parallelism (nnx.parallel): a Sequential split across threads gives the
same loss, gradients and input gradient as one full-batch pass, in the Trainer and in a
plain loop."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
import nnx.testing as nt
from nnx.backends import cpu_threads
from nnx.parallel import BatchSplitter, active_splitter, auto_threads, replicate, set_num_threads


def small_cnn(dtype):
    return nnx.Sequential(
        nnx.Conv2d(1, 4, 3, padding=1, dtype=dtype), nnx.ReLU(), nnx.MaxPool2d(2),
        nnx.Conv2d(4, 6, 3, dtype=dtype), nnx.ReLU(), nnx.Flatten(),
        nnx.Linear(6 * 5 * 5, 10, weight_decay=1e-3, dtype=dtype))


def batch(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 14, 14)), rng.integers(0, 10, n)


@pytest.mark.parametrize("threads,n", [(2, 24), (3, 25)])  # equal and unequal slices
def test_threaded_gradients_equal_the_full_batch(backend, dtype, threads, n):
    x_host, y_host = batch(n)
    x = backend.from_numpy(x_host.astype(dtype))
    y = backend.from_numpy(y_host)
    nnx.manual_seed(0)
    model = small_cnn(dtype)
    loss_fn = nnx.CrossEntropyLoss()
    ref_loss = float(loss_fn(model(x), y))
    model.backward(loss_fn.backward(), need_input_grad=False)
    ref = {k: nnx.to_numpy(p.grad).copy() for k, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = None

    loss_fn(model(x), y)
    ref_dx = nnx.to_numpy(model.backward(loss_fn.backward())).copy()
    splitter = BatchSplitter(model, threads)
    try:
        out = splitter.forward(x)
        loss = float(loss_fn(out, y))
        dx = splitter.backward(loss_fn.backward(), need_input_grad=True)
    finally:
        splitter.close()
    assert loss == pytest.approx(ref_loss, rel=1e-5 if dtype == "float32" else 1e-12)
    nt.check_placement(dx, x, dtype, what="input gradient")
    nt.assert_close(dx, ref_dx, dtype, what="input gradient")
    for k, p in model.named_parameters():
        nt.check_placement(p.grad, p.data, dtype, what=k)
        nt.assert_close(p.grad, ref[k], dtype, what=k)


def test_a_plain_loop_splits_a_large_batch_by_itself():
    """model(x) / model.backward(g): the Sequential splits a large enough batch on NumPy
    (the speed belongs to the library, not to the Trainer), with the full batch's numbers."""
    x_host, y_host = batch(96)
    nnx.manual_seed(0)
    model = small_cnn("float64")
    loss_fn = nnx.CrossEntropyLoss()
    model.threads = 1
    loss_fn(model(x_host), y_host)
    want = nnx.to_numpy(model.backward(loss_fn.backward())).copy()
    grads = {k: nnx.to_numpy(p.grad).copy() for k, p in model.named_parameters()}
    model.threads = 3
    loss_fn(model(x_host), y_host)
    assert active_splitter(model) is not None
    got = model.backward(loss_fn.backward())
    assert active_splitter(model) is not None  # a second backward of it works, as unsplit
    nt.assert_close(got, want, "float64", what="input gradient")
    for k, p in model.named_parameters():
        nt.assert_close(p.grad, grads[k], "float64", what=k)
    model.threads = None
    set_num_threads(1)
    try:
        model(x_host)
        assert active_splitter(model) is None
    finally:
        set_num_threads("auto")


def test_a_slice_alone_is_not_the_full_gradient():
    """The comparison above can fail: one slice's gradient differs from the batch's."""
    x_host, y_host = batch(24)
    model = small_cnn("float64")
    loss_fn = nnx.CrossEntropyLoss()
    loss_fn(model(x_host), y_host)
    model.backward(loss_fn.backward(), need_input_grad=False)
    full = nnx.to_numpy(model[0].weight.grad).copy()
    loss_fn(model(x_host[:12]), y_host[:12])
    model.backward(loss_fn.backward(), need_input_grad=False)
    assert not np.allclose(nnx.to_numpy(model[0].weight.grad), full, rtol=1e-3)


def test_replicas_share_parameter_arrays_not_activations():
    model = small_cnn("float32")
    model(np.random.default_rng(0).random((2, 1, 14, 14), dtype=np.float32))
    rep = replicate(model)
    for (name, p), (_, q) in zip(model.named_parameters(), rep.named_parameters()):
        assert q is not p and q.data is p.data, name
    assert all(getattr(m, key) is None for m in rep.modules() for key in vars(m)
               if key.startswith("_cache"))


def test_trainer_threads_follow_the_single_thread_run():
    from nnx.data import DataLoader

    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (192, 14, 14), dtype=np.uint8)
    labels = rng.integers(0, 10, 192)
    params = []
    for threads in (1, 2):
        nnx.manual_seed(0)
        model = small_cnn("float32")
        opt = nnx.optim.SGD(model, lr=0.05, momentum=0.9)
        trainer = nnx.Trainer(model, opt, progress=False, log=lambda s: None, threads=threads)
        assert trainer.threads == threads
        trainer.fit(DataLoader(images, labels, 64, seed=2), None, epochs=2)
        params.append({k: nnx.to_numpy(v) for k, v in model.state_dict().items()})
    for k in params[0]:
        nt.assert_close(params[1][k], params[0][k], "float32", what=k)


def test_auto_threads_only_for_conv_nets_on_numpy():
    conv_numpy = small_cnn("float32")
    expect = cpu_threads.usable_cores() if cpu_threads.blas_threads_controllable() else 1
    assert auto_threads(conv_numpy) == expect
    assert auto_threads(nnx.models.MLP((10, 5, 2))) == 1
    for spec in ("array_api_strict", "torch"):
        if spec in nt.backends():
            with nnx.use_backend(spec):
                assert auto_threads(small_cnn("float32")) == 1


def test_blas_threads_context_restores_the_count():
    ctl = cpu_threads._openblas()
    if ctl is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS this module can control")
    get, _ = ctl
    before = get()
    with cpu_threads.blas_threads(1):
        assert get() == 1
    assert get() == before


def test_bad_thread_counts():
    model = small_cnn("float32")
    opt = nnx.optim.SGD(model, lr=0.1)
    with pytest.raises(ValueError, match="threads"):
        nnx.Trainer(model, opt, threads=0)
    with pytest.raises(ValueError, match="threads"):
        BatchSplitter(model, 1)
    with pytest.raises(ValueError, match="set_num_threads"):
        set_num_threads(0)


class ConvHead(nnx.Module):
    """Not a Sequential: its own forward and backward, and Module's backward_params_only."""

    def __init__(self):
        self.conv, self.act, self.flat = nnx.Conv2d(1, 3, 3, dtype="float64"), nnx.ReLU(), \
            nnx.Flatten()
        self.fc = nnx.Linear(3 * 12 * 12, 10, dtype="float64")

    def forward(self, x):
        return self.fc(self.flat(self.act(self.conv(x))))

    def backward(self, grad_out):
        return self.conv.backward(self.act.backward(self.flat.backward(self.fc.backward(
            grad_out))))


@pytest.mark.parametrize("need_input_grad", [False, True])
def test_the_splitter_runs_any_module(need_input_grad):
    """BatchSplitter asks each replica for backward or backward_params_only, which every
    Module has: a model that is not a Sequential splits as well."""
    x_host, y_host = batch(24)
    nnx.manual_seed(0)
    model = ConvHead()
    loss_fn = nnx.CrossEntropyLoss()
    loss_fn(model(x_host), y_host)
    want_dx = nnx.to_numpy(model.backward(loss_fn.backward())).copy()
    want = {k: nnx.to_numpy(p.grad).copy() for k, p in model.named_parameters()}
    splitter = BatchSplitter(model, 2)
    try:
        loss_fn(splitter.forward(x_host), y_host)
        dx = splitter.backward(loss_fn.backward(), need_input_grad=need_input_grad)
    finally:
        splitter.close()
    if need_input_grad:
        nt.assert_close(dx, want_dx, "float64", what="input gradient")
    else:
        assert dx is None
    for k, p in model.named_parameters():
        nt.assert_close(p.grad, want[k], "float64", what=k)


def split_model(n=96):
    """small_cnn in float64 with a batch of ``n`` split across 3 threads."""
    nnx.manual_seed(0)
    model = small_cnn("float64")
    model.threads = 3
    x, y = batch(n)
    return model, x, y


def test_a_model_that_split_a_batch_is_freed_with_its_thread():
    import gc
    import time
    import weakref

    model, x, _ = split_model()
    model(x)
    splitter = active_splitter(model)
    assert splitter is not None
    workers = set(splitter._pool._threads)  # this splitter's own pool threads
    assert workers
    ref = weakref.ref(model)
    del model, splitter
    gc.collect()
    assert ref() is None, "the splitter kept its model (and replicas, activations) alive"
    deadline = time.monotonic() + 10
    while any(t.is_alive() for t in workers) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.is_alive() for t in workers), "the pool's threads outlived the model"


def test_a_split_backward_checks_the_whole_gradient():
    """The slices would see half-batch shapes, or not notice a longer gradient at all."""
    model, x, y = split_model()
    loss_fn = nnx.CrossEntropyLoss()
    loss_fn(model(x), y)
    g = loss_fn.backward()
    for bad in (np.concatenate([g, g]), g[:48], np.reshape(g, (-1,))):
        with pytest.raises(ValueError, match=r"shape \(\d+,?[\d, ]*\), expected the forward "
                                             r"output's shape \(96, 10\)"):
            model.backward_params_only(bad)
    with pytest.raises(TypeError, match="backward expects an array"):
        model.backward([0.0] * 960)


def test_a_split_forward_backward_twice_gives_the_same_gradients_as_unsplit():
    model, x, y = split_model()
    loss_fn = nnx.CrossEntropyLoss()
    loss_fn(model(x), y)
    g = loss_fn.backward()
    model.backward_params_only(g)
    first = {k: nnx.to_numpy(p.grad).copy() for k, p in model.named_parameters()}
    dx = model.backward(g)  # again, now with the input's gradient: no "needs a forward"
    assert dx.shape == x.shape
    for k, p in model.named_parameters():
        nt.assert_close(p.grad, first[k], "float64", what=k)


def test_a_split_forward_names_the_callers_shapes_in_its_errors():
    model, x, _ = split_model()
    with pytest.raises(ValueError, match=r"got shape \(96, 14, 14\)"):
        model(x[:, 0])
    with pytest.raises(TypeError, match=r"got uint8 \(shape \(96, 1, 14, 14\)\)"):
        model(x.astype(np.uint8))


def test_tied_weights_split_across_threads_as_in_one_pass():
    def tied_cnn():
        nnx.manual_seed(0)
        a = nnx.Conv2d(1, 1, 3, padding=1, dtype="float64")
        b = nnx.Conv2d(1, 1, 3, padding=1, dtype="float64")
        b.weight = a.weight
        return nnx.Sequential(a, nnx.Tanh(), b, nnx.Tanh(), nnx.Flatten(),
                              nnx.Linear(14 * 14, 10, dtype="float64"))

    x, y = batch(96)
    loss_fn = nnx.CrossEntropyLoss()
    grads = []
    for threads in (1, 3):
        model = tied_cnn()
        model.threads = threads
        loss_fn(model(x), y)
        assert (active_splitter(model) is not None) == (threads > 1)
        model.backward_params_only(loss_fn.backward())
        grads.append({k: nnx.to_numpy(p.grad).copy() for k, p in model.named_parameters()})
    for k in grads[0]:
        nt.assert_close(grads[1][k], grads[0][k], "float64", what=k)
