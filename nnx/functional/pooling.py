"""Max and average pooling over kH×kW windows from the window offsets (no loop over data).

Max pooling: padding acts as −∞; the gradient of each window goes to its first
maximum in row-major window order, as in PyTorch. Two variants, the same numbers
(``few_ops``): the running maximum over the kH·kW window offsets and a backward pass
per offset (host backends, where it is measured fastest), and, when the windows tile
the input (stride = kernel, no padding, kernel dividing H and W), a reshape to
(B, C, Ho, kH, Wo, kW) with one max over the two window axes and a backward from one
equality mask, the first maximum picked by the largest of the window's priorities
(accelerators, where every operation is a kernel launch).

Average pooling: padding acts as 0 and counts in the divisor kH·kW (PyTorch's
``count_include_pad=True``, ``ceil_mode=False``). The kernels view the input
batch-innermost, (C, H, W, B), as conv.py does: the sum of the kH·kW strided
slices keeps the input's memory order, and the gradient is written into a
(C, H, W, B) buffer that is handed back as an NCHW view, so the gradient reaches
the layer before in the layout conv.py and Flatten produce (measured on NumPy:
a 2×2 backward of a (128, 16, 16, 16) batch-innermost gradient took 0.07 ms into
a (C, H, W, B) buffer and 0.47 ms into an NCHW one). A window that covers the
whole unpadded image (global average pooling) is a mean over H and W.
"""

from __future__ import annotations

import math
from typing import Any

from .._array import device
from .._inplace import add_at, set_at
from .conv import _TO_BCHW, _TO_CHWB, _offset_key, _padded_chwb, conv_output_size, offset_slice


def _key(u: int, v: int, stride: tuple[int, int], ho: int, wo: int) -> tuple[slice, ...]:
    """Index of the (u, v) offset of every window: a strided slice of the padded input."""
    return (slice(None), slice(None), offset_slice(u, stride[0], ho),
            offset_slice(v, stride[1], wo))


def _tiles(shape: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int],
           padding: tuple[int, int]) -> bool:
    """Whether the windows tile the input exactly (each element in one window)."""
    kh, kw = kernel
    return (tuple(stride) == (kh, kw) and tuple(padding) == (0, 0)
            and int(shape[2]) % kh == 0 and int(shape[3]) % kw == 0)


def max_pool2d_forward(xp: Any, x: Any, kernel: tuple[int, int], stride: tuple[int, int],
                       padding: tuple[int, int], few_ops: bool = False) -> tuple[Any, Any]:
    """Y[b,c,i,j] = max_{u,v} Xpad[b,c,i·sh+u, j·sw+v]; x (B,C,H,W) -> (Y, cache).

    ``few_ops`` picks the variant (module docstring); the values are the same."""
    bsz, c, h, w = x.shape
    kh, kw = kernel
    ph, pw = padding
    ho = conv_output_size(h, kh, stride[0], ph)
    wo = conv_output_size(w, kw, stride[1], pw)
    if few_ops and kh * kw > 1 and _tiles(tuple(x.shape), kernel, stride, padding):
        x6 = xp.reshape(x, (bsz, c, ho, kh, wo, kw))
        out6 = xp.max(x6, axis=(3, 5), keepdims=True)
        return xp.reshape(out6, (bsz, c, ho, wo)), ("windows", x6, out6)
    if ph or pw:
        xpad = xp.full((bsz, c, h + 2 * ph, w + 2 * pw), -math.inf, dtype=x.dtype,
                       device=device(x))
        xpad = set_at(xpad, (slice(None), slice(None), slice(ph, ph + h), slice(pw, pw + w)), x)
    else:
        xpad = x
    out = xpad[_key(0, 0, stride, ho, wo)]
    for u in range(kh):
        for v in range(kw):
            if u or v:
                out = xp.maximum(out, xpad[_key(u, v, stride, ho, wo)])
    if kh * kw == 1:
        out = xp.asarray(out, copy=True)
    return out, ("offsets", xpad, out)


def _max_pool2d_backward_windows(xp: Any, grad: Any, x6: Any, out6: Any) -> Any:
    """dX for tiling windows from the (B, C, Ho, kH, Wo, kW) view of X and the window
    maxima (B, C, Ho, 1, Wo, 1): the gradient goes where X equals the maximum and the
    priority kH·kW − (u·kW + v) is the largest of the window's (its first maximum)."""
    bsz, c, ho, kh, wo, kw = (int(s) for s in x6.shape)
    hit = x6 == out6
    n = kh * kw
    small = xp.int8 if n < 2**7 else xp.int16 if n < 2**15 else xp.int32
    priority = xp.asarray([[[n - (u * kw + v) for v in range(kw)]] for u in range(kh)],
                          dtype=small, device=device(grad))  # (kH, 1, kW)
    score = xp.where(hit, priority, 0)
    first = (score == xp.max(score, axis=(3, 5), keepdims=True)) & hit
    dx6 = xp.where(first, xp.reshape(grad, (bsz, c, ho, 1, wo, 1)), 0.0)
    return xp.reshape(dx6, (bsz, c, ho * kh, wo * kw))


