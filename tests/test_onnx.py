"""nnx.export_onnx and ``nnx export``: ONNX Runtime gives nnx's eval-mode outputs for every
model and every exportable layer, at two batch sizes (the batch axis is dynamic); a briefly
trained LeNet-5 keeps its held-out accuracy through onnxruntime; clear errors otherwise."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from clitools import nnx_cli, one_line_error

import nnx
from nnx.onnx_export import export_onnx, normalization


@pytest.fixture
def onnx():
    return pytest.importorskip("onnx", reason="onnx not installed (pip install 'nnx-array[onnx]')")


@pytest.fixture
def ort(onnx):
    return pytest.importorskip("onnxruntime",
                               reason="onnxruntime not installed (pip install 'nnx-array[onnx]')")


def exercise(model, shape, seed=0):
    """Make the comparison sensitive: BatchNorm running statistics and affine parameters away
    from their defaults (the statistics set to those of a real batch, so activations stay
    O(1)), and the last Linear scaled so that the logits spread over several units."""
    rng = np.random.default_rng(seed)
    norms = [m for m in model.modules() if isinstance(m, (nnx.BatchNorm1d, nnx.BatchNorm2d))]
    for m in norms:
        m.weight.data = rng.uniform(0.5, 1.5, m.num_features).astype(np.float32)
        m.bias.data = rng.normal(0, 0.2, m.num_features).astype(np.float32)
        m.momentum = 1.0  # running statistics := this batch's
    if norms:
        model.train()
        model(rng.random((16, *shape), dtype=np.float32))
        for m in norms:
            m.momentum = 0.1
    model.eval()
    last = [m for m in model.modules() if isinstance(m, nnx.Linear)][-1]
    x = rng.random((16, *shape), dtype=np.float32)
    spread = float(np.std(nnx.to_numpy(model(x))))
    last.weight.data = last.weight.data * np.float32(3.0 / spread)
    last.bias.data = last.bias.data * np.float32(3.0 / spread)
    model.eval()
    return model


def run_onnx(ort, path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"input": x})[0]


MODELS = {
    "MLP": (lambda: nnx.models.MLP((784, 64, 10)), (1, 28, 28)),
    "LeNet5": (lambda: nnx.models.LeNet5(), (1, 28, 28)),
    "WideCNN": (lambda: nnx.models.WideCNN(), (1, 28, 28)),
    "ResNet8": (lambda: nnx.models.ResNet(8), (3, 32, 32)),
    "ConvNet": (lambda: nnx.models.ConvNet(), (1, 28, 28)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_runs_in_onnxruntime_as_in_nnx(tmp_path, onnx, ort, name):
    make, shape = MODELS[name]
    nnx.manual_seed(1)
    model = exercise(make(), shape)
    path = tmp_path / f"{name}.onnx"
    export_onnx(model, path, shape)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 17
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == list(shape)
    ops = {n.op_type for n in proto.graph.node}
    assert "Dropout" not in ops
    rng = np.random.default_rng(2)
    for batch in (3, 8):  # one file, two batch sizes
        x = rng.random((batch, *shape), dtype=np.float32)
        got = run_onnx(ort, path, x)
        want = nnx.to_numpy(model(x))
        assert got.shape == want.shape == (batch, 10)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        assert np.abs(want).max() > 1.0  # logits large enough for 1e-5 to be a real bound


class Square(nnx.Module):
    def forward(self, x):
        return x * x


def zoo(bn_affine=True):
    """Every exportable layer, with non-default settings wherever they change the numbers."""
    L = nnx
    return nnx.Sequential(
        L.ZeroPad2d((1, 2, 0, 3)),
        L.Conv2d(2, 4, 3, stride=(2, 1), padding=(1, 2), bias=False),
        L.BatchNorm2d(4, eps=0.1, affine=False),
        L.LeakyReLU(0.2),
        L.AvgPool2d(3, stride=2, padding=1),  # the padding counts in the divisor
        L.Residual(L.Sequential(L.Conv2d(4, 4, 3, padding=1), L.BatchNorm2d(4), L.GELU())),
        L.Residual(L.Sequential(L.Conv2d(4, 4, 1), L.Tanh()),
                   L.Sequential(L.Conv2d(4, 4, 1, bias=False), L.Sigmoid())),
        L.GELU("tanh"),
        L.MaxPool2d(3, stride=1, padding=1),
        L.AdaptiveAvgPool2d((None, 4)),  # 3x8 -> 3x4: an AveragePool, not a global one
        L.Flatten(),
        L.Dropout(0.5),
        L.Linear(48, 6, bias=False),
        L.BatchNorm1d(6),
        L.ReLU(),
        L.Linear(6, 3),
    )


def randomise_buffers(model, seed=0):
    rng = np.random.default_rng(seed)
    for m in model.modules():
        if isinstance(m, (nnx.BatchNorm1d, nnx.BatchNorm2d)):
            m.running_mean.data = rng.normal(0, 0.3, m.num_features).astype(np.float32)
            m.running_var.data = rng.uniform(0.05, 0.5, m.num_features).astype(np.float32)
            if m.weight is not None:
                m.weight.data = rng.uniform(0.5, 1.5, m.num_features).astype(np.float32)
                m.bias.data = rng.normal(0, 0.3, m.num_features).astype(np.float32)
    return model


@pytest.mark.parametrize("opset", [17, 20])
def test_every_layer_kind_at_two_opsets(tmp_path, onnx, ort, opset):
    nnx.manual_seed(3)
    model = randomise_buffers(zoo()).eval()
    path = tmp_path / "zoo.onnx"
    proto = export_onnx(model, path, (2, 9, 10), opset=opset)
    ops = [n.op_type for n in proto.graph.node]
    assert {"Pad", "Conv", "BatchNormalization", "LeakyRelu", "AveragePool", "Add", "Tanh",
            "Sigmoid", "MaxPool", "Flatten", "Gemm", "Relu"} <= set(ops)
    assert "GlobalAveragePool" not in ops and "Dropout" not in ops
    if opset >= 20:
        assert ops.count("Gelu") == 2 and "Erf" not in ops
    else:
        assert "Gelu" not in ops and "Erf" in ops
    rng = np.random.default_rng(4)
    for batch in (1, 5):
        x = rng.normal(0, 1, (batch, 2, 9, 10)).astype(np.float32)
        np.testing.assert_allclose(run_onnx(ort, path, x), nnx.to_numpy(model(x)),
                                   rtol=1e-5, atol=1e-5)


def test_normalisation_is_the_graphs_first_step(tmp_path, onnx, ort):
    nnx.manual_seed(0)
    model = exercise(nnx.models.ResNet(8), (3, 16, 16))
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    path = tmp_path / "n.onnx"
    proto = export_onnx(model, path, (3, 16, 16), normalize=(mean, std),
                        metadata={"classes": json.dumps(list("abcdefghij"))})
    assert [n.op_type for n in proto.graph.node[:2]] == ["Sub", "Div"]
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["normalize"]) == {"mean": list(mean), "std": list(std)}
    assert json.loads(props["classes"])[0] == "a" and props["nnx_version"] == nnx.__version__
    x = np.random.default_rng(5).random((4, 3, 16, 16), dtype=np.float32)
    want = nnx.to_numpy(model(nnx.data.transforms.Normalize(mean, std).apply(x)))
    np.testing.assert_allclose(run_onnx(ort, path, x), want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(run_onnx(ort, path, x), nnx.to_numpy(model(x)), atol=1e-3)


def test_normalization_accepts_what_checkpoints_record():
    recorded = {"name": "Compose", "transforms": [{"name": "Normalize", "mean": [0.13],
                                                  "std": [0.31]}]}
    assert normalization(recorded) == ((0.13,), (0.31,))
    assert normalization(None) is None
    assert normalization({"name": "Compose", "transforms": []}) is None
    assert normalization(((0.5,), (0.25,))) == ((0.5,), (0.25,))
    T = nnx.data.transforms
    # two Normalize steps fold into one with the same result
    two = T.Compose([T.Normalize([0.1, 0.2], [0.5, 2.0]), T.Normalize([1.0, -1.0], [4.0, 0.5])])
    mean, std = normalization(two)
    x = np.random.default_rng(0).random((2, 2, 3, 3), dtype=np.float32)
    folded = T.Normalize(mean, std).apply(x)
    np.testing.assert_allclose(folded, two.apply(x, [None, None]), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="only Normalize steps.*RandomCrop"):
        normalization(T.Compose([T.RandomCrop(2), T.Normalize([0.1], [0.3])]))
    with pytest.raises(ValueError, match="std must be > 0"):
        normalization(([0.1], [0.0]))
    with pytest.raises(ValueError, match="unknown transform"):
        normalization({"name": "Blur"})


def test_layers_it_cannot_export_are_named(tmp_path, onnx):
    path = tmp_path / "x.onnx"
    model = nnx.Sequential(nnx.Flatten(), nnx.Sequential(nnx.Linear(4, 3), Square()))
    with pytest.raises(ValueError, match=r"cannot export layer '1\.1' \(Square\): no ONNX mapping "
                                         r"for Square; supported: Sequential, Residual, Linear"):
        export_onnx(model, path, (4,))

    class Doubled(nnx.Sequential):
        def forward(self, x):
            return super().forward(x) * 2

    with pytest.raises(ValueError, match=r"cannot export the model \(Doubled\): it overrides "
                                         r"Sequential.forward"):
        export_onnx(Doubled(nnx.Linear(4, 2)), path, (4,))
    with pytest.raises(ValueError, match=r"layer '1' \(BatchNorm1d\): without running statistics"):
        export_onnx(nnx.Sequential(nnx.Linear(4, 3), nnx.BatchNorm1d(3, track_running_stats=False)),
                    path, (4,))
    assert not path.exists()


def test_bad_arguments_are_one_line_errors(tmp_path, onnx):
    path = tmp_path / "x.onnx"
    model = nnx.models.LeNet5()
    model.train()
    with pytest.raises(ValueError, match=r"does not take inputs of shape \(batch, 1, 20, 20\): "
                                         r"Linear\(400, 120\): expected input of shape"):
        export_onnx(model, path, (1, 20, 20))
    assert model.training and all(m.training for m in model.modules())  # modes restored
    for bad in (28, (0, 28, 28), (1.0, 28, 28), ()):
        with pytest.raises(ValueError, match="input_shape must be the shape of one input"):
            export_onnx(model, path, bad)
    with pytest.raises(ValueError, match="opset must be an int from 17"):
        export_onnx(model, path, (1, 28, 28), opset=16)
    with pytest.raises(ValueError, match="normalize has 3 channel means but the input has 1"):
        export_onnx(model, path, (1, 28, 28), normalize=([0.1] * 3, [0.2] * 3))
    with pytest.raises(TypeError, match="model must be an nnx Module"):
        export_onnx("LeNet5", path, (1, 28, 28))
    assert not path.exists()
    model.eval()
    export_onnx(model, path, (1, 28, 28))
    assert not model.training and not any(m.training for m in model.modules())


def test_without_onnx_the_error_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'nnx-array\[onnx\]'"):
        export_onnx(nnx.models.LeNet5(), tmp_path / "x.onnx", (1, 28, 28))
    assert not (tmp_path / "x.onnx").exists()


# ---------------------------------------------------------------------------
# a LeNet-5 trained briefly with `nnx train`, exported with `nnx export`
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pytest.importorskip("onnx", reason="onnx not installed (pip install 'nnx-array[onnx]')")
    pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    out = tmp_path_factory.mktemp("onnx-run")
    res = nnx_cli("train", "--epochs", "1", "--out", str(out / "run"), "--backend", "numpy",
                  "--no-progress")
    assert res.returncode == 0, res.stderr
    return out / "run" / "best.safetensors"


def test_exported_lenet5_keeps_its_accuracy(trained, tmp_path):
    import onnx
    import onnxruntime as ort

    res = nnx_cli("export", str(trained), str(tmp_path / "new folder" / "lenet5.onnx"))
    assert res.returncode == 0, res.stderr  # the folder is made, as nnx train --out makes its own
    (tmp_path / "new folder" / "lenet5.onnx").rename(tmp_path / "lenet5.onnx")
    assert "input 'input' float32 (batch, 1, 28, 28) pixels in [0, 1] (normalised in the graph)" \
        in res.stdout, res.stdout
    assert "agrees with nnx" in res.stdout, res.stdout
    proto = onnx.load(str(tmp_path / "lenet5.onnx"))
    props = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(props["classes"]) == [str(d) for d in range(10)]
    assert json.loads(props["model_config"])["name"] == "LeNet5"

    ev = nnx_cli("evaluate", str(trained), "--backend", "numpy")
    assert ev.returncode == 0, ev.stderr
    nnx_acc = float(ev.stdout.split("accuracy:")[1].split()[0])
    ds = nnx.datasets.load("sample")
    x = ds.test_images[:, None].astype(np.float32) / np.float32(255)  # pixels in [0, 1]
    session = ort.InferenceSession(str(tmp_path / "lenet5.onnx"),
                                   providers=["CPUExecutionProvider"])
    logits = np.concatenate([session.run(["logits"], {"input": x[i:i + 250]})[0]
                             for i in range(0, len(x), 250)])
    onnx_acc = float(np.mean(logits.argmax(1) == ds.test_labels))
    assert f"{onnx_acc:.4f}" == f"{nnx_acc:.4f}"
    assert nnx_acc > 0.5  # trained: the comparison is not between two coin tosses
    # and the same logits as the checkpoint's model after the recorded normalisation
    ck = nnx.load(trained)
    model = ck.build_model("numpy").eval()
    norm = nnx.data.transforms.from_config(ck.meta["config"]["transforms"]["eval"])
    want = nnx.to_numpy(model(norm.apply(x[:64], [None])))
    np.testing.assert_allclose(logits[:64], want, rtol=1e-5, atol=1e-5)


def test_export_command_errors(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    res = nnx_cli("export", str(tmp_path / "notes.txt"), str(tmp_path / "m.onnx"))
    assert "notes.txt" in one_line_error(res)
    res = nnx_cli("export", str(tmp_path / "missing.safetensors"), str(tmp_path / "m.onnx"))
    assert "no checkpoint at" in one_line_error(res)
    res = nnx_cli("export", str(tmp_path), str(tmp_path / "m.onnx"))
    assert "is a folder, not a checkpoint" in one_line_error(res)
    assert not (tmp_path / "m.onnx").exists()
