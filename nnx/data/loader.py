"""A seeded, shardable batch iterator over host image arrays.

Shuffling happens on the host with NumPy: epoch ``e`` uses the permutation of
``np.random.default_rng([seed, e])``, so a run resumed at epoch ``e`` (after
``set_epoch(e)``) sees exactly the batches an uninterrupted run would. Each
batch is gathered with one fancy index, converted to the loader's dtype
(float32 by default; the Trainer asks for its model's dtype) once, and moved to
the backend.

Sharding (``world_size`` W > 1, global batch B, local batch b = B / W): the
epoch's permutation is cut into global batches of B; in each, rank r takes the
contiguous slice ``[r·b, (r+1)·b)``. For a last, partial global batch of R
samples (``drop_last=False``) every rank takes c = ⌈R / W⌉ samples: the R
samples are padded to c·W with the first samples of the epoch's permutation
(PyTorch's DistributedSampler rule), and rank r takes ``[r·c, (r+1)·c)``. So
all ranks take the same number of steps with equal batch sizes at every step,
and each sample is seen exactly once per epoch across ranks whenever W divides
N (no padding is needed then). With ``drop_last=True`` the last partial global
batch is dropped on every rank.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import backends as _backends
from ..backend import resolve_backend
from ..backends import Backend
from .transforms import Transform

FLOAT_DTYPES = ("float32", "float64")
#: The last word of the seed of a batch's random transform choices (apart from the
#: permutation's seed ``[seed, epoch]``).
AUGMENT_TAG = 0x617567


def _int_arg(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"DataLoader: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _dtype_arg(dtype: Any) -> str:
    """'float32' or 'float64' from a name or a NumPy dtype or scalar type."""
    try:
        name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    except TypeError:
        name = None
    if name not in FLOAT_DTYPES:
        raise ValueError(f"DataLoader: dtype must be 'float32' or 'float64', got {dtype!r}")
    return name


def _host(name: str, x: Any) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(_backends.to_numpy(x))
    except TypeError:
        raise TypeError(f"DataLoader: {name} must be an array, got {type(x).__name__}") from None


class DataLoader:
    """Batches ``(x, y)`` of ``images`` and ``labels``, shuffled per epoch with a seed.

    Parameters
    ----------
    images : array
        (N, H, W) or (N, C, H, W); uint8 (0..255, scaled to [0, 1]) or floating
        (cast to ``dtype``). Host NumPy data, or an array of any backend (copied
        to the host once).
    labels : array
        (N,) integers, yielded as int64.
    batch_size : int
        Global batch size B; each of the ``world_size`` ranks gets B / world_size
        samples per step (B must be a multiple of ``world_size``).
    shuffle : bool
        Shuffle with the epoch's permutation (otherwise the order 0..N-1).
    seed : int
        Epoch ``e``'s permutation is ``np.random.default_rng([seed, e]).permutation(N)``.
    drop_last : bool
        Drop the last global batch when it has fewer than B samples.
    backend : str, Backend or None
        Where batches go (a name is resolved once, here); None: ``nnx.get_backend()``
        each time iteration starts.
    rank, world_size : int
        This process's shard (see the module docstring for the rule).
    dtype : ``"float32"`` or ``"float64"``
        The dtype of the yielded images (a float64 model needs float64 batches;
        :meth:`batches` may ask for another per call).
    transform : a :mod:`nnx.data.transforms` transform, or None
        Applied to each batch of images on the backend, after the scaling to [0, 1]
        (normalisation, random crops and flips). Its random choices for the batch at
        position ``s`` of epoch ``e`` come from ``np.random.default_rng([seed, e, s,
        AUGMENT_TAG])``, drawn for the whole global batch, of which each rank takes its
        slice.

    Iterating yields ``x`` of ``dtype`` (b, C, H, W) (C = 1 for 3-D ``images``) and
    ``y`` int64 (b,) on the backend. Each ``iter()`` uses :attr:`epoch` and then
    advances it by one, so a plain loop over epochs reshuffles every time;
    ``set_epoch(e)`` picks the epoch explicitly (e.g. when resuming).
    """

    def __init__(self, images: Any, labels: Any, batch_size: int, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False, backend: str | Backend | None = None,
                 rank: int = 0, world_size: int = 1, dtype: str = "float32",
                 transform: Transform | None = None) -> None:
        imgs = _host("images", images)
        labs = _host("labels", labels)
        if imgs.ndim == 3:
            imgs = imgs[:, None, :, :]
        if imgs.ndim != 4:
            raise ValueError(f"DataLoader: images must be (N, H, W) or (N, C, H, W), got shape "
                             f"{imgs.shape}")
        if imgs.dtype != np.uint8:
            if not np.issubdtype(imgs.dtype, np.floating):
                raise ValueError(f"DataLoader: images must be uint8 (0..255) or floating, got "
                                 f"{imgs.dtype}")
        if labs.ndim != 1 or not np.issubdtype(labs.dtype, np.integer):
            raise ValueError(f"DataLoader: labels must be a 1-D integer array, got shape "
                             f"{labs.shape} dtype {labs.dtype}")
        if len(labs) != len(imgs):
            raise ValueError(f"DataLoader: {len(imgs)} images but {len(labs)} labels")
        if len(imgs) == 0:
            raise ValueError("DataLoader: the dataset is empty")
        self.images = imgs
        self.labels = labs.astype(np.int64, copy=False)
        self.batch_size = _int_arg("batch_size", batch_size, 1)
        self.world_size = _int_arg("world_size", world_size, 1)
        self.rank = _int_arg("rank", rank, 0)
        if self.rank >= self.world_size:
            raise ValueError(f"DataLoader: rank {rank} is not below world_size {world_size}")
        if self.batch_size % self.world_size:
            raise ValueError(f"DataLoader: batch_size {batch_size} is not a multiple of "
                             f"world_size {world_size}; each rank needs an equal share")
        self.seed = _int_arg("seed", seed, 0)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.backend = None if backend is None else resolve_backend(backend)
        self.dtype = _dtype_arg(dtype)
        if transform is not None and not isinstance(transform, Transform):
            raise TypeError(f"DataLoader: transform must be an nnx.data.transforms transform, got "
                            f"{type(transform).__name__}")
        self.transform = transform
        self.epoch = 0

    # -- sizes ------------------------------------------------------------
    @property
    def num_samples(self) -> int:
        """N, the number of samples in the (global) dataset."""
        return len(self.images)

    @property
    def local_batch_size(self) -> int:
        """Samples per full step on this rank: batch_size / world_size."""
        return self.batch_size // self.world_size

    def __len__(self) -> int:
        """Steps (batches) per epoch, the same on every rank."""
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    # -- order ------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use epoch ``epoch``'s permutation."""
        self.epoch = _int_arg("epoch", epoch, 0)

    def permutation(self, epoch: int) -> np.ndarray:
        """The global order of the samples in ``epoch``: (N,) int64."""
        n = self.num_samples
        if not self.shuffle:
            return np.arange(n, dtype=np.int64)
        return np.random.default_rng([self.seed, _int_arg("epoch", epoch, 0)]).permutation(n)

    def batch_indices(self, epoch: int) -> list[np.ndarray]:
        """This rank's sample indices for each step of ``epoch`` (len(self) arrays)."""
        perm = self.permutation(epoch)
        big, w, r = self.batch_size, self.world_size, self.rank
        b = big // w
        full = self.num_samples // big
        steps = list(perm[: full * big].reshape(full, w, b)[:, r])
        rest = perm[full * big:]
        if len(rest) and not self.drop_last:
            c = -(-len(rest) // w)
            pad = np.take(perm, np.arange(c * w - len(rest)), mode="wrap")
            steps.append(np.concatenate([rest, pad])[r * c:(r + 1) * c])
        return steps

    # -- iteration ----------------------------------------------------------
    def _images(self, idx: np.ndarray, dtype: str) -> np.ndarray:
        """Host images (scaled to [0, 1] when uint8) in ``dtype``."""
        x = self.images[idx]  # one gather; a new array
        if x.dtype == np.uint8:
            x = x.astype(dtype)
            np.divide(x, x.dtype.type(255), out=x)
        else:
            x = x.astype(dtype, copy=False)
        return x

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        epoch = self.epoch
        self.epoch = epoch + 1
        steps = self.batch_indices(epoch)
        be = resolve_backend(self.backend)
        return self._generate(steps, be, self.dtype, epoch, 0)

    def iter_from(self, epoch: int, start: int = 0, backend: str | Backend | None = None,
                  dtype: str | None = None) -> Iterator[tuple[Any, Any]]:
        """Epoch ``epoch``'s batches from batch ``start`` on (resuming inside an epoch
        without converting the batches already done), on ``backend`` and in ``dtype`` if
        given; the next plain iteration is epoch ``epoch + 1``."""
        self.epoch = epoch + 1
        return self.batches(epoch, start, backend, dtype)

    def batches(self, epoch: int, start: int = 0, backend: str | Backend | None = None,
                dtype: str | None = None) -> Iterator[tuple[Any, Any]]:
        """Epoch ``epoch``'s batches from batch ``start`` on, on ``backend`` (default: the
        loader's, else the active one) and in ``dtype`` (default: the loader's), leaving
        the loader's epoch counter alone."""
        steps = self.batch_indices(epoch)[start:]
        dtype = self.dtype if dtype is None else _dtype_arg(dtype)
        return self._generate(steps, resolve_backend(backend or self.backend), dtype, epoch,
                              start)

    def _generate(self, steps: list[np.ndarray], be: Backend, dtype: str, epoch: int,
                  start: int) -> Iterator[tuple[Any, Any]]:
        on_device = not be.is_host and self.images.dtype == np.uint8
        for step, idx in enumerate(steps, start):
            with be.activate():  # CuPy: convert on the batch's GPU (not across the yield)
                if on_device:  # move the uint8 pixels (4x fewer bytes), scale on the device
                    x = be.xp.astype(be.from_numpy(self.images[idx]), getattr(be.xp, dtype))
                    x /= 255
                else:
                    x = be.from_numpy(self._images(idx, dtype))
                if self.transform is not None:
                    x = self.transform.apply(x, self._choices(be, epoch, step, len(idx)))
                y = be.from_numpy(self.labels[idx])
            yield x, y

    def _choices(self, be: Backend, epoch: int, step: int, n: int) -> Any:
        """The transform's random choices for this rank's ``n`` images of a batch, on ``be``."""
        rng = np.random.default_rng([self.seed, epoch, step, AUGMENT_TAG])
        drawn = self.transform.draw(rng, n * self.world_size)
        lo, hi = self.rank * n, (self.rank + 1) * n

        def place(c: Any) -> Any:
            if isinstance(c, list):
                return [place(item) for item in c]
            return None if c is None else be.from_numpy(np.ascontiguousarray(c[lo:hi]))

        return place(drawn)

    def __repr__(self) -> str:
        shard = f", rank={self.rank}, world_size={self.world_size}" if self.world_size > 1 else ""
        return (f"DataLoader(N={self.num_samples}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last}{shard})")


__all__ = ["AUGMENT_TAG", "DataLoader"]
