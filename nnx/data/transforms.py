"""Batch transforms that a DataLoader applies on the batch's backend and device.

    >>> from nnx.data import DataLoader, transforms as T
    >>> train = DataLoader(x, y, 128, transform=T.Compose([
    ...     T.RandomCrop(4), T.RandomHorizontalFlip(), T.Normalize(mean, std)]))

Random choices (crop offsets, flips) are drawn on the host by NumPy, seeded by the
loader's seed, the epoch and the batch's position in it, so the same seed gives the
same augmented batches on every backend, a resumed run sees the batches an
uninterrupted one would, and the ranks of a distributed run together see what one
process would. Only the choices (a few integers per image) travel to the device;
the images are transformed there with the batched kernels of
:mod:`nnx.functional.augment`.

Each transform has ``draw(rng, n)`` (the host-side choices for ``n`` images, or
None), ``apply(x, choices)`` and ``config()`` (JSON, recorded in checkpoints;
:func:`from_config` rebuilds a transform from it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._array import device, dtype_name, namespace_of
from ..functional.augment import normalize, random_crop, random_flip


class Transform:
    """Base class: deterministic unless ``draw`` returns choices."""

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray | None:
        return None

    def apply(self, x: Any, choices: Any) -> Any:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


def _floats(name: str, values: Any, owner: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {name} must be a sequence of numbers, got {values!r}") from None
    if not out or not all(math.isfinite(v) for v in out):
        raise ValueError(f"{owner}: {name} must be finite numbers, got {values!r}")
    return out


class Normalize(Transform):
    """y[b, c] = (x[b, c] − mean[c]) / std[c], one mean and std per channel (C values)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = _floats("mean", mean, "Normalize")
        self.std = _floats("std", std, "Normalize")
        if len(self.mean) != len(self.std):
            raise ValueError(f"Normalize: {len(self.mean)} means but {len(self.std)} stds")
        if min(self.std) <= 0:
            raise ValueError(f"Normalize: std must be > 0, got {self.std}")
        self._constants: dict[tuple[Any, str, str], tuple[Any, Any]] = {}

    def apply(self, x: Any, choices: Any = None) -> Any:
        xp = namespace_of(x)
        if x.ndim != 4 or x.shape[1] != len(self.mean):
            raise ValueError(f"{self!r}: expected images (B, {len(self.mean)}, H, W), got shape "
                             f"{tuple(x.shape)}")
        key = (type(x), str(device(x)), dtype_name(x.dtype))
        if key not in self._constants:  # made once per place, not per batch
            self._constants[key] = tuple(
                xp.asarray(list(v), dtype=x.dtype, device=device(x)) for v in (self.mean, self.std))
        mean, std = self._constants[key]
        return normalize(xp, x, mean, std)

    def config(self) -> dict[str, Any]:
        return {"name": "Normalize", "mean": list(self.mean), "std": list(self.std)}


class RandomCrop(Transform):
    """A random H×W window of the image zero-padded by ``padding`` on every side (each of
    the (2·padding + 1)² offsets equally likely, independently per image)."""

    def __init__(self, padding: int) -> None:
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"RandomCrop: padding must be an int >= 0, got {padding!r}")
        self.padding = padding

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.integers(0, 2 * self.padding + 1, size=(n, 2), dtype=np.int64)

    def apply(self, x: Any, choices: Any) -> Any:
        if self.padding == 0:
            return x
        return random_crop(namespace_of(x), x, choices, self.padding)

    def config(self) -> dict[str, Any]:
        return {"name": "RandomCrop", "padding": self.padding}


class RandomHorizontalFlip(Transform):
    """Mirror each image left-right with probability ``p``, independently."""

    def __init__(self, p: float = 0.5) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomHorizontalFlip: p must lie in [0, 1], got {p!r}")
        self.p = float(p)

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return (rng.random(n) < self.p).astype(np.int64)

    def apply(self, x: Any, choices: Any) -> Any:
        return random_flip(namespace_of(x), x, choices)

    def config(self) -> dict[str, Any]:
        return {"name": "RandomHorizontalFlip", "p": self.p}


class Compose(Transform):
    """The transforms in order; each random one draws from the batch's generator in turn."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)
        for i, t in enumerate(self.transforms):
            if not isinstance(t, Transform):
                raise TypeError(f"Compose: item {i} is a {type(t).__name__}, not a Transform")

    def draw(self, rng: np.random.Generator, n: int) -> list[np.ndarray | None]:
        return [t.draw(rng, n) for t in self.transforms]

    def apply(self, x: Any, choices: Any) -> Any:
        for t, c in zip(self.transforms, choices):
            x = t.apply(x, c)
        return x

    def config(self) -> dict[str, Any]:
        return {"name": "Compose", "transforms": [t.config() for t in self.transforms]}

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


_KINDS = {"Normalize": Normalize, "RandomCrop": RandomCrop,
          "RandomHorizontalFlip": RandomHorizontalFlip}


def from_config(config: dict[str, Any]) -> Transform:
    """The transform a ``config()`` describes (ValueError for an unknown or malformed one)."""
    if not isinstance(config, dict) or config.get("name") not in (*_KINDS, "Compose"):
        raise ValueError(f"unknown transform {config!r}; known: Compose, {', '.join(_KINDS)}")
    args = {k: v for k, v in config.items() if k != "name"}
    if config["name"] == "Compose":
        items = args.get("transforms")
        if not isinstance(items, list):
            raise ValueError(f"Compose config needs a list of transforms, got {items!r}")
        return Compose([from_config(c) for c in items])
    try:
        return _KINDS[config["name"]](**args)
    except TypeError as exc:
        raise ValueError(f"bad {config['name']} config {config!r}: {exc}") from None


__all__ = ["Compose", "Normalize", "RandomCrop", "RandomHorizontalFlip", "Transform",
           "from_config"]
