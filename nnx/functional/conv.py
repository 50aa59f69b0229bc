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

Two variants of the column work, the same numbers (``few_ops``):

- ``few_ops=False`` (host backends: NumPy, array-api-strict, PyTorch on the CPU,
  where the time goes into passes over memory): im2col as kH·kW slices stacked
  once, col2im as kH·kW slice-adds, as above (measured fastest on NumPy).
- ``few_ops=True`` (accelerators, where every operation is a kernel launch): the
  columns in two stages, the kW column shifts of the padded input stacked, then the
  kH row shifts of that (kH + kW slices and two stacks instead of kH·kW slices);
  for stride 1 the input gradient is the correlation of the zero-padded output
  gradient with the flipped, transposed kernel, computed like the forward (two-stage
  columns and one product) instead of col2im; other strides use a two-stage col2im
  (kW column slice-adds into a (kH, C, Ho, Wp, B) buffer, then kH row slice-adds).
"""

from __future__ import annotations

from typing import Any

from .._array import device
from .._inplace import add_at, set_at


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
    return set_at(out, (slice(None), slice(ph, ph + h), slice(pw, pw + w), slice(None)), xc)


def offset_slice(start: int, step: int, count: int) -> slice:
    """The positions start, start + step, …, of ``count`` windows along one axis: where
    kernel offset ``start`` meets every output position (stride ``step``)."""
    return slice(start, start + step * (count - 1) + 1, step)


def _offset_key(u: int, v: int, stride: tuple[int, int], ho: int, wo: int) -> tuple[slice, ...]:
    """Index of kernel offset (u, v) for every output position, in a (C, Hp, Wp, B) array."""
    return (slice(None), offset_slice(u, stride[0], ho), offset_slice(v, stride[1], wo),
            slice(None))


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


def _two_stage(kh: int, kw: int) -> bool:
    """Whether two-stage columns take fewer operations than kH·kW slices and a stack."""
    return kh > 1 and kw > 1 and kh + kw + 2 < kh * kw + 1


def _columns(xp: Any, xpad: Any, kernel: tuple[int, int], stride: tuple[int, int],
             out_hw: tuple[int, int], few_ops: bool, flip: bool = False) -> Any:
    """The im2col matrix (kH·kW·C, Ho·Wo·B) of a padded (C, Hp, Wp, B) array, rows in
    (u, v, c) order. ``flip`` takes the offsets in reverse (row (u, v) holds offset
    (kH−1−u, kW−1−v)), which pairs unflipped kernel rows with a flipped correlation."""
    kh, kw = kernel
    sh, sw = stride
    ho, wo = out_hw
    c, b = xpad.shape[0], xpad.shape[3]

    def at(i: int, k: int) -> int:
        return k - 1 - i if flip else i

    if few_ops and _two_stage(kh, kw):
        # (kW, C, Hp, Wo, B): the column shifts, then (kH, kW, C, Ho, Wo, B): their row shifts
        shifted = xp.stack([xpad[:, :, offset_slice(at(v, kw), sw, wo), :]
                            for v in range(kw)], axis=0)
        stacked = xp.stack([shifted[:, :, offset_slice(at(u, kh), sh, ho), ...]
                            for u in range(kh)], axis=0)
    else:
        slices = [xpad[_offset_key(at(u, kh), at(v, kw), stride, ho, wo)]
                  for u in range(kh) for v in range(kw)]
        stacked = slices[0] if len(slices) == 1 else xp.stack(slices, axis=0)
    return xp.reshape(stacked, (kh * kw * c, ho * wo * b))


def conv2d_forward(xp: Any, x: Any, weight: Any, bias: Any | None,
                   stride: tuple[int, int], padding: tuple[int, int],
                   few_ops: bool = False) -> tuple[Any, Any]:
    """Y[b,o,i,j] = Σ_{c,u,v} Xpad[b,c,i·sh+u,j·sw+v] W[o,c,u,v] + bias[o].

    x (B, C, H, W), weight (O, C, kH, kW), bias (O,) -> (Y (B, O, Ho, Wo), cache).
    ``few_ops`` picks the variant (module docstring); the values are the same.
    """
    bsz, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    ph, pw = padding
    ho = conv_output_size(h, kh, stride[0], ph)
    wo = conv_output_size(w, kw, stride[1], pw)
    xpad = _padded_chwb(xp, x, ph, pw)
    cols = _columns(xp, xpad, (kh, kw), stride, (ho, wo), few_ops)
    out = _weight_matrix(xp, weight) @ cols
    if bias is not None:
        out += xp.reshape(bias, (o, 1))
    out = xp.permute_dims(xp.reshape(out, (o, ho, wo, bsz)), _TO_BCHW)
    return out, (cols, tuple(x.shape), (ho, wo), few_ops)


def _input_grad_by_correlation(xp: Any, g4: Any, weight: Any, padding: tuple[int, int],
                               in_hw: tuple[int, int]) -> Any:
    """dX (C, H, W, B) of a stride-1 convolution from G (O, Ho, Wo, B):

        dX[c,r,s] = Σ_{o,u,v} Gq[o, r+u, s+v] · W[o, c, kH−1−u, kW−1−v]

    with Gq = G zero-padded by (kH−1−ph, kW−1−pw) on each side: the forward's
    columns (offsets reversed, which flips the kernel) and one product."""
    o, c, kh, kw = weight.shape
    ph, pw = padding
    h, w = in_hw
    _, ho, wo, bsz = g4.shape
    qh, qw = kh - 1 - ph, kw - 1 - pw
    if qh or qw:
        gq = xp.zeros((o, ho + 2 * qh, wo + 2 * qw, bsz), dtype=g4.dtype, device=device(g4))
        gq = set_at(gq, (slice(None), slice(qh, qh + ho), slice(qw, qw + wo), slice(None)), g4)
    else:
        gq = g4
    cols = _columns(xp, gq, (kh, kw), (1, 1), (h, w), True, flip=True)
    # rows (u, v, o) of the columns meet W[o, c, u, v] (the flip is in the columns' order)
    wt = xp.reshape(xp.permute_dims(weight, (1, 2, 3, 0)), (c, kh * kw * o))
    return xp.reshape(wt @ cols, (c, h, w, bsz))


def _col2im(xp: Any, dcols: Any, kernel: tuple[int, int], stride: tuple[int, int],
            out_hw: tuple[int, int], padded: tuple[int, int], few_ops: bool) -> Any:
    """Adjoint of :func:`_columns`: (kH·kW·C, Ho·Wo·B) columns summed into a zero
    (C, Hp, Wp, B) array by strided slice-adds."""
    kh, kw = kernel
    sh, sw = stride
    ho, wo = out_hw
    hp, wp = padded
    bsz = dcols.shape[1] // (ho * wo)
    c = dcols.shape[0] // (kh * kw)
    dt, dev = dcols.dtype, device(dcols)
    if few_ops and _two_stage(kh, kw):
        d6 = xp.reshape(dcols, (kh, kw, c, ho, wo, bsz))
        rows = xp.zeros((kw, c, hp, wo, bsz), dtype=dt, device=dev)
        for u in range(kh):
            rows = add_at(rows, (slice(None), slice(None), offset_slice(u, sh, ho), ...),
                          d6[u, ...])
        dxpad = xp.zeros((c, hp, wp, bsz), dtype=dt, device=dev)
        for v in range(kw):
            dxpad = add_at(dxpad, (slice(None), slice(None), offset_slice(v, sw, wo),
                                   slice(None)), rows[v, ...])
        return dxpad
    d5 = xp.reshape(dcols, (kh * kw, c, ho, wo, bsz))
    dxpad = xp.zeros((c, hp, wp, bsz), dtype=dt, device=dev)
    k = 0
    for u in range(kh):
        for v in range(kw):
            dxpad = add_at(dxpad, _offset_key(u, v, stride, ho, wo), d5[k, ...])
            k += 1
    return dxpad


def conv2d_backward(xp: Any, grad: Any, cache: Any, weight: Any,
                    stride: tuple[int, int], padding: tuple[int, int],
                    need_bias: bool = True,
                    need_input_grad: bool = True) -> tuple[Any | None, Any, Any | None]:
    """(dX, dW, db) for conv2d_forward, from grad (B, O, Ho, Wo).

    dW = G(O, Ho·Wo·B) @ colsᵀ, db = Σ G, dcols = W'ᵀ @ G and dX = col2im(dcols)
    (or, for stride 1 in the ``few_ops`` variant the forward chose, the correlation of
    the padded G with the flipped kernel); dX is skipped (None) when
    ``need_input_grad`` is False.
    """
    cols, (bsz, c, h, w), (ho, wo), few_ops = cache
    o, _, kh, kw = weight.shape
    ph, pw = padding
    g4 = xp.permute_dims(grad, _TO_CHWB)
    g2 = xp.reshape(g4, (o, ho * wo * bsz))
    # (cols @ G2ᵀ)ᵀ rather than G2 @ colsᵀ: the same product, ~20% faster in OpenBLAS; as a
    # tensordot, which NumPy runs with the GIL released where its matmul holds it (an output
    # under ~500 values, as the first layer's), so the batch-split threads overlap it
    dw = _weight_grad(xp, xp.tensordot(cols, g2, axes=((1,), (1,))).T, tuple(weight.shape))
    db = xp.sum(g2, axis=1) if need_bias else None
    if not need_input_grad:
        return None, dw, db
    if few_ops and tuple(stride) == (1, 1) and ph < kh and pw < kw:
        dx = _input_grad_by_correlation(xp, g4, weight, padding, (h, w))
    else:
        dcols = _weight_matrix(xp, weight).T @ g2
        dxpad = _col2im(xp, dcols, (kh, kw), stride, (ho, wo), (h + 2 * ph, w + 2 * pw), few_ops)
        dx = dxpad[:, ph:ph + h, pw:pw + w, :] if (ph or pw) else dxpad
    return xp.permute_dims(dx, _TO_BCHW), dw, db
