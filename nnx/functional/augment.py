"""Batched image preprocessing and augmentation kernels (Array API, on the batch's device).

The random choices (crop offsets, flips) are made by the caller and passed in as
small integer arrays, so these kernels are deterministic; loops run only over the
few possible offsets, never over images.
"""

from __future__ import annotations

from typing import Any

from .padding import zero_pad2d_forward


def normalize(xp: Any, x: Any, mean: Any, std: Any) -> Any:
    """y[b, c] = (x[b, c] − mean[c]) / std[c] for x (B, C, H, W); ``mean`` and ``std``
    are (C,) arrays of x's namespace, device and dtype."""
    c = x.shape[1]
    return (x - xp.reshape(mean, (1, c, 1, 1))) / xp.reshape(std, (1, c, 1, 1))


def random_crop(xp: Any, x: Any, offsets: Any, padding: int) -> Any:
    """Crop each image from its zero-padded copy: y[b] = pad(x[b])[:, dy:dy+H, dx:dx+W].

    x (B, C, H, W); ``offsets`` (B, 2) integers (dy, dx) in [0, 2·padding]. The window
    at (padding, padding) is the image itself. Rows are chosen first (one ``where``
    per possible dy), then columns (one per dx): 2·(2·padding + 1) passes in all.
    """
    b, _, h, w = x.shape
    n = 2 * padding + 1
    padded = zero_pad2d_forward(xp, x, (padding, padding, padding, padding))
    dy = xp.reshape(offsets[:, 0], (b, 1, 1, 1))
    dx = xp.reshape(offsets[:, 1], (b, 1, 1, 1))
    rows = padded[:, :, 0:h, :]
    for k in range(1, n):
        rows = xp.where(dy == k, padded[:, :, k:k + h, :], rows)
    out = rows[..., 0:w]
    for k in range(1, n):
        out = xp.where(dx == k, rows[..., k:k + w], out)
    return out


def random_flip(xp: Any, x: Any, flips: Any) -> Any:
    """y[b] = x[b] mirrored left-right where ``flips[b]`` is nonzero, else x[b]
    (x (B, C, H, W), ``flips`` (B,) integers)."""
    b = x.shape[0]
    return xp.where(xp.reshape(flips, (b, 1, 1, 1)) != 0, xp.flip(x, axis=3), x)


__all__ = ["normalize", "random_crop", "random_flip"]
