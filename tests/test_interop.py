"""nnx.interop: weights from PyTorch into nnx and back (Linear transposed, conv and BatchNorm as
they are), checked by the logits of the same network in both libraries."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
import nnx.testing as nt
from nnx.interop import load_torch_state_dict, to_torch_state_dict

torch = pytest.importorskip("torch", reason="torch not installed")
tnn = torch.nn
from test_models_torch import torch_resnet  # noqa: E402  (needs torch, checked above)


def torch_lenet5():
    """LeNet-5 from torch.nn, layer for layer as nnx.models.LeNet5 (so the names match)."""
    return tnn.Sequential(
        tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
        tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10))


def torch_mlp(sizes):
    layers = [tnn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(tnn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(tnn.ReLU())
    return tnn.Sequential(*layers)


def randomise_torch(net, seed=0):
    """Random weights and BatchNorm statistics (not the defaults: ones, zeros)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("num_batches_tracked"):
                t.fill_(7 + seed)
            elif name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith("running_mean") or name.endswith("bias"):
                t.copy_(0.2 * torch.randn(t.shape, generator=g))
            else:
                t.copy_(torch.randn(t.shape, generator=g) / max(1, t[0].numel()) ** 0.5)
    return net.eval()


CASES = {
    "lenet5": (torch_lenet5, lambda: nnx.models.LeNet5(), (1, 28, 28)),
    "resnet8": (torch_resnet, lambda: nnx.models.ResNet(8), (3, 32, 32)),
    "mlp-square": (lambda: torch_mlp((16, 16, 16, 4)), lambda: nnx.models.MLP((16, 16, 16, 4)),
                   (1, 4, 4)),
}


