"""nnx.checkpoint: the safetensors reader/writer, atomic writes, save/load/restore across backends."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

import nnx
import nnx.testing as nt
from nnx import backends as B
from nnx.checkpoint import Checkpoint, load_file, save_file
from nnx.lr_scheduler import MultiStepLR, StepLR
from nnx.models import MLP
from nnx.optim import SGD, MomentGD


def sample_tensors(rng) -> dict[str, np.ndarray]:
    return {
        "w": rng.standard_normal((3, 4)).astype(np.float32),
        "b64": rng.standard_normal(5),
        "i": rng.integers(-9, 9, size=(2, 2, 2)).astype(np.int64),
        "u8": rng.integers(0, 255, size=7).astype(np.uint8),
        "flag": np.array([True, False, True]),
        "half": rng.standard_normal(3).astype(np.float16),
        "scalar": np.array(2.5, np.float32),
        "empty": np.zeros((0, 3), np.float32),
    }


def assert_same_tensors(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v, err_msg=k)


# ---------------------------------------------------------------------------
# the file format
# ---------------------------------------------------------------------------
def test_round_trip(tmp_path, rng):
    t = sample_tensors(rng)
    save_file(tmp_path / "a.safetensors", t, {"k": "v", "ü": "ß"})
    got, meta = load_file(tmp_path / "a.safetensors")
    assert_same_tensors(got, t)
    assert meta == {"k": "v", "ü": "ß"}
    got["w"][0, 0] = 7.0  # loaded arrays are writable copies


def test_layout_by_hand(tmp_path):
    """Parse our file with struct/json only: the spec's layout, aligned, contiguous. (The
    tensors' order in the data is the safetensors library's choice: by alignment, then
    name; nnx's own encoder of 0.1 wrote them in insertion order.)"""
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    c = np.array([1, 2], dtype=np.int64)
    save_file(tmp_path / "x", {"a": a, "c": c}, {"m": "1"})
    raw = (tmp_path / "x").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0
    header = json.loads(raw[8:8 + n])
    assert header["__metadata__"] == {"m": "1"}
    assert sorted(header) == ["__metadata__", "a", "c"]
    body = raw[8 + n:]
    assert len(body) == 40
    spans = []
    for name, code, want in (("a", "F32", a.astype("<f4")), ("c", "I64", c.astype("<i8"))):
        entry = header[name]
        assert entry["dtype"] == code and entry["shape"] == list(want.shape), entry
        begin, end = entry["data_offsets"]
        assert body[begin:end] == want.tobytes(), name
        spans.append((begin, end))
    spans.sort()
    assert spans[0][0] == 0 and spans[0][1] == spans[1][0] and spans[1][1] == 40  # contiguous


def test_written_by_the_safetensors_package(tmp_path, rng, monkeypatch):
    """The bytes on disk are what safetensors.numpy.save makes of the same tensors; reading
    goes through safetensors.deserialize (its errors become one line naming the file)."""
    import safetensors
    import safetensors.numpy as stn

    t = sample_tensors(rng)
    save_file(tmp_path / "a.safetensors", t, {"k": "v"})
    assert (tmp_path / "a.safetensors").read_bytes() == stn.save(t, metadata={"k": "v"})
    save_file(tmp_path / "b.safetensors", {"w": t["w"]})
    assert (tmp_path / "b.safetensors").read_bytes() == stn.save({"w": t["w"]})

    calls = []
    real = safetensors.deserialize

    def spy(data):
        calls.append(len(data))
        return real(data)

    monkeypatch.setattr(safetensors, "deserialize", spy)
    got, _ = load_file(tmp_path / "a.safetensors")
    assert calls == [(tmp_path / "a.safetensors").stat().st_size]
    assert_same_tensors(got, t)

    def refuse(data):
        raise safetensors.SafetensorError("Error while deserializing header: some new rule\nmore")

    monkeypatch.setattr(safetensors, "deserialize", refuse)
    with pytest.raises(ValueError) as info:
        load_file(tmp_path / "a.safetensors")
    msg = str(info.value)
    assert "\n" not in msg and str(tmp_path / "a.safetensors") in msg and "some new rule" in msg


def test_without_safetensors_the_error_says_how_to_install(tmp_path, monkeypatch):
    import sys

    save_file(tmp_path / "a.safetensors", {"w": np.zeros(2, np.float32)})
    monkeypatch.setitem(sys.modules, "safetensors", None)
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    with pytest.raises(ImportError, match="pip install safetensors"):
        save_file(tmp_path / "b.safetensors", {"w": np.zeros(2, np.float32)})
    with pytest.raises(ImportError, match="pip install safetensors"):
        load_file(tmp_path / "a.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors"]


