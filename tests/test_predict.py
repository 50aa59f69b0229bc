"""``nnx predict``: digit images of the bundled sample written as PNG, JPEG and .npy files are
classified like the checkpoint's model classifies them; what the model takes is read from the
checkpoint (or inferred for older ones); unreadable files give one line naming them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from clitools import cli_env, nnx_cli, one_line_error

import nnx
from nnx.checkpoint import Checkpoint, load_file, save_file
from nnx.predict import input_spec, predict_files, read_images

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OLD_CHECKPOINT = FIXTURES / "nnx-0.1.0-lenet5.safetensors"
N = 30


def pillow():
    return pytest.importorskip("PIL.Image", reason="Pillow not installed "
                                                   "(pip install 'nnx-array[predict]')")


@pytest.fixture(scope="module")
def sample():
    return nnx.datasets.load("sample")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An MLP trained one epoch on the sample by `nnx train` (normalised inputs recorded)."""
    out = tmp_path_factory.mktemp("predict-run") / "run"
    res = nnx_cli("train", "--model", "mlp", "--epochs", "1", "--out", str(out), "--backend",
                  "numpy", "--no-progress")
    assert res.returncode == 0, res.stderr
    return out / "best.safetensors"


@pytest.fixture(scope="module")
def pngs(tmp_path_factory, sample):
    Image = pillow()
    folder = tmp_path_factory.mktemp("digits")
    paths = []
    for i in range(N):
        p = folder / f"digit{i:02d}.png"
        Image.fromarray(sample.test_images[i]).save(p)
        paths.append(p)
    return paths


def nnx_probabilities(checkpoint, images01):
    """What the checkpoint's model gives images in [0, 1], through nnx alone."""
    ck = nnx.load(checkpoint)
    model = ck.build_model("numpy").eval()
    x = images01[:, None].astype(np.float32)
    spec = ((ck.meta.get("config") or {}).get("transforms") or {}).get("eval")
    if spec is not None:
        x = nnx.data.transforms.from_config(spec).apply(x, [None])
    logits = nnx.to_numpy(model(x)).astype(np.float64)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def parse(stdout):
    """{file: [(index, name, probability), ...]} from predict's lines."""
    out = {}
    for line in stdout.strip().splitlines():
        name, rest = line.split(": ", 1)
        entries = []
        for item in rest.split(", "):
            idx, cls, prob = item.split(" ")
            assert cls.startswith("(") and cls.endswith(")"), line
            entries.append((int(idx), cls[1:-1], float(prob)))
        out[name] = entries
    return out


def test_predict_prints_the_right_classes_for_digit_pngs(trained, pngs, sample):
    res = nnx_cli("predict", str(trained), *map(str, pngs), "--backend", "numpy")
    assert res.returncode == 0, res.stderr
    got = parse(res.stdout)
    assert list(got) == [str(p) for p in pngs]  # one line per file, in order
    want = nnx_probabilities(trained, sample.test_images[:N] / np.float32(255))
    labels = sample.test_labels[:N]
    for i, p in enumerate(pngs):
        (idx, name, prob), = got[str(p)]
        assert idx == int(want[i].argmax()) and name == str(idx)
        assert prob == pytest.approx(want[i].max(), abs=6e-5)
    right = sum(got[str(p)][0][0] == labels[i] for i, p in enumerate(pngs))
    assert right >= 0.8 * N, f"{right}/{N} right"


def test_top_three(trained, pngs, sample):
    res = nnx_cli("predict", str(trained), *map(str, pngs[:5]), "--top", "3", "--backend", "numpy")
    assert res.returncode == 0, res.stderr
    got = parse(res.stdout)
    want = nnx_probabilities(trained, sample.test_images[:5] / np.float32(255))
    for i, p in enumerate(pngs[:5]):
        entries = got[str(p)]
        assert len(entries) == 3
        assert [e[0] for e in entries] == list(np.argsort(-want[i], kind="stable")[:3])
        probs = [e[2] for e in entries]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 2e-4
        for idx, _, prob in entries:
            assert prob == pytest.approx(want[i][idx], abs=6e-5)
    res = nnx_cli("predict", str(trained), str(pngs[0]), "--top", "0")
    assert res.returncode == 2 and "positive integer" in res.stderr


