"""The datasets nnx can download: their files, pinned by SHA-256, and where to get them.

Every hash below is of the file as its publishers serve it; a download that does
not match is refused. The SHA-256 values and sizes were taken from several
independent open-source projects that verify downloads of these exact files (among
them torch.rb's dataset resources, a Rust MNIST crate, and reproducibility records
that pin the Toronto CIFAR-10 archive), which all agree; they could not be checked
against the live files from the machine this was written on (it has no network).

- MNIST (LeCun, Cortes, Burges; CC BY-SA 3.0): the four ``.gz`` files of
  http://yann.lecun.com/exdb/mnist/, mirrored byte for byte by PyTorch
  (``ossci-datasets`` on S3) and TensorFlow (``cvdf-datasets`` on Google Cloud
  Storage); 9,912,422 / 28,881 / 1,648,877 / 4,542 bytes.
- Fashion-MNIST (Xiao, Rasul, Vollgraf, Zalando Research; MIT): the four ``.gz``
  files of https://github.com/zalandoresearch/fashion-mnist (``data/fashion/``),
  also on Zalando's S3 bucket; 26,421,880 / 29,515 / 4,422,102 / 5,148 bytes
  (MD5s in Zalando's README).
- CIFAR-10 (Krizhevsky, 2009): the binary version ``cifar-10-binary.tar.gz`` of
  https://www.cs.toronto.edu/~kriz/cifar.html, 170,052,171 bytes (MD5
  c32a1d4ab5d03f1284b67883e8d87530 on that page).

Mirrors are tried in the order listed; tests point ``mirrors`` at a local server.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its name, SHA-256 and size as published."""

    name: str
    sha256: str
    size: int


@dataclass
class DatasetSpec:
    """A downloadable dataset: ``files`` fetched from the first ``mirrors`` base URL that
    serves each of them; ``kind`` is the local format (``"idx"`` or ``"cifar10"``)."""

    name: str
    title: str
    kind: str
    files: tuple[RemoteFile, ...]
    mirrors: list[str] = field(default_factory=list)
    classes: tuple[str, ...] = ()
    homepage: str = ""
    licence: str = ""


_IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
              "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

REGISTRY: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist", title="MNIST", kind="idx",
        files=tuple(RemoteFile(n, h, s) for n, h, s in zip(_IDX_NAMES, (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ), (9_912_422, 28_881, 1_648_877, 4_542))),
        mirrors=["https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/",
                 "http://yann.lecun.com/exdb/mnist/"],
        classes=tuple(str(d) for d in range(10)),
        homepage="http://yann.lecun.com/exdb/mnist/", licence="CC BY-SA 3.0"),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist", title="Fashion-MNIST", kind="idx",
        files=tuple(RemoteFile(n, h, s) for n, h, s in zip(_IDX_NAMES, (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        ), (26_421_880, 29_515, 4_422_102, 5_148))),
        mirrors=["https://fashion-mnist.s3.eu-central-1.amazonaws.com/",
                 "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/"
                 "fashion/",
                 "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot"),
        homepage="https://github.com/zalandoresearch/fashion-mnist", licence="MIT"),
    "cifar10": DatasetSpec(
        name="cifar10", title="CIFAR-10", kind="cifar10",
        files=(RemoteFile("cifar-10-binary.tar.gz",
                          "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
                          170_052_171),),
        mirrors=["https://www.cs.toronto.edu/~kriz/", "http://www.cs.toronto.edu/~kriz/"],
        classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html", licence="see the homepage"),
}

__all__ = ["REGISTRY", "DatasetSpec", "RemoteFile"]