def max_pool2d_backward(xp: Any, grad: Any, cache: Any, kernel: tuple[int, int],
                        stride: tuple[int, int], padding: tuple[int, int]) -> Any:
    """dX: each window's gradient routed to its first maximum (row-major order)."""
    kind, xpad, out = cache
    if kind == "windows":
        return _max_pool2d_backward_windows(xp, grad, xpad, out)
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
        routed = grad * xp.astype(take, grad.dtype)
        dxpad = set_at(dxpad, key, routed) if tiles else add_at(dxpad, key, routed)
    h, w = xpad.shape[2] - 2 * ph, xpad.shape[3] - 2 * pw
    return dxpad[:, :, ph:ph + h, pw:pw + w] if (ph or pw) else dxpad


def _is_global(shape: tuple[int, ...], kernel: tuple[int, int], padding: tuple[int, int]) -> bool:
    """True when one window covers the whole unpadded image (the output is 1×1)."""
    return tuple(padding) == (0, 0) and (int(shape[2]), int(shape[3])) == tuple(kernel)


def avg_pool2d_forward(xp: Any, x: Any, kernel: tuple[int, int], stride: tuple[int, int],
                       padding: tuple[int, int]) -> tuple[Any, Any]:
    """Y[b,c,i,j] = (1/(kH·kW)) Σ_{u<kH, v<kW} Xpad[b,c,i·sh+u, j·sw+v], zero padding.

    x (B, C, H, W) -> (Y (B, C, Ho, Wo), cache), Ho = ⌊(H + 2·ph − kH)/sh⌋ + 1; the
    cache is the input shape (the backward pass needs no activations).
    """
    shape = tuple(int(s) for s in x.shape)
    if _is_global(shape, kernel, padding):
        return global_avg_pool2d_forward(xp, x), shape
    _, _, h, w = shape
    kh, kw = kernel
    ph, pw = padding
    ho = conv_output_size(h, kh, stride[0], ph)
    wo = conv_output_size(w, kw, stride[1], pw)
    xpad = _padded_chwb(xp, x, ph, pw)
    out = xpad[_offset_key(0, 0, stride, ho, wo)]
    if kh * kw == 1:
        out = xp.asarray(out, copy=True)
    else:
        for k in range(1, kh * kw):
            term = xpad[_offset_key(k // kw, k % kw, stride, ho, wo)]
            if k == 1:
                out = out + term  # a new array: the slices of x are never written
            else:
                out += term
        out /= float(kh * kw)
    return xp.permute_dims(out, _TO_BCHW), shape


def avg_pool2d_backward(xp: Any, grad: Any, cache: Any, kernel: tuple[int, int],
                        stride: tuple[int, int], padding: tuple[int, int]) -> Any:
    """dX[b,c,r,s] = Σ over the windows (i, j) that hold (r, s) of G[b,c,i,j]/(kH·kW).

    ``cache`` is the input shape from :func:`avg_pool2d_forward`; grad (B, C, Ho, Wo).
    """
    bsz, c, h, w = cache
    if _is_global(cache, kernel, padding):
        return global_avg_pool2d_backward(xp, grad, cache)
    kh, kw = kernel
    sh, sw = stride
    ph, pw = padding
    ho, wo = int(grad.shape[2]), int(grad.shape[3])
    hp, wp = h + 2 * ph, w + 2 * pw
    gs = xp.permute_dims(grad, _TO_CHWB) / float(kh * kw)  # (C, Ho, Wo, B)
    overlap = sh < kh or sw < kw
    # windows that tile the padded input write every element once: assign, no zero fill
    tiles = (sh, sw) == (kh, kw) and hp == kh * ho and wp == kw * wo
    make = xp.empty if tiles else xp.zeros
    dxpad = make((c, hp, wp, bsz), dtype=grad.dtype, device=device(grad))
    for k in range(kh * kw):
        key = _offset_key(k // kw, k % kw, stride, ho, wo)
        dxpad = add_at(dxpad, key, gs) if overlap else set_at(dxpad, key, gs)
    dx = dxpad[:, ph:ph + h, pw:pw + w, :] if (ph or pw) else dxpad
    return xp.permute_dims(dx, _TO_BCHW)


def global_avg_pool2d_forward(xp: Any, x: Any) -> Any:
    """Y[b,c,0,0] = (1/(H·W)) Σ_{h,w} X[b,c,h,w]: x (B, C, H, W) -> (B, C, 1, 1)."""
    return xp.reshape(xp.mean(x, axis=(2, 3)), (int(x.shape[0]), int(x.shape[1]), 1, 1))


def global_avg_pool2d_backward(xp: Any, grad: Any, input_shape: tuple[int, ...]) -> Any:
    """dX[b,c,h,w] = G[b,c,0,0]/(H·W), a (B, C, H, W) array laid out batch-innermost (a
    new array, not a broadcast view: callers may write into it)."""
    bsz, c, h, w = (int(s) for s in input_shape)
    gs = xp.permute_dims(grad, _TO_CHWB) / float(h * w)  # (C, 1, 1, B)
    # an explicit (C, H, W, B) buffer: a copy of the broadcast view would keep the view's
    # stride order instead (measured: 0.036 ms for a (128, 64, 8, 8) gradient)
    dx = xp.empty((c, h, w, bsz), dtype=grad.dtype, device=device(grad))
    dx = set_at(dx, (...,), gs)
    return xp.permute_dims(dx, _TO_BCHW)
