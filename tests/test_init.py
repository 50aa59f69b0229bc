"""Initialisers (nnx/init.py): the spread of every ``init=`` of Linear and
Conv2d measured against its formula.

Tolerances come from the sampling distribution of n i.i.d. draws, written as a number
``Z`` of standard errors (the draws are seeded, so a pass is reproducible; Z = 6 makes
a chance failure of a correct initialiser impossible in practice, while the smallest
error worth catching, a factor √2 in the spread or fan_in and fan_out swapped, is
tens of standard errors away):

- sample mean of a zero-mean law with std σ: SE = σ/√n;
- sample std s of N(0, σ²): SE(s)/σ ≈ 1/√(2n);
- sample std s of U(±b) (σ = b/√3, fourth central moment b⁴/5):
  Var(s²) ≈ (b⁴/5 − σ⁴)/n = 4b⁴/(45n), so SE(s)/σ ≈ √(0.2/n);
- max |w| of n draws of U(±b): P(max|w| < b(1 − ε)) = (1 − ε)ⁿ ≤ e^(−nε); with
  ε = 20/n that is e^(−20) ≈ 2e−9.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnx

Z = 6.0  # standard errors allowed


def host(param):
    return np.asarray(nnx.to_numpy(param.data), dtype=np.float64).ravel()


def check_uniform(w, bound, what):
    """``w`` looks like n draws of U(±bound): std, mean, max |w| ≤ bound and close to it."""
    n = w.size
    sigma = bound / math.sqrt(3.0)
    s = w.std()
    assert abs(s / sigma - 1.0) < Z * math.sqrt(0.2 / n), \
        f"{what}: std {s:.6g}, expected b/√3 = {sigma:.6g} (b = {bound:.6g}, n = {n})"
    assert abs(w.mean()) < Z * sigma / math.sqrt(n), f"{what}: mean {w.mean():.3g} is not ≈ 0"
    top = np.abs(w).max()
    # float32 rounding may put a draw a half-ulp past the bound
    assert top <= bound * (1 + 1e-7), f"{what}: max |w| {top:.8g} exceeds the bound {bound:.8g}"
    assert top >= bound * (1 - 20.0 / n), f"{what}: max |w| {top:.6g} is far below the bound {bound:.6g}"


def check_normal(w, sigma, what):
    """``w`` looks like n draws of N(0, sigma²): std, mean, and the share within ±σ."""
    n = w.size
    s = w.std()
    assert abs(s / sigma - 1.0) < Z / math.sqrt(2.0 * n), \
        f"{what}: std {s:.6g}, expected {sigma:.6g} (n = {n})"
    assert abs(w.mean()) < Z * sigma / math.sqrt(n), f"{what}: mean {w.mean():.3g} is not ≈ 0"
    # a normal law puts 68.27 % within one σ (a uniform of the same std: 57.7 %)
    p = math.erf(1 / math.sqrt(2))
    inside = np.mean(np.abs(w) < sigma)
    assert abs(inside - p) < Z * math.sqrt(p * (1 - p) / n), \
        f"{what}: {inside:.4f} of the draws within ±σ, a normal law gives {p:.4f}"


# (layer factory, fan_in, fan_out): fan_in and fan_out differ by a factor >= 3, so a
# swap changes the spread by >= √3 (tens of standard errors at these sizes)
LAYERS = {
    "linear": (lambda init: nnx.Linear(400, 100, init=init), 400, 100),
    "conv2d": (lambda init: nnx.Conv2d(20, 64, 5, init=init), 20 * 25, 64 * 25),
}


@pytest.mark.parametrize("layer", LAYERS)
def test_kaiming_uniform_default(layer):
    """The default is ``init="kaiming_uniform"`` (PyTorch's, a=√5): weight U(±1/√fan_in)."""
    make, fan_in, _ = LAYERS[layer]
    nnx.manual_seed(1)
    default = nnx.Linear(400, 100) if layer == "linear" else nnx.Conv2d(20, 64, 5)
    nnx.manual_seed(1)
    named = make("kaiming_uniform")
    np.testing.assert_array_equal(host(default.weight), host(named.weight))
    check_uniform(host(named.weight), 1 / math.sqrt(fan_in), f"{layer} kaiming_uniform weight")


@pytest.mark.parametrize("layer", LAYERS)
def test_kaiming_normal(layer):
    """``init="kaiming_normal"`` (He): N(0, 2/fan_in)."""
    make, fan_in, _ = LAYERS[layer]
    check_normal(host(make("kaiming_normal").weight), math.sqrt(2.0 / fan_in),
                 f"{layer} kaiming_normal weight")


@pytest.mark.parametrize("layer", LAYERS)
def test_xavier_uniform(layer):
    """``init="xavier_uniform"`` (Glorot): U(±√(6/(fan_in+fan_out)))."""
    make, fan_in, fan_out = LAYERS[layer]
    check_uniform(host(make("xavier_uniform").weight), math.sqrt(6.0 / (fan_in + fan_out)),
                  f"{layer} xavier_uniform weight")


@pytest.mark.parametrize("init", ["kaiming_uniform", "kaiming_normal", "xavier_uniform"])
@pytest.mark.parametrize("layer", ["linear", "conv2d"])
def test_bias_is_uniform_over_fan_in_whatever_the_weight_init(layer, init):
    """The bias is U(±1/√fan_in) with every weight initialiser (enough outputs to measure)."""
    if layer == "linear":
        lin = nnx.Linear(64, 8000, init=init)
        fan_in, b = 64, host(lin.bias)
    else:
        conv = nnx.Conv2d(2, 4000, 3, init=init)
        fan_in, b = 2 * 9, host(conv.bias)
    check_uniform(b, 1 / math.sqrt(fan_in), f"{layer} bias with init={init}")


def test_unknown_init_names_the_choices():
    """A misspelt initialiser is a ValueError listing the valid names."""
    with pytest.raises(ValueError, match="kaiming_uniform, kaiming_normal, xavier_uniform"):
        nnx.Linear(3, 2, init="kaiming")
