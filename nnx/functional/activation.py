"""Element-wise activation kernels and the error function on the Array API.

The standard has no ``erf``: :func:`erf` and :func:`erfc` evaluate rational
approximations on the whole real line with standard element-wise functions only,
every branch on a clamped copy of the input (so no branch overflows or divides by
zero) and the branches selected with ``where``. Each ``*_forward`` kernel returns
``(y, dy/dx)``, the local derivative being computed only when ``need_grad`` (a
layer's backward is then ``grad_out · dy/dx``).
"""

from __future__ import annotations

import math
from typing import Any

# ---------------------------------------------------------------------------
# erf / erfc
#
# The coefficients below are published with fdlibm's s_erf.c (FreeBSD msun,
# lib/msun/src/s_erf.c), which carries this notice:
#     Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
#     Developed at SunPro, a Sun Microsystems, Inc. business.
#     Permission to use, copy, modify, and distribute this software is freely
#     granted, provided that this notice is preserved.
# The intervals and forms are theirs; the vectorised evaluation is ours:
#   |x| < 0.84375           erf(x)  = x + x·P(x²)/Q(x²)
#   0.84375 <= |x| < 1.25   erf(|x|) = c + P1(s)/Q1(s), s = |x| − 1, c = erf(1) rounded to float32
#   1.25 <= |x| < 28        erfc(|x|) = exp(−|x|² − 0.5625 + R(1/x²)/S(1/x²)) / |x|
#                           (two (R, S) pairs, split at |x| = 1/0.35); erf = 1 − erfc
#   |x| >= 28               erfc(|x|) = 0 (it underflows), erf = ±1
# exp(−|x|²) is evaluated as exp(−h²)·exp((h − |x|)(h + |x|)) with h = |x| cut to 7
# fractional bits, so that h² and h² + 0.5625 are exact in float32 and float64 and the
# large exponent carries no rounding error.
# ---------------------------------------------------------------------------

_ERX = 8.45062911510467529297e-01
_PP = (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
       -5.77027029648944159157e-03, -2.37630166566501626084e-05)
_QQ = (1.0, 3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
       1.32494738004321644526e-04, -3.96022827877536812320e-06)
_PA = (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
       3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
       -2.16637559486879084300e-03)
_QA = (1.0, 1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
       1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02)
_RA = (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
       -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
       -8.12874355063065934246e+01, -9.81432934416914548592e+00)
_SA = (1.0, 1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,
       6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
       6.57024977031928170135e+00, -6.04244152148580987438e-02)
_RB = (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
       -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
       -4.83519191608651397019e+02)
_SB = (1.0, 3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,
       3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02,
       -2.24409524465858183362e+01)

_SMALL = 0.84375   # below: the odd series form
_NEAR_ONE = 1.25   # below: the expansion about 1
_SPLIT = 1 / 0.35  # where the two tail fits meet
_TAIL_END = 28.0   # from here on erfc underflows in float64 (and float32)


def _poly(coeffs: tuple[float, ...], t: Any) -> Any:
    """c0 + c1·t + c2·t² + ... by Horner's rule (Python-float coefficients keep t's dtype)."""
    acc = t * coeffs[-1] + coeffs[-2]
    for c in coeffs[-3::-1]:  # a loop over coefficients, not over data
        acc = acc * t + c
    return acc


def _erf_parts(xp: Any, x: Any) -> tuple[Any, Any, Any, Any, Any]:
    """The pieces :func:`erf` and :func:`erfc` assemble: |x|, x clamped to the small
    interval and P/Q there (the series is x + x·P/Q), P1/Q1 about 1 and erfc(|x|) of the
    tail (each on |x| clamped to its interval)."""
    a = xp.abs(x)
    xs = xp.clip(x, -_SMALL, _SMALL)
    z = xs * xs
    ratio = _poly(_PP, z) / _poly(_QQ, z)
    s = xp.clip(a, _SMALL, _NEAR_ONE) - 1.0
    pq = _poly(_PA, s) / _poly(_QA, s)
    b = xp.clip(a, _NEAR_ONE, _TAIL_END)
    t = 1.0 / (b * b)
    rs = xp.where(b < _SPLIT, _poly(_RA, t) / _poly(_SA, t), _poly(_RB, t) / _poly(_SB, t))
    h = xp.floor(b * 128.0) / 128.0
    tail = xp.exp(-(h * h) - 0.5625) * xp.exp((h - b) * (h + b) + rs) / b
    tail = xp.where(a >= _TAIL_END, 0.0, tail)
    return a, xs, ratio, pq, tail


def erf(xp: Any, x: Any) -> Any:
    """The error function erf(x) = 2/√π ∫₀ˣ exp(−t²) dt, element-wise, for a real floating
    array (any shape; same dtype and device). erf(−x) = −erf(x) exactly; erf(0) = 0;
    erf(±inf) = ±1; NaN stays NaN. Measured: within 1 ulp of math.erf in float64 and of the
    correctly rounded value in float32 (tests/test_activations.py checks 2 ulps)."""
    a, xs, ratio, pq, tail = _erf_parts(xp, x)
    # x + x·P/Q, scaled by 8 and back (exact in binary) so that x·P/Q stays a normal
    # number for every normal x: libraries that flush subnormals to zero (XLA on the CPU)
    # keep erf's accuracy down to the smallest normal number.
    x8 = 8.0 * xs
    small = 0.125 * (x8 + x8 * ratio)
    mag = xp.where(a < _NEAR_ONE, _ERX + pq, 1.0 - tail)
    return xp.where(a < _SMALL, small, xp.where(x < 0, -mag, mag))


