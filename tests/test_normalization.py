"""BatchNorm1d / BatchNorm2d: PyTorch's numbers in training and eval, running statistics,
buffers in state_dict / checkpoints / Module.to, gradients by central differences."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
import nnx.testing as nt
from nnx import BatchNorm1d, BatchNorm2d


def ref_train(x, w, b, eps=1e-5):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w.reshape(shape) + b.reshape(shape)


@pytest.mark.parametrize("cls, shape", [(BatchNorm2d, (6, 3, 5, 4)), (BatchNorm1d, (7, 3)),
                                        (BatchNorm1d, (5, 3, 6))])
def test_training_forward_matches_numpy(backend, dtype, cls, shape):
    x = np.random.default_rng(0).standard_normal(shape) * 3 + 1

    def run(xb):
        layer = cls(3, dtype=nt.dtype_of(xb))
        layer.weight.data = nnx.asarray(np.array([0.5, -1.0, 2.0]), dtype=nt.dtype_of(xb))
        layer.bias.data = nnx.asarray(np.array([0.1, 0.0, -0.3]), dtype=nt.dtype_of(xb))
        return layer(xb)

    out = nt.assert_matches_reference(run, x, backend=backend, dtype=dtype)[0]
    nt.assert_close(out, ref_train(x, np.array([0.5, -1.0, 2.0]), np.array([0.1, 0.0, -0.3])),
                    dtype, what="against the NumPy formula")


@pytest.mark.parametrize("cls, shape", [(BatchNorm2d, (4, 2, 3, 3)), (BatchNorm1d, (5, 2)),
                                        (BatchNorm1d, (3, 2, 4))])
def test_training_gradients_by_central_differences(backend, cls, shape):
    x = np.random.default_rng(1).standard_normal(shape)
    layer = cls(2, dtype="float64", backend=backend)
    layer.weight.data = nnx.asarray(np.array([1.5, -0.7]), backend)
    nt.gradcheck(layer, x)


def test_matches_pytorch_over_five_steps_then_in_eval(dtype):
    torch = pytest.importorskip("torch")
    tdt = getattr(torch, dtype)
    rng = np.random.default_rng(2)
    ours = BatchNorm2d(4, momentum=0.2, dtype=dtype)
    theirs = torch.nn.BatchNorm2d(4, momentum=0.2).to(tdt)
    w, b = rng.standard_normal(4), rng.standard_normal(4)
    ours.weight.data, ours.bias.data = nnx.asarray(w, dtype=dtype), nnx.asarray(b, dtype=dtype)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(w)), theirs.bias.copy_(torch.tensor(b))
    for step in range(5):
        x = rng.standard_normal((8, 4, 3, 3)) * (step + 1) + step
        g = rng.standard_normal((8, 4, 3, 3))
        tx = torch.tensor(x, dtype=tdt, requires_grad=True)
        ty = theirs(tx)
        ty.backward(torch.tensor(g, dtype=tdt))
        y = ours(nnx.asarray(x, dtype=dtype))
        dx = ours.backward(nnx.asarray(g, dtype=dtype))
        nt.assert_close(y, ty.detach().numpy(), dtype, what=f"y step {step}")
        nt.assert_close(dx, tx.grad.numpy(), dtype, what=f"dx step {step}")
        nt.assert_close(ours.weight.grad, theirs.weight.grad.numpy(), dtype, what="dweight")
        nt.assert_close(ours.bias.grad, theirs.bias.grad.numpy(), dtype, what="dbias")
        theirs.weight.grad = theirs.bias.grad = None
    nt.assert_close(ours.running_mean.data, theirs.running_mean.numpy(), dtype, what="mean")
    nt.assert_close(ours.running_var.data, theirs.running_var.numpy(), dtype, what="var")
    assert int(ours.num_batches_tracked.data) == int(theirs.num_batches_tracked) == 5
    ours.eval(), theirs.eval()
    x = rng.standard_normal((3, 4, 2, 2))
    nt.assert_close(ours(nnx.asarray(x, dtype=dtype)),
                    theirs(torch.tensor(x, dtype=tdt)).detach().numpy(), dtype, what="eval")


def test_cumulative_average_without_momentum_and_no_affine():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    ours = BatchNorm1d(3, momentum=None, affine=False, dtype="float64")
    theirs = torch.nn.BatchNorm1d(3, momentum=None, affine=False).double()
    assert ours.parameters() == [] and ours.weight is None
    for _ in range(4):
        x = rng.standard_normal((6, 3)) * 2
        nt.assert_close(ours(nnx.asarray(x)), theirs(torch.tensor(x)).numpy(), "float64")
    nt.assert_close(ours.running_var.data, theirs.running_var.numpy(), "float64")


def test_without_running_stats_eval_uses_the_batch():
    layer = BatchNorm2d(2, track_running_stats=False, dtype="float64")
    assert layer.buffers() == [] and list(layer.state_dict()) == ["weight", "bias"]
    x = np.random.default_rng(4).standard_normal((4, 2, 3, 3))
    layer.eval()
    nt.assert_close(layer(nnx.asarray(x)), ref_train(x, np.ones(2), np.zeros(2)), "float64")


def test_buffers_live_in_state_dict_and_move_with_the_model(backend):
    model = nnx.Sequential(nnx.Conv2d(1, 2, 3), BatchNorm2d(2), nnx.ReLU())
    assert list(model.state_dict()) == ["0.weight", "0.bias", "1.weight", "1.bias",
                                        "1.running_mean", "1.running_var",
                                        "1.num_batches_tracked"]
    assert len(nnx.optim.SGD(model, lr=0.1, weight_decay=0.1).params) == 4  # no buffers
    model(nnx.asarray(np.random.default_rng(5).random((3, 1, 5, 5)).astype("float32")))
    model.to(backend.name, dtype="float64")
    bn = model[1]
    for buf in (bn.running_mean, bn.running_var):
        assert backend.same_place(buf.data) and nt.dtype_of(buf.data) == "float64"
    assert nt.dtype_of(bn.num_batches_tracked.data) == "int64"
    assert int(bn.num_batches_tracked.data) == 1
    other = nnx.Sequential(nnx.Conv2d(1, 2, 3, dtype="float64"), BatchNorm2d(2, dtype="float64"),
                           nnx.ReLU())
    other.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(nnx.to_numpy(other[1].running_var.data),
                                  nnx.to_numpy(bn.running_var.data))
    assert int(other[1].num_batches_tracked.data) == 1


def test_checkpoints_carry_the_buffers(tmp_path):
    model = nnx.Sequential(nnx.Linear(4, 3), BatchNorm1d(3))
    for _ in range(3):
        model(nnx.asarray(np.random.default_rng(6).random((5, 4)).astype("float32")))
    nnx.save(tmp_path / "m.safetensors", model)
    ckpt = nnx.load(tmp_path / "m.safetensors")
    assert ckpt.tensors["model.1.num_batches_tracked"].dtype == np.int64
    again = nnx.Sequential(nnx.Linear(4, 3), BatchNorm1d(3))
    ckpt.restore(again)
    assert int(again[1].num_batches_tracked.data) == 3
    np.testing.assert_array_equal(nnx.to_numpy(again[1].running_mean.data),
                                  nnx.to_numpy(model[1].running_mean.data))


def test_one_value_per_channel_in_training_is_pytorchs_error():
    layer = BatchNorm1d(3)
    with pytest.raises(ValueError, match=r"expected more than 1 value per channel when training, "
                                         r"got input of shape \(1, 3\)"):
        layer(nnx.asarray(np.ones((1, 3), np.float32)))
    layer.eval()
    assert tuple(layer(nnx.asarray(np.ones((1, 3), np.float32))).shape) == (1, 3)


@pytest.mark.parametrize("kwargs, match", [
    ({"num_features": 0}, "num_features must be a positive int"),
    ({"num_features": 3, "eps": 0}, "eps must be a number > 0"),
    ({"num_features": 3, "momentum": 1.5}, r"momentum must be a number in \(0.0, 1.0\]"),
    ({"num_features": 3, "momentum": True}, "momentum"),
])
def test_bad_arguments_name_the_layer(kwargs, match):
    with pytest.raises(ValueError, match="BatchNorm2d: " + match):
        BatchNorm2d(**kwargs)


def test_wrong_channels_and_rank_are_clear():
    with pytest.raises(ValueError, match=r"expected 3 channels \(axis 1\), got input of shape"):
        BatchNorm2d(3)(nnx.asarray(np.ones((2, 4, 3, 3), np.float32)))
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3.*expected input of shape"):
        BatchNorm2d(3)(nnx.asarray(np.ones((2, 3), np.float32)))
    with pytest.raises(RuntimeError, match="needs a forward"):
        BatchNorm2d(3).backward(nnx.asarray(np.ones((2, 3, 2, 2), np.float32)))