def test_colour_resized_jpeg_npy_and_inverted_inputs(trained, sample, tmp_path):
    Image = pillow()
    digits = sample.test_images[:8]
    # a 56x56 RGB PNG of a 28x28 grey digit comes back as (nearly) the same 1x28x28 input
    big = tmp_path / "big.png"
    Image.fromarray(digits[0]).resize((56, 56), Image.BILINEAR).convert("RGB").save(big)
    (label, x), = read_images(big, (1, 28, 28))
    assert label == str(big) and x.shape == (1, 28, 28) and x.dtype == np.float32
    # up and down again blurs a little; a transposed, unscaled or shifted image is far off
    assert np.abs(x[0] - digits[0] / 255).mean() < 0.05
    assert np.corrcoef(x[0].ravel(), digits[0].ravel())[0, 1] > 0.95
    jpg = tmp_path / "d.jpg"
    Image.fromarray(digits[1]).save(jpg, quality=95)
    (_, xj), = read_images(jpg, (1, 28, 28))
    assert np.abs(xj[0] - digits[1] / 255).mean() < 0.03
    assert np.corrcoef(xj[0].ravel(), digits[1].ravel())[0, 1] > 0.98
    # .npy: one image, a stack (labelled file[i]), float pixels in [0, 1]
    np.save(tmp_path / "one.npy", digits[2])
    np.save(tmp_path / "stack.npy", digits[:4])
    np.save(tmp_path / "float.npy", (digits[5] / 255).astype(np.float32)[None])
    Image.fromarray(255 - digits[6]).save(tmp_path / "dark_on_light.png")
    res = nnx_cli("predict", str(trained), str(tmp_path / "one.npy"), str(tmp_path / "stack.npy"),
                  str(tmp_path / "float.npy"), "--backend", "numpy")
    assert res.returncode == 0, res.stderr
    got = parse(res.stdout)
    want = nnx_probabilities(trained, digits / np.float32(255)).argmax(1)
    stack = str(tmp_path / "stack.npy")
    assert list(got) == [str(tmp_path / "one.npy"), *(f"{stack}[{i}]" for i in range(4)),
                         str(tmp_path / "float.npy")]
    assert got[str(tmp_path / "one.npy")][0][0] == want[2]
    assert [got[f"{stack}[{i}]"][0][0] for i in range(4)] == list(want[:4])
    assert got[str(tmp_path / "float.npy")][0][0] == want[5]
    inv = predict_files(trained, [tmp_path / "dark_on_light.png"], invert=True, backend="numpy")
    assert inv[0].top[0][0] == want[6]


def test_unreadable_files_are_named_in_one_line(trained, pngs, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    res = nnx_cli("predict", str(trained), str(pngs[0]), str(tmp_path / "broken.png"))
    line = one_line_error(res)
    assert "broken.png: not an image Pillow can read" in line and res.stdout == ""
    res = nnx_cli("predict", str(trained), str(tmp_path / "nothere.png"))
    assert "nothere.png: no such file" in one_line_error(res)
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    res = nnx_cli("predict", str(trained), str(tmp_path / "objects.npy"))
    assert "objects.npy: the .npy file holds Python objects; nnx never unpickles" \
        in one_line_error(res)
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    res = nnx_cli("predict", str(trained), str(tmp_path / "bad.npy"))
    assert "bad.npy: not a readable .npy file" in one_line_error(res)
    np.save(tmp_path / "loud.npy", np.full((28, 28), 2.0, np.float32))
    res = nnx_cli("predict", str(trained), str(tmp_path / "loud.npy"))
    assert "loud.npy: float pixels must be finite and lie in [0, 1]" in one_line_error(res)
    np.save(tmp_path / "odd.npy", np.zeros((2, 5, 28, 28), np.uint8))
    res = nnx_cli("predict", str(trained), str(tmp_path / "odd.npy"))
    assert "odd.npy: an array of shape (2, 5, 28, 28) is not an image" in one_line_error(res)
    res = nnx_cli("predict", str(tmp_path / "broken.png"), str(pngs[0]))
    assert "broken.png" in one_line_error(res)


def test_without_pillow_the_error_says_how_to_install(trained, tmp_path, sample, monkeypatch):
    png = tmp_path / "d.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    code = ("import sys; sys.modules['PIL'] = None; sys.argv = ['nnx'] + sys.argv[1:]; "
            "from nnx.cli import main; raise SystemExit(main())")
    res = subprocess.run([sys.executable, "-c", code, "predict", str(trained), str(png)],
                         capture_output=True, text=True, env=cli_env(), timeout=300)
    line = one_line_error(res)
    assert "Pillow" in line and "pip install 'nnx-array[predict]'" in line, line
    # .npy files of the right size need no Pillow; another size needs it to resize
    monkeypatch.setitem(sys.modules, "PIL", None)
    np.save(tmp_path / "ok.npy", sample.test_images[0])
    (label, x), = read_images(tmp_path / "ok.npy", (1, 28, 28))
    np.testing.assert_array_equal(x[0], sample.test_images[0] / np.float32(255))
    np.save(tmp_path / "small.npy", sample.test_images[0][::2, ::2])
    with pytest.raises(ImportError, match=r"small.npy: the image is 14x14, the model takes 28x28; "
                                          r".*pip install 'nnx-array\[predict\]'"):
        read_images(tmp_path / "small.npy", (1, 28, 28))