def test_big_endian_input_is_written_little_endian(tmp_path):
    a = np.arange(4, dtype=">f4")
    save_file(tmp_path / "x", {"a": a})
    got, _ = load_file(tmp_path / "x")
    np.testing.assert_array_equal(got["a"], a)
    assert (tmp_path / "x").read_bytes()[-16:] == np.arange(4, dtype="<f4").tobytes()


def test_readable_by_safetensors(tmp_path, rng):
    st = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open

    t = sample_tensors(rng)
    save_file(tmp_path / "ours.safetensors", t, {"nnx": '{"format": 1}'})
    assert_same_tensors(st.load_file(str(tmp_path / "ours.safetensors")), t)
    with safe_open(str(tmp_path / "ours.safetensors"), framework="np") as f:
        assert f.metadata() == {"nnx": '{"format": 1}'}


def test_reads_safetensors_files(tmp_path, rng):
    st = pytest.importorskip("safetensors.numpy")
    t = sample_tensors(rng)
    st.save_file(t, str(tmp_path / "theirs.safetensors"), metadata={"who": "hf"})
    got, meta = load_file(tmp_path / "theirs.safetensors")
    assert_same_tensors(got, t)
    assert meta == {"who": "hf"}


def test_reads_torch_safetensors_file(tmp_path):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    w = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    st.save_file({"layer.weight": w, "step": torch.tensor([3], dtype=torch.int32)},
                 str(tmp_path / "t.safetensors"))
    got, meta = load_file(tmp_path / "t.safetensors")
    np.testing.assert_array_equal(got["layer.weight"], w.numpy())
    assert got["step"].dtype == np.int32 and meta == {}


def test_rejects_unstorable(tmp_path):
    with pytest.raises(ValueError, match="'o'.*dtype object"):
        save_file(tmp_path / "x", {"o": np.array([object()])})
    with pytest.raises(ValueError, match="complex"):
        save_file(tmp_path / "x", {"c": np.zeros(2, np.complex64)})
    with pytest.raises(ValueError, match="metadata"):
        save_file(tmp_path / "x", {}, {"k": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="__metadata__"):
        save_file(tmp_path / "x", {"__metadata__": np.zeros(1)})
    assert list(tmp_path.iterdir()) == []


def good_file(tmp_path) -> tuple[bytes, int]:
    save_file(tmp_path / "good", {"a": np.arange(4, dtype=np.float32),
                                  "b": np.ones(2, np.float64)}, {"k": "v"})
    raw = (tmp_path / "good").read_bytes()
    return raw, struct.unpack("<Q", raw[:8])[0]


def with_header(header: dict | str, body: bytes) -> bytes:
    text = (header if isinstance(header, str) else json.dumps(header)).encode()
    return struct.pack("<Q", len(text)) + text + body


def check_rejected(path, data: bytes, pattern: str) -> None:
    path.write_bytes(data)
    with pytest.raises(ValueError, match=pattern) as info:
        load_file(path)
    assert str(path) in str(info.value)


def test_rejects_pickle_npz_and_others(tmp_path):
    p = tmp_path / "model.safetensors"
    check_rejected(p, pickle.dumps({"w": [1, 2, 3]}, protocol=2), "pickle")
    check_rejected(p, pickle.dumps({"w": [1, 2, 3]}), "pickle")
    np.savez(tmp_path / "w.npz", w=np.zeros(3))
    check_rejected(p, (tmp_path / "w.npz").read_bytes(), "zip archive.*npz")
    np.save(tmp_path / "w.npy", np.zeros(3))
    check_rejected(p, (tmp_path / "w.npy").read_bytes(), r"\.npy")
    check_rejected(p, b"", "truncated")
    check_rejected(p, b"hello world, not a checkpoint", "too large|truncated|header")


def test_rejects_torch_save_without_unpickling(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.zeros(3)}, tmp_path / "t.pt")
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    check_rejected(tmp_path / "t.pt", (tmp_path / "t.pt").read_bytes(), "zip archive")


