"""2-D cross-correlation (PyTorch's conv2d) by im2col and one matrix product.

Layout inside the kernel: the input is viewed channels-first-then-batch,
(C, B, H, W), and the column matrix is (C·kH·kW, B·Ho·Wo), built by stacking
the kH·kW strided slices of the zero-padded input. Then

    out(O, B·Ho·Wo) = W(O, C·kH·kW) @ cols + b

and the result is viewed back as NCHW (a permutation, no copy on libraries
with strided views). Backward is two products and col2im as kH·kW strided
slice-adds into a zero buffer, so no scatter-add is needed.
"""

from __future__ import annotations

from typing import Any

from .._array import device


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """⌊(size + 2·padding − kernel) / stride⌋ + 1."""
    return (size + 2 * padding - kernel) // stride + 1


def _padded_cbhw(xp: Any, x: Any, ph: int, pw: int) -> Any:
    """(B, C, H, W) -> zero-padded (C, B, H+2ph, W+2pw)."""
    xc = xp.permute_dims(x, (1, 0, 2, 3))
    if ph == 0 and pw == 0:
        return xc
    c, b, h, w = xc.shape
    out = xp.zeros((c, b, h + 2 * ph, w + 2 * pw), dtype=x.dtype, device=device(x))
    out[:, :, ph:ph + h, pw:pw + w] = xc
    return out


def conv2d_forward(xp: Any, x: Any, weight: Any, bias: Any | None,
                   stride: tuple[int, int], padding: tuple[int, int]) -> tuple[Any, Any]:
    """Y[b,o,i,j] = Σ_{c,u,v} Xpad[b,c,i·sh+u,j·sw+v] W[o,c,u,v] + bias[o].

    x (B, C, H, W), weight (O, C, kH, kW), bias (O,) -> (Y (B, O, Ho, Wo), cache).
    """
    bsz, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    sh, sw = stride
    ph, pw = padding
    ho = conv_output_size(h, kh, sh, ph)
    wo = conv_output_size(w, kw, sw, pw)
    xpad = _padded_cbhw(xp, x, ph, pw)
    if kh == 1 and kw == 1:
        cols = xpad[:, :, 0:sh * (ho - 1) + 1:sh, 0:sw * (wo - 1) + 1:sw]
        cols = xp.reshape(cols, (c, bsz * ho * wo))
    else:
        slices = [
            xpad[:, :, u:u + sh * (ho - 1) + 1:sh, v:v + sw * (wo - 1) + 1:sw]
            for u in range(kh) for v in range(kw)
        ]
        cols = xp.reshape(xp.stack(slices, axis=1), (c * kh * kw, bsz * ho * wo))
    w2 = xp.reshape(weight, (o, c * kh * kw))
    out = w2 @ cols
    if bias is not None:
        out += xp.reshape(bias, (o, 1))
    out = xp.permute_dims(xp.reshape(out, (o, bsz, ho, wo)), (1, 0, 2, 3))
    return out, (cols, tuple(x.shape), (ho, wo))


def conv2d_backward(xp: Any, grad: Any, cache: Any, weight: Any,
                    stride: tuple[int, int], padding: tuple[int, int],
                    need_bias: bool = True,
                    need_input_grad: bool = True) -> tuple[Any | None, Any, Any | None]:
    """(dX, dW, db) for conv2d_forward, from grad (B, O, Ho, Wo)."""
    cols, (bsz, c, h, w), (ho, wo) = cache
    o, _, kh, kw = weight.shape
    sh, sw = stride
    ph, pw = padding
    g2 = xp.reshape(xp.permute_dims(grad, (1, 0, 2, 3)), (o, bsz * ho * wo))
    dw = xp.reshape(g2 @ cols.T, weight.shape)
    db = xp.sum(g2, axis=1) if need_bias else None
    if not need_input_grad:
        return None, dw, db
    w2 = xp.reshape(weight, (o, c * kh * kw))
    dcols = xp.reshape(w2.T @ g2, (c, kh * kw, bsz, ho, wo))
    dxpad = xp.zeros((c, bsz, h + 2 * ph, w + 2 * pw), dtype=grad.dtype, device=device(grad))
    k = 0
    for u in range(kh):
        for v in range(kw):
            dxpad[:, :, u:u + sh * (ho - 1) + 1:sh, v:v + sw * (wo - 1) + 1:sw] += dcols[:, k, ...]
            k += 1
    dx = dxpad[:, :, ph:ph + h, pw:pw + w] if (ph or pw) else dxpad
    return xp.permute_dims(dx, (1, 0, 2, 3)), dw, db
