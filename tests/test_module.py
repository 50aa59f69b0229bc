"""Parameter, Module and Sequential: names, state dicts, modes,
moving between backends and devices."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
import nnx.testing as nt
from nnx import backends as B


def mlp(dtype="float32"):
    return nnx.Sequential(nnx.Linear(4, 5, dtype=dtype), nnx.ReLU(), nnx.Linear(5, 3, dtype=dtype))


def cnn(dtype="float32"):
    return nnx.Sequential(
        nnx.Conv2d(1, 2, 3, padding=1, dtype=dtype), nnx.ReLU(), nnx.MaxPool2d(2),
        nnx.Flatten(), nnx.Linear(2 * 2 * 2, 3, dtype=dtype),
    )


def host_state(model):
    return {k: nnx.to_numpy(v).copy() for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------


def test_named_parameters_of_sequential():
    assert [n for n, _ in mlp().named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert [n for n, _ in cnn().named_parameters()] == ["0.weight", "0.bias", "4.weight", "4.bias"]
    model = mlp()
    assert model.parameters() == [p for _, p in model.named_parameters()]
    assert model.parameters()[0] is model[0].weight
    assert [p.shape for p in model.parameters()] == [(4, 5), (5,), (5, 3), (3,)]


def test_named_parameters_nested_and_custom_modules():
    class Net(nnx.Module):
        def __init__(self):
            self.features = nnx.Sequential(nnx.Conv2d(1, 2, 3, bias=False), nnx.ReLU())
            self.head = nnx.Linear(2, 2)
            self.scale = nnx.Parameter(nnx.asarray(np.ones(1, dtype=np.float32)))

    names = [n for n, _ in Net().named_parameters()]
    assert names == ["scale", "features.0.weight", "head.weight", "head.bias"]
    outer = nnx.Sequential(nnx.Flatten(), mlp())
    assert [n for n, _ in outer.named_parameters()] == [
        "1.0.weight", "1.0.bias", "1.2.weight", "1.2.bias"]
    assert list(outer.state_dict()) == [n for n, _ in outer.named_parameters()]


def test_sequential_container():
    layers = [nnx.Linear(2, 3), nnx.ReLU()]
    seq = nnx.Sequential(*layers)
    assert len(seq) == 2 and seq[0] is layers[0] and list(seq) == layers
    with pytest.raises(TypeError, match="item 1"):
        nnx.Sequential(nnx.ReLU(), lambda x: x)
    assert "Linear(2, 3)" in repr(seq)


def test_parameter_attributes(backend):
    p = nnx.Parameter(nnx.asarray(np.zeros((2, 3), dtype=np.float32)), weight_decay=0.5)
    assert p.shape == (2, 3) and nt.dtype_of(p.data) == "float32"
    assert p.grad is None and p.weight_decay == 0.5
    assert nnx.Parameter(p.data).weight_decay is None
    with pytest.raises(ValueError, match="weight_decay"):
        nnx.Parameter(p.data, weight_decay=-1.0)


def test_layer_weight_decay_is_on_the_weight_only():
    lin = nnx.Linear(3, 2, weight_decay=0.1)
    conv = nnx.Conv2d(1, 1, 2, weight_decay=0.2)
    assert (lin.weight.weight_decay, lin.bias.weight_decay) == (0.1, None)
    assert (conv.weight.weight_decay, conv.bias.weight_decay) == (0.2, None)
    assert nnx.Linear(3, 2).weight.weight_decay is None


# ---------------------------------------------------------------------------
# forward / backward contract
# ---------------------------------------------------------------------------


def test_backward_overwrites_gradients(backend, rng):
    model = cnn()
    x = nnx.asarray(rng.standard_normal((2, 1, 4, 4)), dtype="float32")
    g = nnx.asarray(rng.standard_normal((2, 3)), dtype="float32")
    model(x)
    model.backward(g)
    first = [nnx.to_numpy(p.grad).copy() for p in model.parameters()]
    model(x)
    model.backward(g)
    for a, p in zip(first, model.parameters()):
        np.testing.assert_array_equal(nnx.to_numpy(p.grad), a)  # not 2a
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_backward_params_only_gives_the_same_parameter_gradients(backend, rng):
    x = nnx.asarray(rng.standard_normal((2, 1, 4, 4)))
    g = nnx.asarray(rng.standard_normal((2, 3)))
    nnx.manual_seed(5)
    full = nnx.Sequential(nnx.ReLU(), cnn("float64"))
    nnx.manual_seed(5)
    fast = nnx.Sequential(nnx.ReLU(), cnn("float64"))
    full(x)
    dx = full.backward(g)
    assert tuple(dx.shape) == (2, 1, 4, 4)
    fast(x)
    assert fast.backward(g, need_input_grad=False) is None
    for (name, a), (_, b) in zip(full.named_parameters(), fast.named_parameters()):
        nt.assert_close(b.grad, nnx.to_numpy(a.grad), "float64", name)
        nt.check_placement(b.grad, x, "float64", name)


def test_backward_params_only_with_a_linear_first(backend, rng):
    x = nnx.asarray(rng.standard_normal((3, 4)))
    g = nnx.asarray(rng.standard_normal((3, 3)))
    nnx.manual_seed(6)
    full = mlp("float64")
    nnx.manual_seed(6)
    fast = mlp("float64")
    full(x)
    full.backward(g)
    fast(x)
    fast.backward_params_only(g)
    for (name, a), (_, b) in zip(full.named_parameters(), fast.named_parameters()):
        nt.assert_close(b.grad, nnx.to_numpy(a.grad), "float64", name)


def test_outputs_and_gradients_keep_backend_device_dtype(backend, dtype, rng):
    model = cnn(dtype)
    x = nnx.asarray(rng.standard_normal((2, 1, 4, 4)), dtype=dtype)
    x_before = nnx.to_numpy(x).copy()
    y = model(x)
    nt.check_placement(y, x, dtype, "output")
    dx = model.backward(nnx.asarray(np.ones((2, 3)), dtype=dtype))
    nt.check_placement(dx, x, dtype, "input gradient")
    for name, p in model.named_parameters():
        nt.check_placement(p.data, x, dtype, name)
        nt.check_placement(p.grad, x, dtype, name + ".grad")
    np.testing.assert_array_equal(nnx.to_numpy(x), x_before)


def test_layers_read_parameter_data_at_every_forward(backend, rng):
    """Optimizers may rebind ``.data``: the next forward (and backward) must use the new array."""
    x = nnx.asarray(rng.standard_normal((2, 1, 4, 4)), dtype="float32")
    model = cnn()
    model(x)
    for p in model.parameters():
        p.data = nnx.asarray(np.zeros(p.shape, dtype=np.float32))
    y = model(x)
    np.testing.assert_array_equal(nnx.to_numpy(y), np.zeros((2, 3)))
    dx = model.backward(nnx.asarray(np.ones((2, 3)), dtype="float32"))
    np.testing.assert_array_equal(nnx.to_numpy(dx), np.zeros((2, 1, 4, 4)))


# ---------------------------------------------------------------------------
# state_dict / load_state_dict
# ---------------------------------------------------------------------------


def test_state_dict_is_live_and_ordered(backend):
    model = mlp()
    sd = model.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert sd["0.weight"] is model[0].weight.data


def test_load_state_dict_roundtrip(backend):
    nnx.manual_seed(1)
    src = cnn()
    nnx.manual_seed(2)
    dst = cnn()
    assert not np.array_equal(nnx.to_numpy(src[0].weight.data), nnx.to_numpy(dst[0].weight.data))
    dst[0].weight.grad = dst[0].weight.data
    dst.load_state_dict(src.state_dict())
    ref = host_state(src)
    for name, value in dst.state_dict().items():
        np.testing.assert_array_equal(nnx.to_numpy(value), ref[name])
        nt.check_placement(value, src.state_dict()[name], "float32", name)
    assert dst[0].weight.grad is None
    # copies, not aliases: changing the source later leaves the destination alone
    src[0].weight.data *= 0.0
    np.testing.assert_array_equal(nnx.to_numpy(dst[0].weight.data), ref["0.weight"])


def test_load_state_dict_from_host_arrays_lands_on_the_model_backend(backend):
    model = mlp()
    host = {k: np.full(v.shape, 0.25, dtype=np.float32) for k, v in host_state(model).items()}
    model.load_state_dict(host)
    like = backend.from_numpy(np.zeros(1, dtype=np.float32))
    for name, p in model.named_parameters():
        nt.check_placement(p.data, like, "float32", name)
        np.testing.assert_array_equal(nnx.to_numpy(p.data), host[name])


def test_load_state_dict_lists_every_problem_and_changes_nothing():
    model = mlp()
    before = host_state(model)
    bad = {
        "0.weight": np.zeros((4, 5), dtype=np.float32),  # fine on its own
        "0.bias": np.zeros((6,), dtype=np.float32),  # wrong shape
        "2.weight": np.zeros((5, 3), dtype=np.float64),  # wrong dtype
        "9.weight": np.zeros(1, dtype=np.float32),  # unexpected
        # 2.bias missing
    }
    with pytest.raises(ValueError) as info:
        model.load_state_dict(bad)
    msg = str(info.value)
    for part in ("missing keys: 2.bias", "unexpected keys: 9.weight", "0.bias: shape (6",
                 "(5", "2.weight: dtype float64 in state_dict, float32 in model"):
        assert part in msg, (part, msg)
    assert "0.weight" not in msg
    for name, value in host_state(model).items():
        np.testing.assert_array_equal(value, before[name])  # 0.weight was not loaded either


def test_load_state_dict_non_strict():
    model = mlp()
    before = host_state(model)
    model.load_state_dict({"0.bias": np.ones(5, dtype=np.float32),
                           "extra": np.zeros(3, dtype=np.float32)}, strict=False)
    after = host_state(model)
    np.testing.assert_array_equal(after["0.bias"], np.ones(5))
    np.testing.assert_array_equal(after["0.weight"], before["0.weight"])
    with pytest.raises(ValueError, match="0.bias: shape"):
        model.load_state_dict({"0.bias": np.ones(4, dtype=np.float32)}, strict=False)
    with pytest.raises(ValueError, match="missing keys"):
        model.load_state_dict({"0.bias": np.ones(5, dtype=np.float32)})


def test_load_state_dict_across_backends(backend):
    with nnx.use_backend("numpy"):
        nnx.manual_seed(4)
        src = cnn()
    model = cnn()
    model.load_state_dict(src.state_dict())
    ref = host_state(src)
    for name, p in model.named_parameters():
        assert B.array_library(p.data) == backend.name
        np.testing.assert_array_equal(nnx.to_numpy(p.data), ref[name])


# ---------------------------------------------------------------------------
# train / eval
# ---------------------------------------------------------------------------


def caches(model):
    return {f"{i}.{k}": v for i, m in enumerate(model.modules()) for k, v in vars(m).items()
            if k.startswith("_cache") and v is not None}


def test_eval_keeps_no_activations_and_backward_raises(backend, rng):
    model = nnx.Sequential(nnx.ZeroPad2d(1), cnn())
    x = nnx.asarray(rng.standard_normal((2, 1, 2, 2)), dtype="float32")
    y_train = nnx.to_numpy(model(x))
    assert caches(model)
    assert model.eval() is model
    assert all(not m.training for m in model.modules())
    assert caches(model) == {}  # eval() drops the kept activations
    y_eval = model(x)
    np.testing.assert_array_equal(nnx.to_numpy(y_eval), y_train)
    assert caches(model) == {}  # and an eval forward keeps none
    with pytest.raises(RuntimeError, match="training mode"):
        model.backward(nnx.asarray(np.ones((2, 3)), dtype="float32"))
    model.train()
    assert all(m.training for m in model.modules())
    model(x)
    model.backward(nnx.asarray(np.ones((2, 3)), dtype="float32"))


@pytest.mark.parametrize("make,shape", [
    (lambda: nnx.Linear(2, 2), (1, 2)), (lambda: nnx.Conv2d(1, 1, 1), (1, 1, 2, 2)),
    (lambda: nnx.MaxPool2d(1), (1, 1, 2, 2)), (lambda: nnx.ReLU(), (1, 1, 2, 2)),
    (lambda: nnx.Flatten(), (1, 1, 2, 2)), (lambda: nnx.ZeroPad2d(1), (1, 1, 2, 2)),
], ids=["Linear", "Conv2d", "MaxPool2d", "ReLU", "Flatten", "ZeroPad2d"])
def test_each_layer_in_eval_mode(backend, make, shape):
    layer = make().eval()
    x = nnx.asarray(np.ones(shape), dtype="float32")
    y = layer(x)
    assert caches(nnx.Sequential(layer)) == {}
    with pytest.raises(RuntimeError, match="forward"):
        layer.backward(y)


# ---------------------------------------------------------------------------
# to(backend): moving models
# ---------------------------------------------------------------------------


def test_to_moves_parameters_with_identical_values(backend, rng):
    with nnx.use_backend("numpy"):
        nnx.manual_seed(9)
        model = cnn()
        x_host = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
        y_host = nnx.to_numpy(model(x_host))
    ref = host_state(model)
    assert model.to(backend) is model
    for name, p in model.named_parameters():
        assert B.array_library(p.data) == backend.name, name
        assert p.grad is None
        np.testing.assert_array_equal(nnx.to_numpy(p.data), ref[name])
    x = backend.from_numpy(x_host)
    y = model(x)
    nt.check_placement(y, x, "float32", "output after to()")
    nt.assert_close(y, y_host, "float32", "output after to()")
    model.to("numpy")
    for name, p in model.named_parameters():
        assert B.array_library(p.data) == "numpy"
        np.testing.assert_array_equal(nnx.to_numpy(p.data), ref[name])


def test_to_by_name_and_dtype(backend):
    model = mlp()
    ref = host_state(model)
    model.to(backend.name, dtype="float64")
    for name, p in model.named_parameters():
        assert B.array_library(p.data) == backend.name
        assert nt.dtype_of(p.data) == "float64"
        np.testing.assert_array_equal(nnx.to_numpy(p.data), ref[name].astype(np.float64))
    model.to(dtype="float32")
    for name, p in model.named_parameters():
        assert nt.dtype_of(p.data) == "float32"
        np.testing.assert_array_equal(nnx.to_numpy(p.data), ref[name])


def test_model_on_strict_second_device_keeps_everything_there(rng):
    d1 = nt.make_backend("array_api_strict:device1")
    with nnx.use_backend(d1):
        model = cnn()
        x = d1.from_numpy(rng.standard_normal((2, 1, 4, 4)).astype(np.float32))
        labels = d1.from_numpy(np.array([0, 2]))
        y = model(x)
        nt.check_placement(y, x, "float32", "output")
        loss = nnx.CrossEntropyLoss()
        value = loss(y, labels)
        nt.check_placement(value, x, "float32", "loss")
        dx = model.backward(loss.backward())
        nt.check_placement(dx, x, "float32", "input gradient")
        for name, p in model.named_parameters():
            assert "device1" in str(p.data.device), name
            nt.check_placement(p.grad, x, "float32", name + ".grad")
        opt = nnx.optim.SGD(model, lr=0.1, momentum=0.9, weight_decay=1e-3)
        opt.step()
        for name, p in model.named_parameters():
            nt.check_placement(p.data, x, "float32", name + " after step")
        assert all("device1" in str(b.device) for b in opt.buffers)


def test_to_second_device_and_back(rng):
    d0, d1 = nt.make_backend("array_api_strict"), nt.make_backend("array_api_strict:device1")
    with nnx.use_backend(d0):
        model = mlp()
    ref = host_state(model)
    model.to("array_api_strict", device="device1")
    x = d1.from_numpy(rng.standard_normal((3, 4)).astype(np.float32))
    for name, p in model.named_parameters():
        assert "device1" in str(p.data.device), name
        np.testing.assert_array_equal(nnx.to_numpy(p.data), ref[name])
    nt.check_placement(model(x), x, "float32", "output on device1")
    with pytest.raises(TypeError, match="device"):
        model(d0.from_numpy(np.zeros((3, 4), dtype=np.float32)))
    model.to(d0)
    assert all("CPU_DEVICE" in str(p.data.device) for p in model.parameters())
    # only a device: the library stays (as torch's .to(device)), whatever backend is active
    with nnx.use_backend("numpy"):
        model.to(device="device1")
    for name, p in model.named_parameters():
        assert B.array_library(p.data) == "array_api_strict", name
        assert "device1" in str(p.data.device), name
        np.testing.assert_array_equal(nnx.to_numpy(p.data), ref[name])


def test_model_loaded_on_device1_from_numpy_state(rng):
    src = mlp()
    d1 = nt.make_backend("array_api_strict:device1")
    with nnx.use_backend(d1):
        model = mlp()
    model.load_state_dict(src.state_dict())
    for p in model.parameters():
        assert "device1" in str(p.data.device)


def test_shared_parameter_is_listed_once_and_updated_once():
    a = nnx.Linear(3, 3)
    b = nnx.Linear(3, 3)
    b.weight = a.weight  # tied weights
    model = nnx.Sequential(a, nnx.ReLU(), b)
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.bias"]
    before = np.array(nnx.to_numpy(a.weight.data), copy=True)
    a.weight.grad = nnx.asarray(np.ones((3, 3), dtype=np.float32))
    for p in (a.bias, b.bias):
        p.grad = None
    nnx.optim.SGD(model, lr=0.5).step()
    np.testing.assert_allclose(nnx.to_numpy(a.weight.data), before - 0.5)


def tied_model():
    """Linear layers 0 and 2 share one weight (and a float64 head): dL/dW sums both uses."""
    a = nnx.Linear(4, 4, dtype="float64")
    b = nnx.Linear(4, 4, dtype="float64")
    b.weight = a.weight
    return nnx.Sequential(a, nnx.Tanh(), b, nnx.Tanh(), nnx.Linear(4, 2, dtype="float64"))


def test_tied_weights_get_the_sum_of_their_uses(backend, rng):
    model = tied_model()
    nt.gradcheck(model, rng.standard_normal((5, 4)))  # backward and backward_params_only
    # and across calls the contract holds: a second pass overwrites, it does not add
    x = nnx.asarray(rng.standard_normal((5, 4)), dtype="float64")
    g = nnx.asarray(rng.standard_normal((5, 2)), dtype="float64")
    model(x)
    model.backward(g)
    first = nnx.to_numpy(model.layers[0].weight.grad).copy()
    model(x)
    model.backward(g)
    np.testing.assert_array_equal(nnx.to_numpy(model.layers[0].weight.grad), first)


def test_tied_weights_between_residual_branches(rng):
    block = nnx.Sequential(nnx.Linear(3, 3, dtype="float64"), nnx.Tanh())
    shortcut = nnx.Linear(3, 3, dtype="float64")
    shortcut.weight = block.layers[0].weight
    nt.gradcheck(nnx.Residual(block, shortcut), rng.standard_normal((4, 3)))


def test_gradcheck_catches_a_wrong_backward_params_only():
    class Halved(nnx.Linear):
        def backward_params_only(self, grad_out):
            super().backward_params_only(grad_out)
            self.weight.grad = self.weight.grad / 2

    layer = Halved(3, 2, dtype="float64")
    with pytest.raises(AssertionError, match="by backward_params_only"):
        nt.gradcheck(layer, np.random.default_rng(0).standard_normal((4, 3)))


def test_load_state_dict_names_a_non_array_value():
    model = nnx.Sequential(nnx.Linear(2, 2))
    sd = {"0.weight": [[1.0, 2.0], [3.0, 4.0]], "0.bias": model.state_dict()["0.bias"]}
    with pytest.raises(ValueError, match="0.weight: a list in state_dict, not an array"):
        model.load_state_dict(sd)


def test_a_layer_object_may_appear_once_in_a_sequential():
    lin = nnx.Linear(3, 3)
    with pytest.raises(ValueError, match="item 2 is the same Linear object as item 0"):
        nnx.Sequential(lin, nnx.ReLU(), lin)


def test_to_rejects_non_float_dtypes():
    with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
        nnx.models.MLP((4, 3, 2)).to(dtype="int32")


def test_moving_between_libraries_does_not_share_memory():
    pytest.importorskip("torch")
    with nnx.use_backend("torch", device="cpu"):
        model = nnx.Sequential(nnx.Linear(2, 2))
    old = model[0].weight.data
    model.to("numpy")
    new = model[0].weight.data
    before = float(old[0, 0])
    new[0, 0] = before + 1.0
    assert float(old[0, 0]) == before
