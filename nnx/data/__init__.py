"""Data: MNIST in IDX files or the bundled real sample, and a seeded batch iterator.

    >>> from nnx.data import DataLoader, load_mnist
    >>> mnist = load_mnist()                # bundled: 4,000 train / 1,000 test
    >>> loader = DataLoader(mnist.train_images, mnist.train_labels, batch_size=64)
    >>> for x, y in loader: ...             # x (64, 1, 28, 28) float32 in [0, 1], y (64,) int64

Host-side code: NumPy arrays until a batch is handed to the backend.
"""

from .idx import read_idx, write_idx
from .loader import DataLoader
from .mnist import MNIST, SAMPLE_SPLIT_SEED, load_mnist, load_sample

__all__ = [
    "MNIST",
    "SAMPLE_SPLIT_SEED",
    "DataLoader",
    "load_mnist",
    "load_sample",
    "read_idx",
    "write_idx",
]
