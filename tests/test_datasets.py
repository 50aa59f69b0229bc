"""nnx.datasets: downloads (from a local HTTP server, never the internet), the cache, and
local folders of MNIST-format IDX files and CIFAR-10 binary batches."""

from __future__ import annotations

import hashlib
import http.server
import io
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

import nnx.datasets as D
from nnx.data import load_mnist
from nnx.data.cifar import RECORD, read_cifar10
from nnx.data.idx import write_idx
from nnx.datasets.registry import DatasetSpec, RemoteFile

pooch = pytest.importorskip("pooch", reason="pooch not installed (pip install 'nnx-array[datasets]')")

IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
       "t10k-labels-idx1-ubyte")


def mnist_arrays(n_train=120, n_test=40, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_train),
            rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test))


def write_mnist(folder: Path, arrays, names=IDX, suffix=".gz"):
    folder.mkdir(parents=True, exist_ok=True)
    for name, a in zip(names, arrays):
        write_idx(folder / f"{name}{suffix}", a.astype(np.uint8))
    return folder


# -- a local HTTP server --------------------------------------------------------------------
class Server:
    """Serves files from ``root``; ``/cut/NAME`` announces the full length and sends half,
    ``/missing/NAME`` is a 404. Every request path is recorded."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - the stdlib's name
                server.requests.append(self.path)
                kind, _, name = self.path.strip("/").partition("/")
                path = server.root / name
                if kind == "missing" or not path.is_file():
                    self.send_error(404)
                    return
                data = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if kind == "cut" else data)
                self.wfile.flush()
                if kind == "cut":
                    self.close_connection = True

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A server holding a small MNIST, the registry's 'mnist' pointed at it, and the cache
    in a temp folder ($NNX_DATA)."""
    arrays = mnist_arrays()
    files = write_mnist(tmp_path / "www", arrays)
    server = Server(files)
    remote = tuple(RemoteFile(f"{n}.gz", hashlib.sha256((files / f"{n}.gz").read_bytes())
                              .hexdigest(), (files / f"{n}.gz").stat().st_size) for n in IDX)
    spec = DatasetSpec("mnist", "MNIST", "idx", remote, [f"{server.url}/ok/"],
                       classes=tuple(str(d) for d in range(10)), homepage="http://example")
    monkeypatch.setitem(D.REGISTRY, "mnist", spec)
    monkeypatch.setenv("NNX_DATA", str(tmp_path / "cache"))
    yield server, spec, arrays, tmp_path / "cache" / "mnist"
    server.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"  # nothing listens there any more


def cached_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_then_cache_hit_without_a_second_request(served):
    server, spec, arrays, folder = served
    ds = D.load("mnist", progress=False)
    np.testing.assert_array_equal(ds.train_images, arrays[0])
    np.testing.assert_array_equal(ds.test_labels, arrays[3])
    assert ds.classes == tuple(str(d) for d in range(10)) and ds.shape == (1, 28, 28)
    assert cached_names(folder) == sorted(f"{n}.gz" for n in IDX)
    assert len(server.requests) == 4
    again = D.load("mnist", progress=False)
    assert len(server.requests) == 4  # served from the cache
    np.testing.assert_array_equal(again.train_labels, ds.train_labels)
    assert D.load("mnist", download=False).train_images.shape == (120, 28, 28)


def test_mirrors_are_tried_in_order(served):
    server, spec, arrays, folder = served
    spec.mirrors[:] = [closed_port_url(), f"{server.url}/missing/", f"{server.url}/ok/"]
    ds = D.load("mnist", progress=False)
    np.testing.assert_array_equal(ds.train_images, arrays[0])
    assert [r.split("/")[1] for r in server.requests] == ["missing", "ok"] * 4


def test_a_hash_mismatch_keeps_nothing_and_names_both_hashes(served):
    server, spec, arrays, folder = served
    good = spec.files[0]
    bad = RemoteFile(good.name, "0" * 64, good.size)
    spec.files = (bad, *spec.files[1:])
    with pytest.raises(D.DownloadError) as info:
        D.load("mnist", progress=False)
    msg = str(info.value)
    assert good.name in msg and "0" * 64 in msg and good.sha256 in msg and "\n" not in msg
    assert good.name not in cached_names(folder)
    assert not [n for n in cached_names(folder) if n.endswith(".part")]