def test_rejects_truncated(tmp_path):
    raw, n = good_file(tmp_path)
    p = tmp_path / "bad"
    check_rejected(p, raw[:5], "truncated")
    check_rejected(p, raw[: 8 + n // 2], r"truncated: header length \d+ but only")
    check_rejected(p, raw[:-1], r"truncated: the header describes 32 bytes.*holds 31")
    check_rejected(p, raw + b"\x00", "1 unexpected bytes after")


def test_rejects_corrupt_headers(tmp_path):
    p = tmp_path / "bad"
    body = np.arange(4, dtype="<f4").tobytes()
    ok = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
    check_rejected(p, struct.pack("<Q", 2**40) + b"{}", "implausibly large")
    check_rejected(p, with_header('{"a": ', body), "not valid JSON")
    check_rejected(p, with_header("[1, 2]", body), r"start with a JSON object|JSON list")
    check_rejected(p, struct.pack("<Q", 3) + b"{\xff}" + body, "not UTF-8")
    check_rejected(p, with_header({"a": {**ok["a"], "dtype": "X9"}}, body), "unknown dtype 'X9'")
    check_rejected(p, with_header({"a": {**ok["a"], "dtype": "BF16"}}, body[:8]),
                   "BF16 has no NumPy")
    check_rejected(p, with_header({"a": {**ok["a"], "shape": [5]}}, body), "needs 20 bytes")
    check_rejected(p, with_header({"a": {**ok["a"], "shape": [-4]}}, body), "non-negative")
    check_rejected(p, with_header({"a": {**ok["a"], "data_offsets": [4, 20]}}, body + body[:4]),
                   "gap at 0")
    check_rejected(p, with_header({"a": {**ok["a"], "data_offsets": [16, 0]}}, body),
                   "begin <= end")
    two = {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
           "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}
    check_rejected(p, with_header(two, body), "overlaps")
    check_rejected(p, with_header({**ok, "__metadata__": {"k": 1}}, body), "str -> str")
    check_rejected(p, with_header({"a": {**ok["a"], "extra": 1}}, body), "exactly dtype")
    dup = '{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "a": {}}'
    check_rejected(p, with_header(dup, body), "duplicate key 'a'")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_file(tmp_path / "nope.safetensors")


# ---------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------
def test_failed_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.safetensors"
    save_file(path, {"a": np.ones(3, np.float32)}, {"v": "old"})
    before = path.read_bytes()

    with pytest.raises(ValueError):  # an array that can't be serialised
        save_file(path, {"a": np.ones(3, np.float32), "o": np.array([None])}, {"v": "new"})
    assert path.read_bytes() == before

    def boom(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        save_file(path, {"a": np.zeros(3, np.float32)}, {"v": "new"})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors"]  # no temp left

    monkeypatch.setattr(os, "fsync", boom)  # fails after the data has been written
    with pytest.raises(OSError, match="disk on fire"):
        save_file(path, {"a": np.zeros(3, np.float32)}, {"v": "new"})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.safetensors"]
    _, meta = load_file(path)
    assert meta == {"v": "old"}

    save_file(path, {"a": np.zeros(3, np.float32)}, {"v": "new"})  # and a good write replaces it
    assert load_file(path)[1] == {"v": "new"}


# ---------------------------------------------------------------------------
# nnx checkpoints
# ---------------------------------------------------------------------------
def tiny_setup(backend=None, seed=0, optimizer="sgd"):
    nnx.manual_seed(seed)
    model = MLP((6, 8, 3), backend=backend)
    if optimizer == "sgd":
        opt = SGD(model, lr=0.1, momentum=0.9, weight_decay=1e-3)
    else:
        opt = MomentGD(model, lr=0.1, mu=0.9, weight_decay=1e-3)
    sched = MultiStepLR(opt, milestones=[2, 4], gamma=0.5)
    return model, opt, sched


def batches(n_steps: int, seed: int = 7):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((5, 6)).astype(np.float32), rng.integers(0, 3, 5))
            for _ in range(n_steps)]


def train(model, opt, sched, data, backend) -> None:
    loss = nnx.CrossEntropyLoss()
    for x, y in data:
        xb, yb = nnx.asarray(x, backend), nnx.asarray(y, backend)
        loss(model(xb), yb)
        model.backward(loss.backward())
        opt.step()
        sched.step()  # per-iteration schedule: the lr changes across the stop


def host_params(model) -> dict[str, np.ndarray]:
    return {k: nnx.to_numpy(v).copy() for k, v in model.state_dict().items()}


def test_save_load_contents(tmp_path):
    model, opt, sched = tiny_setup()
    train(model, opt, sched, batches(3), "numpy")
    rng_before = B.get_rng_state()
    nnx.save(tmp_path / "c.safetensors", model, opt, sched, epoch=3,
             history={"epochs": [{"val_acc": np.float64(0.5)}]}, best=np.float32(0.25))
    ck = nnx.load(tmp_path / "c.safetensors")
    assert isinstance(ck, Checkpoint)
    m = ck.meta
    assert m["format"] == 1 and m["nnx_version"] == nnx.__version__
    assert m["model_config"] == model.config and m["dtype"] == "float32"
    assert m["backend"] == "numpy" and m["epoch"] == 3 and m["best"] == 0.25
    assert m["history"] == {"epochs": [{"val_acc": 0.5}]}
    assert m["rng"] == rng_before
    assert m["scheduler"] == sched.state_dict()
    opt_sd = opt.state_dict()
    assert m["optimizer"] == {k: v for k, v in opt_sd.items() if k != "buffers"}
    assert sorted(ck.tensors) == sorted([f"model.{k}" for k in model.state_dict()] +
                                        [f"optimizer.{i}" for i in opt_sd["buffers"]])
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(ck.tensors[f"model.{k}"], v)
    for i, v in opt_sd["buffers"].items():
        np.testing.assert_array_equal(ck.tensors[f"optimizer.{i}"], v)
    # readable by the safetensors package, metadata included
    st = pytest.importorskip("safetensors.numpy")
    theirs = st.load_file(str(tmp_path / "c.safetensors"))
    np.testing.assert_array_equal(theirs["model.1.weight"], model.state_dict()["1.weight"])


def test_save_rejects_reserved_and_unserialisable_info(tmp_path):
    model, opt, _ = tiny_setup()
    with pytest.raises(ValueError, match="reserved"):
        nnx.save(tmp_path / "c", model, rng=1)
    with pytest.raises(TypeError, match="not JSON serialisable"):
        nnx.save(tmp_path / "c", model, thing=object())
    assert not (tmp_path / "c").exists()


def test_load_rejects_foreign_safetensors(tmp_path):
    save_file(tmp_path / "plain", {"w": np.zeros(2, np.float32)})
    with pytest.raises(ValueError, match="not an nnx checkpoint"):
        nnx.load(tmp_path / "plain")
    save_file(tmp_path / "future", {}, {"nnx": json.dumps({"format": 99})})
    with pytest.raises(ValueError, match="format 99"):
        nnx.load(tmp_path / "future")


def test_round_trip_across_backends(tmp_path, backend):
    """numpy -> backend -> numpy: identical arrays; the file records where it was saved."""
    model, opt, sched = tiny_setup(backend="numpy")
    train(model, opt, sched, batches(2), "numpy")
    ref = host_params(model)
    nnx.save(tmp_path / "np.safetensors", model, opt, sched)

    rng_before = B.get_rng_state()
    loaded = nnx.load_model(tmp_path / "np.safetensors", backend=backend)
    assert B.get_rng_state() == rng_before  # rebuilding does not consume the seeded stream
    assert type(loaded) is MLP and loaded.config == model.config
    for k, v in loaded.state_dict().items():
        assert backend.same_place(v), k
        assert nt.dtype_of(v) == "float32"
        np.testing.assert_array_equal(nnx.to_numpy(v), ref[k], err_msg=k)

    nnx.save(tmp_path / "other.safetensors", loaded)
    ck = nnx.load(tmp_path / "other.safetensors")
    assert ck.meta["backend"] == backend.name and ck.meta["optimizer"] is None
    back = nnx.load_model(tmp_path / "other.safetensors", backend="numpy")
    for k, v in back.state_dict().items():
        assert isinstance(v, np.ndarray)
        np.testing.assert_array_equal(v, ref[k], err_msg=k)
    # and the same logits on both
    x = batches(1, seed=11)[0][0]
    nt.assert_close(loaded(nnx.asarray(x, backend)), back(x), "float32", "logits after reload")


@pytest.mark.parametrize("optimizer", ["sgd", "momentgd"])
def test_resume_equals_uninterrupted(tmp_path, backend, optimizer):
    """6 steps straight == 3 steps, save, restore into a fresh setup, 3 more (same backend)."""
    data = batches(6)
    model, opt, sched = tiny_setup(backend, optimizer=optimizer)
    train(model, opt, sched, data, backend)
    want = host_params(model)

    model, opt, sched = tiny_setup(backend, optimizer=optimizer)
    train(model, opt, sched, data[:3], backend)
    nnx.save(tmp_path / "mid.safetensors", model, opt, sched, epoch=3)
    draws = B.host_generator().random(4)

    model2, opt2, sched2 = tiny_setup(backend, seed=123, optimizer=optimizer)  # other weights
    nnx.load(tmp_path / "mid.safetensors").restore(model2, opt2, sched2)
    np.testing.assert_array_equal(B.host_generator().random(4), draws)  # RNG state restored
    assert opt2.lr == opt.lr and sched2.last_epoch == sched.last_epoch == 3
    train(model2, opt2, sched2, data[3:], backend)
    for k, v in host_params(model2).items():
        np.testing.assert_array_equal(v, want[k], err_msg=k)

    # without the momentum buffers the continuation differs: the test can tell
    model3, opt3, sched3 = tiny_setup(backend, seed=123, optimizer=optimizer)
    ck = nnx.load(tmp_path / "mid.safetensors")
    ck.restore(model3, scheduler=sched3)
    train(model3, opt3, sched3, data[3:], backend)
    assert not np.allclose(host_params(model3)["1.weight"], want["1.weight"], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("target", ["torch", "array_api_strict"])
def test_resume_on_another_backend(tmp_path, target):
    reason = nt.backend_status(target)
    if reason is not None:
        pytest.skip(reason)
    data = batches(6)
    model, opt, sched = tiny_setup("numpy")
    train(model, opt, sched, data, "numpy")
    want = host_params(model)

    model, opt, sched = tiny_setup("numpy")
    train(model, opt, sched, data[:3], "numpy")
    nnx.save(tmp_path / "mid.safetensors", model, opt, sched)

    be = nt.make_backend(target)
    ck = nnx.load(tmp_path / "mid.safetensors")
    model2 = ck.build_model(be)
    opt2 = SGD(model2, lr=0.1, momentum=0.9, weight_decay=1e-3)
    sched2 = MultiStepLR(opt2, milestones=[2, 4], gamma=0.5)
    ck.restore(model2, opt2, sched2)
    assert all(be.same_place(b) for b in opt2.buffers)
    train(model2, opt2, sched2, data[3:], be)
    for k, v in host_params(model2).items():
        nt.assert_close(v, want[k], "float32", f"{k} resumed on {target}")


def test_restore_checks(tmp_path):
    model, opt, sched = tiny_setup()
    nnx.save(tmp_path / "m.safetensors", model)  # weights only
    ck = nnx.load(tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="no optimizer state"):
        ck.restore(model, opt)
    with pytest.raises(ValueError, match="no scheduler state"):
        ck.restore(model, scheduler=sched)
    nnx.save(tmp_path / "full.safetensors", model, opt, sched)
    ck = nnx.load(tmp_path / "full.safetensors")
    other = MomentGD(model, lr=0.1)
    with pytest.raises(ValueError, match="SGD state, not MomentGD"):
        ck.restore(model, other)
    with pytest.raises(ValueError, match="MultiStepLR state, not StepLR"):
        ck.restore(model, scheduler=StepLR(SGD(model, lr=0.1), 2))
    with pytest.raises(ValueError, match="shape"):
        ck.restore(MLP((6, 9, 3)))
    nnx.save(tmp_path / "noconf.safetensors", nnx.Sequential(nnx.Linear(2, 2)))
    with pytest.raises(ValueError, match="no model_config"):
        nnx.load_model(tmp_path / "noconf.safetensors")


def test_float64_model_round_trip(tmp_path):
    nnx.manual_seed(4)
    model = MLP((4, 3), dtype="float64")
    nnx.save(tmp_path / "f64.safetensors", model)
    back = nnx.load_model(tmp_path / "f64.safetensors", backend="numpy")
    assert back.state_dict()["1.weight"].dtype == np.float64
    np.testing.assert_array_equal(back.state_dict()["1.weight"], model.state_dict()["1.weight"])


def test_restore_with_a_mismatched_scheduler_changes_nothing(tmp_path):
    nnx.manual_seed(0)
    model = nnx.models.MLP((6, 4, 3))
    opt = nnx.optim.SGD(model, lr=0.1, momentum=0.9)
    sched = nnx.lr_scheduler.StepLR(opt, step_size=3)
    nnx.save(tmp_path / "c.safetensors", model, opt, sched)
    nnx.manual_seed(1)
    other = nnx.models.MLP((6, 4, 3))
    before = {k: np.array(nnx.to_numpy(v), copy=True) for k, v in other.state_dict().items()}
    opt2 = nnx.optim.SGD(other, lr=0.1, momentum=0.9)
    sched2 = nnx.lr_scheduler.StepLR(opt2, step_size=5)
    with pytest.raises(ValueError, match="step_size is 5 here but 3 in the checkpoint"):
        nnx.load(tmp_path / "c.safetensors").restore(other, opt2, sched2)
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(nnx.to_numpy(v), before[k])


# ---------------------------------------------------------------------------
# hostile or odd metadata: one-line ValueErrors naming the file and the key
# ---------------------------------------------------------------------------
DELETE = object()


def check_one_line_error(exc_info, path, *parts: str) -> None:
    msg = str(exc_info.value)
    assert "\n" not in msg and len(msg) < 400, msg
    assert str(path) in msg, msg
    for part in parts:
        assert part in msg, (part, msg)


def trainer_like_checkpoint(tmp_path) -> tuple[dict[str, np.ndarray], dict]:
    """A checkpoint with everything the Trainer writes: (tensors, parsed nnx metadata)."""
    model, opt, sched = tiny_setup()
    train(model, opt, sched, batches(2), "numpy")
    nnx.save(tmp_path / "good.safetensors", model, opt, sched,
             trainer={"epoch": 1, "step_in_epoch": 0, "global_step": 2, "best_val_acc": 0.5,
                      "best_epoch": 1, "partial": {"loss_sum": 0.0, "correct": 0, "count": 0},
                      "scheduler_interval": "step"},
             history={"epochs": [{"epoch": 1, "val_acc": 0.5}],
                      "steps": [{"epoch": 1, "step": 0, "loss": 1.0, "lr": 0.1}]},
             config={"model": "mlp", "data": None, "seed": 0})
    tensors, metadata = load_file(tmp_path / "good.safetensors")
    return tensors, json.loads(metadata["nnx"])


def with_change(meta: dict, dotted: str, value) -> dict:
    meta = json.loads(json.dumps(meta))  # a deep copy
    *parents, last = dotted.split(".")
    node = meta
    for key in parents:
        node = node[key]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return meta


def test_deeply_nested_json_is_a_value_error_naming_the_file(tmp_path):
    """JSON nested 100k deep raises RecursionError inside json; we say what is wrong."""
    deep = "[" * 100_000 + "]" * 100_000
    p = tmp_path / "deep-meta.safetensors"
    save_file(p, {"model.w": np.zeros(2, np.float32)}, {"nnx": deep})
    with pytest.raises(ValueError) as info:
        nnx.load(p)
    check_one_line_error(info, p, "nested too deeply")
    save_file(p, {"model.w": np.zeros(2, np.float32)}, {"nnx": '{"format": 1, "x": ' + deep + "}"})
    with pytest.raises(ValueError) as info:
        nnx.load(p)
    check_one_line_error(info, p, "nested too deeply")
    p = tmp_path / "deep-header.safetensors"
    p.write_bytes(with_header('{"a": ' + deep + "}", b""))
    with pytest.raises(ValueError) as info:
        load_file(p)
    check_one_line_error(info, p, "nested too deeply")
    with pytest.raises(ValueError) as info:
        nnx.load(p)
    check_one_line_error(info, p, "nested too deeply")


@pytest.mark.parametrize("key,value,expected", [
    ("format", True, "format True is not supported"),
    ("nnx_version", 5, "nnx_version must be a str or null, got 5"),
    ("model_config", "x", "model_config must be an object or null, got 'x'"),
    ("dtype", "int8", "dtype must be 'float32', 'float64' or null, got 'int8'"),
    ("backend", [], "backend must be a str or null"),
    ("optimizer", 5, "optimizer must be an object or null, got 5"),
    ("optimizer.type", 3, "optimizer.type must be a str, got 3"),
    ("optimizer.type", DELETE, "optimizer.type is missing"),
    ("optimizer.hyperparameters", [], "optimizer.hyperparameters must be an object, got []"),
    ("optimizer.hyperparameters.lr", "fast", "optimizer.hyperparameters.lr must be a number"),
    ("optimizer.hyperparameters.momentum", None, "optimizer.hyperparameters.momentum must be"),
    ("optimizer.step_count", -1, "optimizer.step_count must be an int >= 0, got -1"),
    ("optimizer.step_count", "3", "optimizer.step_count must be an int >= 0, got '3'"),
    ("scheduler", "x", "scheduler must be an object or null, got 'x'"),
    ("scheduler.type", None, "scheduler.type must be a str"),
    ("scheduler.last_epoch", "x", "scheduler.last_epoch must be an int >= 0, got 'x'"),
    ("scheduler.last_epoch", 2.5, "scheduler.last_epoch must be an int >= 0, got 2.5"),
    ("scheduler.base_lrs", "x", "scheduler.base_lrs must be a list of numbers, got 'x'"),
    ("scheduler.base_lrs", DELETE, "scheduler.base_lrs is missing"),
    ("rng", 7, "rng must be an object or null, got 7"),
    ("rng.state", 5, "rng.state must be an object of two ints"),
    ("rng.bit_generator", "MT19937", "rng.bit_generator must be 'PCG64'"),
    ("rng.uinteger", -1, "rng.uinteger must be an int in [0, 2**32)"),
    ("trainer", [], "trainer must be an object or null, got []"),
    ("trainer.epoch", "abc", "trainer.epoch must be an int >= 0, got 'abc'"),
    ("trainer.step_in_epoch", -2, "trainer.step_in_epoch must be an int >= 0, got -2"),
    ("trainer.global_step", 1.5, "trainer.global_step must be an int >= 0, got 1.5"),
    ("trainer.best_epoch", "x", "trainer.best_epoch must be an int >= 0 or null, got 'x'"),
    ("trainer.best_val_acc", "high", "trainer.best_val_acc must be a finite number or null"),
    ("trainer.partial", [1], "trainer.partial must be an object or null, got [1]"),
    ("trainer.partial.correct", "x", "trainer.partial.correct must be an int in [0, 2**63), got 'x'"),
    ("trainer.partial.correct", 10**30, "trainer.partial.correct must be an int in [0, 2**63)"),
    ("trainer.partial.loss_sum", float("nan"), "trainer.partial.loss_sum must be a finite number"),
    ("trainer.partial.count", DELETE, "trainer.partial.count is missing"),
    ("trainer.scheduler_interval", 5, "trainer.scheduler_interval must be 'epoch' or 'step'"),
    ("history", [], "history must be an object or null, got []"),
    ("history.epochs", 3, "history.epochs must be a list of objects, got 3"),
    ("history.steps", [1, 2], "history.steps must be a list of objects, got [1, 2]"),
    ("config", [], "config must be an object or null, got []"),
])
def test_load_validates_the_metadata_it_reads(tmp_path, key, value, expected):
    tensors, meta = trainer_like_checkpoint(tmp_path)
    p = tmp_path / "odd.safetensors"
    save_file(p, tensors, {"nnx": json.dumps(with_change(meta, key, value))})
    with pytest.raises(ValueError) as info:
        nnx.load(p)
    check_one_line_error(info, p, expected)


def test_load_accepts_what_nnx_writes_and_nulls(tmp_path):
    tensors, meta = trainer_like_checkpoint(tmp_path)
    assert nnx.load(tmp_path / "good.safetensors").meta == meta
    for key in ("model_config", "dtype", "optimizer", "scheduler", "rng", "trainer", "history",
                "config", "trainer.best_epoch", "trainer.best_val_acc", "trainer.partial"):
        p = tmp_path / "nulls.safetensors"
        save_file(p, tensors, {"nnx": json.dumps(with_change(meta, key, None))})
        nnx.load(p)
    # messages stay short for deep and long values
    p = tmp_path / "long.safetensors"
    deep = json.loads("[" * 500 + "]" * 500)
    save_file(p, tensors, {"nnx": json.dumps(with_change(meta, "trainer.epoch", deep))})
    with pytest.raises(ValueError) as info:
        nnx.load(p)
    check_one_line_error(info, p, "trainer.epoch must be an int >= 0, got [[")
    save_file(p, tensors, {"nnx": json.dumps(with_change(meta, "dtype", "x\n" * 10_000))})
    with pytest.raises(ValueError) as info:
        nnx.load(p)
    check_one_line_error(info, p, "dtype must be")


@pytest.mark.parametrize("key,value,expected", [
    ("optimizer.hyperparameters.momentum", 1.5, "momentum must lie in [0, 1)"),
    ("optimizer.hyperparameters.lr", float("nan"), "lr must be finite"),
    ("optimizer.hyperparameters.nesterov", 1, "nesterov must be True or False"),
    ("scheduler.base_lrs", [float("inf")], "base_lrs[0] must be finite"),
    ("scheduler.base_lrs", [], "base_lrs must be a list of 1 number"),
    ("scheduler.last_epoch", 10**6, "the learning rate overflows"),
])
def test_restore_names_the_file_and_changes_nothing(tmp_path, key, value, expected):
    """Values of the right type that the optimizer or scheduler refuses: the file is named
    and nothing is restored (no half-restored model)."""
    model, opt, sched = tiny_setup()
    sched.gamma = 1e200  # so that a large last_epoch overflows
    nnx.save(tmp_path / "good.safetensors", model, opt, sched)
    tensors, metadata = load_file(tmp_path / "good.safetensors")
    meta = with_change(json.loads(metadata["nnx"]), key, value)
    p = tmp_path / "odd.safetensors"
    save_file(p, tensors, {"nnx": json.dumps(meta)})
    ck = nnx.load(p)
    model2, opt2, sched2 = tiny_setup(seed=5)
    sched2.gamma = 1e200
    before = host_params(model2)
    with pytest.raises(ValueError) as info:
        ck.restore(model2, opt2, sched2)
    check_one_line_error(info, p, expected)
    for k, v in host_params(model2).items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    assert opt2.lr == 0.1 and sched2.last_epoch == 0


@pytest.mark.parametrize("config,expected", [
    ({"name": "NoSuchNet"}, "unknown model 'NoSuchNet'"),
    ({"name": "MLP", "sizes": [6, 3], "colour": "red"}, "colour"),
])
def test_build_model_names_the_file_for_a_bad_model_config(tmp_path, config, expected):
    model, _, _ = tiny_setup()
    nnx.save(tmp_path / "good.safetensors", model)
    tensors, metadata = load_file(tmp_path / "good.safetensors")
    meta = with_change(json.loads(metadata["nnx"]), "model_config", config)
    p = tmp_path / "odd.safetensors"
    save_file(p, tensors, {"nnx": json.dumps(meta)})
    with pytest.raises(ValueError) as info:
        nnx.load_model(p)
    check_one_line_error(info, p, "model_config", expected)


# ---------------------------------------------------------------------------
# a checkpoint written by nnx 0.1.0 (tests/fixtures/make_nnx010_checkpoint.py made it with
# 0.1.0's `nnx train --epochs 1`: LeNet-5, SGD with momentum, MultiStepLR, the Trainer's state)
# ---------------------------------------------------------------------------
FIXTURES = Path(__file__).resolve().parent / "fixtures"
OLD_CHECKPOINT = FIXTURES / "nnx-0.1.0-lenet5.safetensors"


def old_record() -> dict:
    return json.loads((FIXTURES / "nnx-0.1.0-lenet5.json").read_text())


def old_setup(ck: Checkpoint):
    model = ck.build_model("numpy")
    opt = SGD(model, lr=0.05, momentum=0.9, weight_decay=1e-4)  # 0.1.0's defaults
    sched = MultiStepLR(opt, milestones=[5, 8], gamma=0.1)
    return model, opt, sched


def test_nnx_010_checkpoint_loads_restores_and_steps_as_010_did():
    record = old_record()
    ck = nnx.load(OLD_CHECKPOINT)
    m = ck.meta
    assert m["nnx_version"] == "0.1.0" and m["format"] == 1
    assert m["model_config"]["name"] == "LeNet5" and "input_size" not in m["model_config"]
    assert m["optimizer"]["type"] == "SGD" and "param_groups" not in m["optimizer"]  # 0.1's form
    assert m["trainer"]["epoch"] == 1 and m["history"]["epochs"][0]["val_acc"] == 0.644
    ds = nnx.datasets.load("sample")
    assert [int(v) for v in ds.test_labels[:8]] == record["test_labels"]
    x_test = ds.test_images[:8, None].astype(np.float32) / np.float32(255)
    x_train = ds.train_images[:32, None].astype(np.float32) / np.float32(255)
    y_train = ds.train_labels[:32].astype(np.int64)

    model, opt, sched = old_setup(ck)
    model.eval()
    np.testing.assert_allclose(model(x_test), record["logits"], rtol=1e-5, atol=1e-5)

    ck.restore(model, opt, sched)
    assert opt.step_count == 63 and sched.last_epoch == 1 and opt.lr == 0.05
    buffers = opt.state_dict()["buffers"]
    assert sorted(buffers, key=int) == [str(i) for i in range(10)]
    for i, buf in buffers.items():
        np.testing.assert_array_equal(buf, ck.tensors[f"optimizer.{i}"], err_msg=i)

    def one_more_step(model, opt, sched):
        model.train()
        loss = nnx.CrossEntropyLoss()
        loss(model(x_train), y_train)
        model.backward(loss.backward())
        opt.step()
        sched.step()
        model.eval()
        return model(x_test)

    after = one_more_step(model, opt, sched)
    want = record["next_step"]
    assert opt.lr == want["lr_after"] and sched.last_epoch == want["last_epoch_after"]
    np.testing.assert_allclose(after, want["logits_after"], rtol=1e-5, atol=1e-5)
    # without the saved momentum buffers the step lands elsewhere: the comparison can tell
    model2, opt2, sched2 = old_setup(ck)
    ck.restore(model2, scheduler=sched2)
    assert not np.allclose(one_more_step(model2, opt2, sched2), want["logits_after"],
                           rtol=1e-5, atol=1e-5)


def test_nnx_010_checkpoint_resumes_in_the_trainer_and_evaluates():
    from clitools import nnx_cli

    record = old_record()
    ck = nnx.load(OLD_CHECKPOINT)
    model, opt, sched = old_setup(ck)
    trainer = nnx.Trainer(model, opt, scheduler=sched, log=lambda line: None, threads=1)
    trainer.resume(OLD_CHECKPOINT)
    assert trainer.epoch == 1 and trainer.global_step == 63 and trainer.best_epoch == 1
    res = nnx_cli("evaluate", str(OLD_CHECKPOINT), "--backend", "numpy")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert f"accuracy: {record['evaluate']['accuracy']:.4f}" in out, out
    assert f"loss: {record['evaluate']['loss']:.4f}" in out, out


def test_save_in_pytorchs_argument_order_says_which_comes_first(tmp_path):
    model = nnx.Sequential(nnx.Linear(2, 2))
    target = tmp_path / "m.safetensors"
    with pytest.raises(TypeError, match=r"the path comes first, then the model"):
        nnx.save(model, target)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_to_numpy_takes_a_parameter_or_buffer():
    model = nnx.Sequential(nnx.Linear(2, 3), nnx.BatchNorm1d(3))
    np.testing.assert_array_equal(nnx.to_numpy(model[0].weight),
                                  nnx.to_numpy(model[0].weight.data))
    np.testing.assert_array_equal(nnx.to_numpy(model[1].running_var), np.ones(3, np.float32))