def logits_both(net, model, shape, seed=3, backend=None):
    x = np.random.default_rng(seed).standard_normal((5, *shape)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    model.eval()
    got = nnx.to_numpy(model(nnx.asarray(x, backend) if backend is not None else x))
    return got, want


@pytest.mark.parametrize("case", list(CASES))
def test_torch_weights_run_in_nnx_and_back(case):
    make_torch, make_nnx, shape = CASES[case]
    net = randomise_torch(make_torch())
    model = make_nnx()
    load_torch_state_dict(model, net.state_dict())
    got, want = logits_both(net, model, shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.abs(want).max() > 0.1  # logits large enough for the comparison to mean something
    for name, t in net.state_dict().items():
        if name.endswith("num_batches_tracked"):
            assert int(nnx.to_numpy(model.state_dict()[name])) == int(t) == 7

    # and back: nnx -> a fresh torch network gives the same logits and the same tensors
    back = randomise_torch(make_torch(), seed=1)
    sd = to_torch_state_dict(model)
    assert list(sd) == list(net.state_dict())  # PyTorch's names and order
    back.load_state_dict(sd, strict=True)
    for name, t in net.state_dict().items():
        assert sd[name].dtype == t.dtype and sd[name].shape == t.shape, name
        torch.testing.assert_close(back.state_dict()[name], t, rtol=0, atol=0, msg=name)
    got2, want2 = logits_both(back, model, shape, seed=4)
    np.testing.assert_allclose(got2, want2, rtol=1e-5, atol=1e-5)


def test_square_linear_weights_are_transposed_not_just_reshaped():
    """A square Linear weight has the same shape in both layouts: only the values tell."""
    net = randomise_torch(torch_mlp((16, 16, 16, 4)))
    model = nnx.models.MLP((16, 16, 16, 4))
    load_torch_state_dict(model, net.state_dict())
    w = nnx.to_numpy(model.state_dict()["1.weight"])
    np.testing.assert_array_equal(w, net.state_dict()["1.weight"].numpy().T)
    assert not np.array_equal(w, w.T)


def test_nnx_trained_weights_run_in_torch(tmp_path):
    """Weights trained by nnx (a few steps, BatchNorm statistics moved) give PyTorch the same
    eval logits, through a checkpoint and the interop functions."""
    nnx.manual_seed(0)
    model = nnx.models.ResNet(8)
    opt = nnx.optim.SGD(model, lr=0.05, momentum=0.9)
    loss = nnx.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.standard_normal((8, 3, 16, 16)).astype(np.float32)
        loss(model(x), rng.integers(0, 10, 8))
        model.backward(loss.backward())
        opt.step()
    nnx.save(tmp_path / "r.safetensors", model)
    loaded = nnx.load_model(tmp_path / "r.safetensors")
    net = torch_resnet()
    net.load_state_dict(to_torch_state_dict(loaded))
    assert int(net[1].num_batches_tracked) == 3
    got, want = logits_both(net.eval(), loaded, (3, 16, 16))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_to_torch_state_dict_copies(backend):
    """From any backend; the tensors are copies, so changing them leaves the model alone."""
    nnx.manual_seed(0)
    model = nnx.models.LeNet5(backend=backend)
    before = {k: nnx.to_numpy(v).copy() for k, v in model.state_dict().items()}
    sd = to_torch_state_dict(model)
    for k, t in sd.items():
        assert t.device.type == "cpu"
        ref = before[k].T if k in ("7.weight", "9.weight", "11.weight") else before[k]
        np.testing.assert_array_equal(t.numpy(), ref, err_msg=k)
        t.zero_()
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(nnx.to_numpy(v), before[k], err_msg=k)


def test_load_into_a_model_on_any_backend(backend):
    net = randomise_torch(torch_lenet5())
    model = nnx.models.LeNet5(backend=backend)
    load_torch_state_dict(model, net.state_dict())
    for v in model.state_dict().values():
        assert backend.same_place(v)
    got, want = logits_both(net, model, (1, 28, 28), backend=backend)
    nt.assert_close(got, want, "float32", what="logits")


def test_float64_tensors_are_cast_to_the_models_dtype():
    net = randomise_torch(torch_lenet5()).double()
    model = nnx.models.LeNet5()
    load_torch_state_dict(model, net.state_dict())
    assert nnx.to_numpy(model.state_dict()["0.weight"]).dtype == np.float32
    got, want = logits_both(net.float(), model, (1, 28, 28))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def one_line(info, *parts):
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 600, msg
    for part in parts:
        assert part in msg, (part, msg)


def test_missing_extra_and_misshaped_keys_are_named_and_nothing_changes():
    model = nnx.models.LeNet5()
    before = {k: nnx.to_numpy(v).copy() for k, v in model.state_dict().items()}
    sd = dict(randomise_torch(torch_lenet5()).state_dict())
    good = dict(sd)
    del sd["11.bias"]
    sd["12.weight"] = torch.zeros(3)
    sd["7.weight"] = sd["7.weight"].T.contiguous()  # nnx's layout where PyTorch's is expected
    with pytest.raises(ValueError) as info:
        load_torch_state_dict(model, sd)
    one_line(info, "LeNet5", "missing keys: 11.bias", "unexpected keys: 12.weight",
             "7.weight: shape (400, 120) in the state_dict, expected (120, 400) (PyTorch's "
             "Linear layout (out, in) of nnx's (400, 120))")
    sd = dict(good)
    sd["0.weight"] = torch.zeros(6, 1, 3, 3)
    with pytest.raises(ValueError) as info:
        load_torch_state_dict(model, sd)
    one_line(info, "0.weight: shape (6, 1, 3, 3) in the state_dict, expected (6, 1, 5, 5)")
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(nnx.to_numpy(v), before[k], err_msg=k)
    # strict=False: missing keys keep their values, extra keys are ignored
    partial = {k: v for k, v in good.items() if k != "11.bias"}
    partial["extra"] = torch.zeros(1)
    load_torch_state_dict(model, partial, strict=False)
    np.testing.assert_array_equal(nnx.to_numpy(model.state_dict()["11.bias"]), before["11.bias"])
    np.testing.assert_array_equal(nnx.to_numpy(model.state_dict()["0.bias"]),
                                  good["0.bias"].numpy())


def test_other_bad_inputs_are_one_line_errors():
    model = nnx.models.ResNet(8)
    sd = randomise_torch(torch_resnet()).state_dict()
    with pytest.raises(ValueError) as info:
        load_torch_state_dict(model, {f"module.{k}": v for k, v in sd.items()})
    one_line(info, "strip the 'module.' prefix")
    bad = dict(sd)
    bad["1.num_batches_tracked"] = torch.tensor(1.5)
    with pytest.raises(ValueError) as info:
        load_torch_state_dict(model, bad)
    one_line(info, "1.num_batches_tracked: dtype float32 in the state_dict, an integer dtype")
    bad = dict(sd)
    bad["1.weight"] = sd["1.weight"].to(torch.bfloat16)
    with pytest.raises(ValueError) as info:
        load_torch_state_dict(model, bad)
    one_line(info, "'1.weight'", "bfloat16", ".float()")
    bad = dict(sd)
    bad["1.weight"] = "ones"
    with pytest.raises(ValueError) as info:
        load_torch_state_dict(model, bad)
    one_line(info, "'1.weight' is a str")
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        load_torch_state_dict(model, list(sd.items()))
    with pytest.raises(TypeError, match="model must be an nnx Module"):
        to_torch_state_dict(torch_resnet())


def test_numpy_arrays_are_accepted_too():
    net = randomise_torch(torch_lenet5())
    model = nnx.models.LeNet5()
    load_torch_state_dict(model, {k: v.numpy() for k, v in net.state_dict().items()})
    got, want = logits_both(net, model, (1, 28, 28))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_without_torch_the_error_says_how_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"pip install 'nnx-array\[torch\]'"):
        to_torch_state_dict(nnx.models.MLP((4, 2)))
    # loading NumPy arrays needs no torch
    model = nnx.models.MLP((4, 2))
    load_torch_state_dict(model, {"1.weight": np.ones((2, 4), np.float32),
                                  "1.bias": np.zeros(2, np.float32)})
    np.testing.assert_array_equal(nnx.to_numpy(model.state_dict()["1.weight"]), np.ones((4, 2)))