def test_no_network_says_which_files_to_place_where(served):
    server, spec, arrays, folder = served
    spec.mirrors[:] = [closed_port_url(), closed_port_url()]
    with pytest.raises(D.DownloadError) as info:
        D.load("mnist", progress=False)
    msg = str(info.value)
    assert "\n" not in msg and str(folder) in msg and "--data DIR" in msg
    for name in IDX:
        assert f"{name}.gz" in msg
    assert cached_names(folder) == []


def test_a_transfer_cut_short_keeps_nothing(served):
    server, spec, arrays, folder = served
    spec.mirrors[:] = [f"{server.url}/cut/"]
    with pytest.raises(D.DownloadError):
        D.load("mnist", progress=False)
    assert cached_names(folder) == []


def test_a_corrupted_cached_file_is_fetched_again(served):
    server, spec, arrays, folder = served
    D.load("mnist", progress=False)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    ds = D.load("mnist", progress=False)
    np.testing.assert_array_equal(ds.train_labels, arrays[1])
    assert len(server.requests) == 5


def test_without_pooch_the_message_says_how_to_install_it(served, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pooch", None)
    with pytest.raises(D.DownloadError, match=r"pip install 'nnx-array\[datasets\]'"):
        D.load("mnist")


def test_download_false_does_not_download(served):
    server, *_ = served
    with pytest.raises(D.DownloadError, match="download=False"):
        D.load("mnist", download=False)
    assert server.requests == []


def test_cache_folder_follows_nnx_data(monkeypatch, tmp_path):
    monkeypatch.setenv("NNX_DATA", str(tmp_path / "x"))
    assert D.cache_dir() == tmp_path / "x"
    monkeypatch.delenv("NNX_DATA")
    assert "nnx" in str(D.cache_dir())


def test_unknown_names_and_a_root_for_the_sample():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; known: sample, mnist"):
        D.load("imagenet")
    with pytest.raises(ValueError, match="bundled sample"):
        D.load("sample", root="somewhere")


# -- local IDX folders --------------------------------------------------------------------------
@pytest.mark.parametrize("dotted", [False, True])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_folders_under_both_namings_raw_or_gzipped(tmp_path, dotted, suffix):
    arrays = mnist_arrays()
    names = [n.replace("-idx", ".idx", 1) for n in IDX] if dotted else IDX
    folder = write_mnist(tmp_path / "m", arrays, names, suffix)
    ds = D.load("fashion-mnist", root=folder)
    for got, want in zip((ds.train_images, ds.train_labels, ds.test_images, ds.test_labels),
                         arrays):
        np.testing.assert_array_equal(got, want)
    assert ds.classes[0] == "T-shirt/top"
    x = arrays[0].astype(np.float64) / 255
    assert ds.mean == pytest.approx((x.mean(),), rel=1e-12)
    assert ds.std == pytest.approx((x.std(),), rel=1e-12)


def test_a_file_under_two_names_is_refused(tmp_path):
    folder = write_mnist(tmp_path / "m", mnist_arrays())
    write_idx(folder / "train-images.idx3-ubyte", mnist_arrays()[0])
    with pytest.raises(ValueError, match="both train-images-idx3-ubyte.gz and train-images.idx3-ubyte exist"):
        load_mnist(folder)


# -- CIFAR-10 binary ----------------------------------------------------------------------------
def cifar_records(n, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    labels = rng.integers(0, 10, n)
    rows = np.concatenate([labels.astype(np.uint8)[:, None], images.reshape(n, -1)], axis=1)
    return images, labels, rows.tobytes()


def write_cifar(folder: Path, per_batch=6, n_test=5):
    """The six binary batches in ``folder``; returns (train images, labels, test images, labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for i in range(1, 6):
        im, lab, raw = cifar_records(per_batch, i)
        (folder / f"data_batch_{i}.bin").write_bytes(raw)
        parts.append((im, lab))
    ti, tl, raw = cifar_records(n_test, 99)
    (folder / "test_batch.bin").write_bytes(raw)
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), ti, tl)


def write_tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def check_cifar(got, want):
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_cifar_binary_folder_direct_nested_and_archived(tmp_path):
    want = write_cifar(tmp_path / "flat")
    check_cifar(read_cifar10(tmp_path / "flat"), want)
    nested = tmp_path / "nested" / "cifar-10-batches-bin"
    write_cifar(nested)
    check_cifar(read_cifar10(tmp_path / "nested"), want)
    files = {f"cifar-10-batches-bin/{p.name}": p.read_bytes() for p in nested.iterdir()}
    archive = write_tar(tmp_path / "cifar-10-binary.tar.gz", files)
    check_cifar(read_cifar10(archive), want)
    (tmp_path / "a").mkdir()
    archive.rename(tmp_path / "a" / "cifar-10-binary.tar.gz")
    check_cifar(read_cifar10(tmp_path / "a"), want)
    ds = D.load("cifar10", root=tmp_path / "flat")
    assert ds.shape == (3, 32, 32) and ds.classes[0] == "airplane"
    x = want[0].astype(np.float64) / 255
    assert ds.mean == pytest.approx(tuple(x.mean(axis=(0, 2, 3))), rel=1e-12)
    assert ds.std == pytest.approx(tuple(x.std(axis=(0, 2, 3))), rel=1e-12)


def test_cifar_pixels_are_red_then_green_then_blue_row_by_row(tmp_path):
    record = bytes([7]) + bytes(range(256)) * 12
    folder = tmp_path / "c"
    folder.mkdir()
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        (folder / name).write_bytes(record)
    images, labels, _, _ = read_cifar10(folder)
    assert labels.tolist() == [7] * 5
    flat = np.frombuffer(record[1:], np.uint8)
    np.testing.assert_array_equal(images[0, 1, 0, :], flat[1024:1056])  # green, first row
    np.testing.assert_array_equal(images[0, 2, 31, :], flat[3072 - 32:])  # blue, last row


@pytest.mark.parametrize("case, problem", [
    ("truncated", "not a whole number of 3,073-byte"),
    ("label", "label 12, outside 0..9"),
    ("empty", "empty file"),
    ("missing", "no such file"),
])
def test_bad_cifar_files_name_the_file_and_the_problem(tmp_path, case, problem):
    folder = tmp_path / "c"
    write_cifar(folder)
    target = folder / "data_batch_3.bin"
    if case == "truncated":
        target.write_bytes(target.read_bytes()[:-10])
    elif case == "label":
        raw = bytearray(target.read_bytes())
        raw[RECORD] = 12  # the second record's label
        target.write_bytes(bytes(raw))
    elif case == "empty":
        target.write_bytes(b"")
    else:
        target.unlink()
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        read_cifar10(folder)
    assert "data_batch_3.bin" in str(info.value) and problem in str(info.value)


def test_the_pickled_python_version_is_refused(tmp_path):
    py = tmp_path / "py"
    py.mkdir()
    (py / "data_batch_1").write_bytes(b"\x80\x04not unpickled")
    with pytest.raises(ValueError, match="never unpickles.*binary version"):
        read_cifar10(py)
    archive = write_tar(tmp_path / "x.tar.gz", {"cifar-10-batches-py/data_batch_1": b"\x80\x04"})
    with pytest.raises(ValueError, match="never unpickles"):
        read_cifar10(archive)
    write_tar(tmp_path / "cifar-10-python.tar.gz", {"a": b""})
    with pytest.raises(ValueError, match="never unpickles"):
        read_cifar10(tmp_path / "cifar-10-python.tar.gz")


def test_a_broken_archive_is_one_clear_error(tmp_path):
    bad = tmp_path / "cifar-10-binary.tar.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00broken")
    with pytest.raises(ValueError, match="not a readable .tar.gz"):
        read_cifar10(bad)
