"""2-D cross-correlation (PyTorch's conv2d) by im2col and one matrix product.

Layout inside the kernel: the input is viewed channels first and batch last,
(C, H, W, B), and the column matrix is (kH·kW·C, Ho·Wo·B), built by stacking
the kH·kW strided slices of the zero-padded input (offset-major, so every
slice lands in one contiguous block; with the batch innermost each slice is
made of long contiguous runs of Wo·B values rather than rows of Wo). With the
weight viewed as W'(O, kH·kW·C),

    out(O, Ho·Wo·B) = W' @ cols + b

and the result is viewed back as NCHW (a permutation, no copy on libraries
with strided views), so the next layer reads it in the same fast layout.
Backward is two products and col2im as kH·kW strided slice-adds of
contiguous blocks into a zero buffer (no scatter-add).
"""

from __future__ import annotations

from typing import Any

from .._array import device


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """⌊(size + 2·padding − kernel) / stride⌋ + 1."""
    return (size + 2 * padding - kernel) // stride + 1


_TO_CHWB = (1, 2, 3, 0)  # (B, C, H, W) -> (C, H, W, B)
_TO_BCHW = (3, 0, 1, 2)  # (C, H, W, B) -> (B, C, H, W)


def _padded_chwb(xp: Any, x: Any, ph: int, pw: int) -> Any:
    """(B, C, H, W) -> zero-padded (C, H+2ph, W+2pw, B)."""
    xc = xp.permute_dims(x, _TO_CHWB)
    if ph == 0 and pw == 0:
        return xc
    c, h, w, b = xc.shape
    out = xp.zeros((c, h + 2 * ph, w + 2 * pw, b), dtype=x.dtype, device=device(x))
    out[:, ph:ph + h, pw:pw + w, :] = xc
    return out


def _offset_key(u: int, v: int, stride: tuple[int, int], ho: int, wo: int) -> tuple[slice, ...]:
    """Index of kernel offset (u, v) for every output position, in a (C, Hp, Wp, B) array."""
    sh, sw = stride
    return (slice(None), slice(u, u + sh * (ho - 1) + 1, sh),
            slice(v, v + sw * (wo - 1) + 1, sw), slice(None))


def _weight_matrix(xp: Any, weight: Any) -> Any:
    """(O, C, kH, kW) -> (O, kH·kW·C), the column order of the im2col matrix."""
    o, c, kh, kw = weight.shape
    if c == 1 or kh * kw == 1:
        return xp.reshape(weight, (o, kh * kw * c))
    return xp.reshape(xp.permute_dims(weight, (0, 2, 3, 1)), (o, kh * kw * c))


def _weight_grad(xp: Any, dw2: Any, shape: tuple[int, ...]) -> Any:
    """Inverse of :func:`_weight_matrix` for the gradient."""
    o, c, kh, kw = shape
    if c == 1 or kh * kw == 1:
        return xp.reshape(dw2, shape)
    return xp.permute_dims(xp.reshape(dw2, (o, kh, kw, c)), (0, 3, 1, 2))


def conv2d_forward(xp: Any, x: Any, weight: Any, bias: Any | None,
                   stride: tuple[int, int], padding: tuple[int, int]) -> tuple[Any, Any]:
    """Y[b,o,i,j] = Σ_{c,u,v} Xpad[b,c,i·sh+u,j·sw+v] W[o,c,u,v] + bias[o].

    x (B, C, H, W), weight (O, C, kH, kW), bias (O,) -> (Y (B, O, Ho, Wo), cache).
    """
    bsz, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    ph, pw = padding
    ho = conv_output_size(h, kh, stride[0], ph)
    wo = conv_output_size(w, kw, stride[1], pw)
    xpad = _padded_chwb(xp, x, ph, pw)
    slices = [xpad[_offset_key(u, v, stride, ho, wo)] for u in range(kh) for v in range(kw)]
    stacked = slices[0] if len(slices) == 1 else xp.stack(slices, axis=0)
    cols = xp.reshape(stacked, (kh * kw * c, ho * wo * bsz))
    out = _weight_matrix(xp, weight) @ cols
    if bias is not None:
        out += xp.reshape(bias, (o, 1))
    out = xp.permute_dims(xp.reshape(out, (o, ho, wo, bsz)), _TO_BCHW)
    return out, (cols, tuple(x.shape), (ho, wo))


def conv2d_backward(xp: Any, grad: Any, cache: Any, weight: Any,
                    stride: tuple[int, int], padding: tuple[int, int],
                    need_bias: bool = True,
                    need_input_grad: bool = True) -> tuple[Any | None, Any, Any | None]:
    """(dX, dW, db) for conv2d_forward, from grad (B, O, Ho, Wo).

    dW = G(O, Ho·Wo·B) @ colsᵀ, db = Σ G, dcols = W'ᵀ @ G and dX = col2im(dcols);
    dX is skipped (None) when ``need_input_grad`` is False.
    """
    cols, (bsz, c, h, w), (ho, wo) = cache
    o, _, kh, kw = weight.shape
    ph, pw = padding
    g2 = xp.reshape(xp.permute_dims(grad, _TO_CHWB), (o, ho * wo * bsz))
    # (cols @ G2ᵀ)ᵀ rather than G2 @ colsᵀ: the same product, ~20% faster in OpenBLAS
    dw = _weight_grad(xp, (cols @ g2.T).T, tuple(weight.shape))
    db = xp.sum(g2, axis=1) if need_bias else None
    if not need_input_grad:
        return None, dw, db
    dcols = xp.reshape(_weight_matrix(xp, weight).T @ g2, (kh * kw, c, ho, wo, bsz))
    dxpad = xp.zeros((c, h + 2 * ph, w + 2 * pw, bsz), dtype=grad.dtype, device=device(grad))
    k = 0
    for u in range(kh):
        for v in range(kw):
            dxpad[_offset_key(u, v, stride, ho, wo)] += dcols[k, ...]
            k += 1
    dx = dxpad[:, ph:ph + h, pw:pw + w, :] if (ph or pw) else dxpad
    return xp.permute_dims(dx, _TO_BCHW), dw, db
