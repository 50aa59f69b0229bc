"""Max pooling over kH×kW windows from the window offsets (no loop over data).

Padding acts as −∞. The gradient of each window goes to its first maximum in
row-major window order, as in PyTorch.
"""

from __future__ import annotations

import math
from typing import Any

from .._array import device
from .conv import conv_output_size


def _key(u: int, v: int, stride: tuple[int, int], ho: int, wo: int) -> tuple[slice, ...]:
    """Index of the (u, v) offset of every window: a strided slice of the padded input."""
    sh, sw = stride
    return (slice(None), slice(None), slice(u, u + sh * (ho - 1) + 1, sh),
            slice(v, v + sw * (wo - 1) + 1, sw))


def max_pool2d_forward(xp: Any, x: Any, kernel: tuple[int, int], stride: tuple[int, int],
                       padding: tuple[int, int]) -> tuple[Any, Any]:
    """Y[b,c,i,j] = max_{u,v} Xpad[b,c,i·sh+u, j·sw+v]; x (B,C,H,W) -> (Y, cache)."""
    bsz, c, h, w = x.shape
    kh, kw = kernel
    ph, pw = padding
    ho = conv_output_size(h, kh, stride[0], ph)
    wo = conv_output_size(w, kw, stride[1], pw)
    if ph or pw:
        xpad = xp.full((bsz, c, h + 2 * ph, w + 2 * pw), -math.inf, dtype=x.dtype,
                       device=device(x))
        xpad[:, :, ph:ph + h, pw:pw + w] = x
    else:
        xpad = x
    out = xpad[_key(0, 0, stride, ho, wo)]
    for u in range(kh):
        for v in range(kw):
            if u or v:
                out = xp.maximum(out, xpad[_key(u, v, stride, ho, wo)])
    if kh * kw == 1:
        out = xp.asarray(out, copy=True)
    return out, (xpad, out)


def max_pool2d_backward(xp: Any, grad: Any, cache: Any, kernel: tuple[int, int],
                        stride: tuple[int, int], padding: tuple[int, int]) -> Any:
    """dX: each window's gradient routed to its first maximum (row-major order)."""
    xpad, out = cache
    kh, kw = kernel
    ph, pw = padding
    ho, wo = out.shape[2], out.shape[3]
    hp, wp = xpad.shape[2], xpad.shape[3]
    # Windows that tile the input exactly write every element once: assign, no zero fill.
    tiles = tuple(stride) == (kh, kw) and ph == pw == 0 and hp == kh * ho and wp == kw * wo
    # *_like keeps the input's memory layout on libraries with strided arrays, so the
    # gradient flows on in the layout the forward pass produced (no transposing copies).
    dxpad = xp.empty_like(xpad) if tiles else xp.zeros_like(xpad)
    if dxpad.dtype != grad.dtype:
        dxpad = xp.astype(dxpad, grad.dtype)
    claimed = None  # True where the window's maximum has already been routed
    last = kh * kw - 1
    for k in range(kh * kw):
        key = _key(k // kw, k % kw, stride, ho, wo)
        hit = xpad[key] == out
        if claimed is None:
            take = hit
            claimed = hit
        else:
            take = hit & ~claimed
            if k < last:
                claimed = claimed | hit
        if tiles:
            dxpad[key] = grad * xp.astype(take, grad.dtype)
        else:
            dxpad[key] += grad * xp.astype(take, grad.dtype)
    h, w = xpad.shape[2] - 2 * ph, xpad.shape[3] - 2 * pw
    return dxpad[:, :, ph:ph + h, pw:pw + w] if (ph or pw) else dxpad