def test_a_checkpoint_of_nnx_010_predicts_with_inferred_facts(pngs, sample):
    """nnx 0.1 recorded no input shape, classes or normalisation: MNIST digits are assumed."""
    spec = input_spec(nnx.load(OLD_CHECKPOINT))
    assert spec.shape == (1, 28, 28) and spec.classes == tuple("0123456789")
    assert spec.normalize is None and spec.source.startswith("inferred")
    got = predict_files(OLD_CHECKPOINT, pngs[:10], top=2, backend="numpy")
    want = nnx_probabilities(OLD_CHECKPOINT, sample.test_images[:10] / np.float32(255))
    for p, w in zip(got, want):
        assert [t[0] for t in p.top] == list(np.argsort(-w, kind="stable")[:2])
        assert p.top[0][2] == pytest.approx(w.max(), rel=1e-5)


def with_meta(tmp_path, model, **meta_changes):
    """A checkpoint of ``model`` whose nnx metadata has ``meta_changes`` applied."""
    nnx.save(tmp_path / "m.safetensors", model)
    tensors, metadata = load_file(tmp_path / "m.safetensors")
    meta = {**json.loads(metadata["nnx"]), **meta_changes}
    path = tmp_path / "edited.safetensors"
    save_file(path, tensors, {"nnx": json.dumps(meta)})
    return nnx.load(path)


def test_input_spec_fallbacks(tmp_path):
    ck = with_meta(tmp_path, nnx.models.LeNet5(num_classes=4, in_channels=3, input_size=32))
    spec = input_spec(ck)
    assert spec.shape == (3, 32, 32) and spec.classes == ("0", "1", "2", "3")
    assert input_spec(with_meta(tmp_path, nnx.models.MLP((784, 10)))).shape == (1, 28, 28)
    assert input_spec(with_meta(tmp_path, nnx.models.ResNet(8))).shape == (3, 32, 32)
    cifar = input_spec(with_meta(tmp_path, nnx.models.ResNet(8), config={"dataset": "cifar10"}))
    assert cifar.classes[3] == "cat" and cifar.shape == (3, 32, 32)
    facts = {"name": "fashion-mnist", "shape": [1, 28, 28], "classes": ["a", "b"],
             "mean": [0.2], "std": [0.3]}
    recorded = input_spec(with_meta(tmp_path, nnx.models.MLP((784, 2)), config={
        "data_facts": facts, "transforms": {"eval": {"name": "Compose", "transforms": [
            {"name": "Normalize", "mean": [0.2], "std": [0.3]}]}}}))
    assert recorded == type(recorded)((1, 28, 28), ("a", "b"), ((0.2,), (0.3,)),
                                      "recorded by nnx train")
    with pytest.raises(ValueError, match="edited.safetensors: the checkpoint records no input "
                                         "shape"):
        input_spec(with_meta(tmp_path, nnx.models.MLP((10, 2))))
    with pytest.raises(ValueError, match="edited.safetensors: config.data_facts must hold"):
        input_spec(with_meta(tmp_path, nnx.models.MLP((784, 2)),
                             config={"data_facts": {"shape": [28, 28]}}))
    assert isinstance(ck, Checkpoint)