def erfc(xp: Any, x: Any) -> Any:
    """The complementary error function erfc(x) = 1 − erf(x), element-wise, accurate in
    relative terms where it is small (x → +inf) as well (within a few ulps down to the
    smallest normal number); erfc(+inf) = 0, erfc(−inf) = 2."""
    a, xs, ratio, pq, tail = _erf_parts(xp, x)
    xr = xs * ratio
    # above x = 1/4, 0.5 − (x·R + (x − 0.5)) rounds less than 1 − (x + x·R) (fdlibm's split)
    small = xp.where(xs < 0.25, 1.0 - (xs + xr), 0.5 - (xr + (xs - 0.5)))
    near_one = xp.where(x < 0, 1.0 + (_ERX + pq), (1.0 - _ERX) - pq)
    big = xp.where(x < 0, 2.0 - tail, tail)
    return xp.where(a < _SMALL, small, xp.where(a < _NEAR_ONE, near_one, big))


# ---------------------------------------------------------------------------
# Activations: (y, dy/dx or None)
# ---------------------------------------------------------------------------

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715
# Beyond these |x| the derivative terms that hold exp(−x²/2) (GELU "none") and sech²(u)
# (GELU "tanh") are exactly 0 in float64 and float32; clamping there keeps x², x³ finite.
_GELU_NONE_CLAMP = 40.0
_GELU_TANH_CLAMP = 100.0
_TANH_CLAMP = 400.0


def leaky_relu_forward(xp: Any, x: Any, negative_slope: float, need_grad: bool) -> tuple[Any, Any]:
    """y = x if x > 0 else slope·x; dy/dx = 1 if x > 0 else slope (the mask x > 0 is
    returned in place of the derivative)."""
    pos = x > 0
    y = xp.where(pos, x, x * negative_slope)
    return y, (pos if need_grad else None)


def sigmoid_forward(xp: Any, x: Any, need_grad: bool) -> tuple[Any, Any]:
    """σ(x) = 1/(1 + e^−x) from e = exp(−|x|) ≤ 1 (never overflows): σ = 1/(1+e) for x ≥ 0,
    e/(1+e) for x < 0; dσ/dx = σ(x)σ(−x) = e/(1+e)², accurate in both tails."""
    e = xp.exp(-xp.abs(x))
    one_plus = 1.0 + e
    y = xp.where(x >= 0, 1.0, e) / one_plus
    return y, (e / (one_plus * one_plus) if need_grad else None)


def sigmoid(xp: Any, x: Any) -> Any:
    """Numerically stable logistic function σ(x) = 1/(1 + e^−x) (exact 0 and 1 limits)."""
    return sigmoid_forward(xp, x, False)[0]


def tanh_forward(xp: Any, x: Any, need_grad: bool) -> tuple[Any, Any]:
    """y = tanh(x); dy/dx = sech²(x) = 4e/(1+e)² with e = exp(−2|x|) (equal to 1 − y²,
    without its cancellation in the tails)."""
    y = xp.tanh(x)
    if not need_grad:
        return y, None
    # sech² is exactly 0 in float64 (and float32) from |x| = 400 on; the clamp keeps 2|x| finite
    e = xp.exp(-2.0 * xp.clip(xp.abs(x), 0.0, _TANH_CLAMP))
    one_plus = 1.0 + e
    return y, 4.0 * e / (one_plus * one_plus)


def gelu_forward(xp: Any, x: Any, approximate: str, need_grad: bool) -> tuple[Any, Any]:
    """GELU, as PyTorch's ``gelu(x, approximate=...)``.

    "none": y = x·Φ(x), Φ(x) = erfc(−x/√2)/2 (= (1 + erf(x/√2))/2, without the
    cancellation for x < 0); dy/dx = Φ(x) + x·φ(x), φ(x) = exp(−x²/2)/√(2π).
    "tanh": y = x/2·(1 + tanh u) = x·σ(2u), u = √(2/π)(x + 0.044715x³);
    dy/dx = σ(2u) + x/2·sech²(u)·√(2/π)(1 + 3·0.044715x²).
    """
    if approximate == "none":
        cdf = 0.5 * erfc(xp, x * -_SQRT_HALF)
        y = x * cdf
        if not need_grad:
            return y, None
        xc = xp.clip(x, -_GELU_NONE_CLAMP, _GELU_NONE_CLAMP)
        return y, cdf + xc * (xp.exp(-0.5 * (xc * xc)) * _INV_SQRT_2PI)
    if approximate == "tanh":
        xc = xp.clip(x, -_GELU_TANH_CLAMP, _GELU_TANH_CLAMP)
        xc2 = xc * xc
        two_u = (2.0 * _SQRT_2_OVER_PI) * (xc + _GELU_CUBIC * (xc2 * xc))
        e = xp.exp(-xp.abs(two_u))
        one_plus = 1.0 + e
        s2u = xp.where(two_u >= 0, 1.0, e) / one_plus  # σ(2u), as sigmoid_forward
        y = x * s2u
        if not need_grad:
            return y, None
        sech2 = 4.0 * e / (one_plus * one_plus)
        du = _SQRT_2_OVER_PI * (1.0 + (3.0 * _GELU_CUBIC) * xc2)
        return y, s2u + 0.5 * xc * sech2 * du
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
