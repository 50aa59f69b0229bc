"""The modern models against PyTorch: a ResNet-8 trained 20 steps with SGD momentum gives
PyTorch's per-step losses from the same initial weights on every backend, and its
state_dict (weights and BatchNorm buffers) round-trips between backends."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
import nnx.testing as nt

torch = pytest.importorskip("torch", reason="torch not installed")
tnn = torch.nn


class TorchResidual(tnn.Module):
    def __init__(self, block, shortcut):
        super().__init__()
        self.block, self.shortcut = block, shortcut

    def forward(self, x):
        return self.block(x) + (x if self.shortcut is None else self.shortcut(x))


def torch_resnet(depth=8, in_channels=3, num_classes=10):
    """The same network built from torch.nn, with nnx's module names."""
    def cbr(a, b, s):
        return [tnn.Conv2d(a, b, 3, s, 1, bias=False), tnn.BatchNorm2d(b), tnn.ReLU()]

    layers, c_in = cbr(in_channels, 16, 1), 16
    for stage, c_out in enumerate((16, 32, 64)):
        for i in range((depth - 2) // 6):
            s = 2 if stage > 0 and i == 0 else 1
            block = tnn.Sequential(*cbr(c_in, c_out, s),
                                   tnn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
                                   tnn.BatchNorm2d(c_out))
            short = None
            if s != 1 or c_in != c_out:
                short = tnn.Sequential(tnn.Conv2d(c_in, c_out, 1, s, bias=False),
                                       tnn.BatchNorm2d(c_out))
            layers.append(tnn.Sequential(TorchResidual(block, short), tnn.ReLU()))
            c_in = c_out
    layers += [tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(64, num_classes)]
    return tnn.Sequential(*layers)


def to_torch(state, linear_names):
    return {k: torch.tensor(np.ascontiguousarray(v.T if k in linear_names else v))
            for k, v in ((k, nnx.to_numpy(v)) for k, v in state.items())}


def test_resnet8_trains_like_pytorch_from_the_same_weights(backend, dtype):
    """20 steps of SGD momentum with weight decay on random 3×32×32 batches. In float64 the
    losses agree to float64 rounding; in float32 to float32 tolerance (lr 0.01 and batch 32
    keep training on noise from amplifying each step's rounding differences: at lr 0.05 and
    batch 16 the float32 runs drift apart by 3x per step while the float64 runs agree to
    1e-15, which is chaos, not a difference in the maths)."""
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((20, 32, 3, 32, 32)).astype(dtype)
    ys = rng.integers(0, 10, (20, 32))
    nnx.manual_seed(0)
    model = nnx.models.ResNet(8, dtype=dtype, backend=backend)
    ours = [name for name, _ in model.named_parameters()]
    theirs = torch_resnet(8).to(getattr(torch, dtype))
    assert sorted(ours) == sorted(k for k, _ in theirs.named_parameters())
    linear = {"8.weight"}
    theirs.load_state_dict(to_torch(model.state_dict(), linear))
    opt = nnx.optim.SGD(model, lr=0.01, momentum=0.9, weight_decay=5e-4)
    topt = torch.optim.SGD(theirs.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn, tloss_fn = nnx.CrossEntropyLoss(), tnn.CrossEntropyLoss()
    got, want = [], []
    for x, y in zip(xs, ys):
        loss = loss_fn(model(nnx.asarray(x, backend)), nnx.asarray(y, backend))
        model.backward(loss_fn.backward())
        opt.step()
        got.append(float(loss))
        topt.zero_grad()
        tl = tloss_fn(theirs(torch.tensor(x)), torch.tensor(y))
        tl.backward()
        topt.step()
        want.append(float(tl.detach()))
    nt.assert_close(np.array(got), np.array(want), dtype, what="per-step losses")
    assert want[-1] < want[0]  # it learned something, so the comparison means something
    assert int(model[1].num_batches_tracked.data) == 20
    if dtype == "float64":  # every weight and buffer, exactly (float32 rounding compounds)
        tstate = theirs.state_dict()
        for name, value in model.state_dict().items():
            ref = tstate[name].numpy()
            nt.assert_close(value, ref.T if name in linear else ref, dtype, what=name)


def test_resnet_state_dict_round_trips_between_backends(backend):
    nnx.manual_seed(1)
    src = nnx.models.ResNet(8, backend=backend)
    x = np.random.default_rng(2).standard_normal((4, 3, 16, 16)).astype(np.float32)
    for _ in range(2):  # training steps move the BatchNorm buffers away from their start
        src(nnx.asarray(x, backend))
    src.eval()
    dst = nnx.models.ResNet(8, backend="numpy")
    dst.load_state_dict(src.state_dict())
    dst.eval()
    nt.assert_close(dst(nnx.asarray(x, "numpy")), nnx.to_numpy(src(nnx.asarray(x, backend))),
                    "float32", what="eval logits after a round trip")


@pytest.mark.parametrize("depth", [8, 14, 20])
def test_resnet_shapes_and_sizes(depth):
    model = nnx.models.ResNet(depth)
    n = (depth - 2) // 6
    convs = [m for m in model.modules() if isinstance(m, nnx.Conv2d)]
    assert len(convs) == 1 + 6 * n + 2  # stem, two per block, two projections
    theirs = torch_resnet(depth)
    assert sum(p.data.size for p in model.parameters()) == \
        sum(p.numel() for p in theirs.parameters())
    assert tuple(model(nnx.asarray(np.zeros((2, 3, 32, 32), np.float32))).shape) == (2, 10)


def test_convnet_on_digits_in_train_and_eval():
    model = nnx.models.ConvNet(width=8)
    x = nnx.asarray(np.random.default_rng(3).random((4, 1, 28, 28)).astype(np.float32))
    assert tuple(model(x).shape) == (4, 10)
    model.eval()
    a, b = model(x), model(x)
    np.testing.assert_array_equal(nnx.to_numpy(a), nnx.to_numpy(b))  # no dropout in eval
    assert any(isinstance(m, nnx.Dropout) for m in model.modules())


@pytest.mark.parametrize("depth", [0, 7, 9, True])
def test_resnet_refuses_a_depth_that_is_not_6n_plus_2(depth):
    with pytest.raises(ValueError, match=r"ResNet: depth must be 6n \+ 2"):
        nnx.models.ResNet(depth)
