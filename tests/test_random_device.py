"""Device random numbers (Philox-4x32-10 in standard operations) and Dropout: published
known answers, the same bits on every backend, statistics, independence, resumable streams."""

from __future__ import annotations

import math

import numpy as np
import pytest

import nnx
import nnx.testing as nt
from nnx import Dropout
from nnx.philox import Generator, default_generator, philox4x32

#: Random123's known-answer vectors for Philox-4x32-10 (counter, key, output).
KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter, key, want", KAT)
def test_philox_known_answers_on_every_backend(backend, counter, key, want):
    xp = backend.xp
    words = tuple(xp.asarray([c], dtype=xp.int64, device=backend.device) for c in counter)
    out = philox4x32(words, key)
    assert tuple(int(o[0]) for o in out) == want
    assert all(backend.same_place(o) for o in out)


def test_same_words_on_every_backend(backend):
    ref = nnx.to_numpy(Generator(seed=2**40 + 7).words(nt.make_backend("numpy").xp, 1001))
    got = Generator(seed=2**40 + 7).words(backend.xp, 1001, backend.device)
    assert backend.same_place(got)
    np.testing.assert_array_equal(nnx.to_numpy(got), ref)
    assert ref.min() >= 0 and ref.max() < 2**32


def test_words_are_uniform_chi_square():
    """64 equal bins of 2**16 words: chi-square with 63 degrees of freedom stays below its
    0.999 quantile (103.4) for a uniform source."""
    xp = nt.make_backend("numpy").xp
    words = nnx.to_numpy(Generator(seed=11).words(xp, 2**16))
    counts = np.bincount(words >> 26, minlength=64)
    expected = len(words) / 64
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 103.4, chi2
    bits = np.unpackbits(words.astype(">u4").view(np.uint8)).reshape(-1, 32).mean(axis=0)
    assert np.all(np.abs(bits - 0.5) < 5 * 0.5 / math.sqrt(len(words)))  # every bit fair


def test_consecutive_calls_are_independent_and_continue_the_stream():
    xp = nt.make_backend("numpy").xp
    g = Generator(seed=3)
    a = nnx.to_numpy(g.words(xp, 4000)).astype(np.float64)
    b = nnx.to_numpy(g.words(xp, 4000)).astype(np.float64)
    assert not np.array_equal(a, b)
    r = np.corrcoef(a, b)[0, 1]
    assert abs(r) < 5 / math.sqrt(4000), r
    whole = nnx.to_numpy(Generator(seed=3).words(xp, 8000))
    np.testing.assert_array_equal(whole, np.concatenate([a, b]).astype(np.int64))


def test_uniform_floats_are_in_unit_interval_with_the_right_moments(backend, dtype):
    u = Generator(seed=5).uniform(backend.xp, (200, 50), getattr(backend.xp, dtype),
                                  backend.device)
    assert backend.same_place(u) and nt.dtype_of(u) == dtype
    h = nnx.to_numpy(u).astype(np.float64)
    assert h.min() >= 0.0 and h.max() < 1.0
    n = h.size
    assert abs(h.mean() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(h.var() - 1 / 12) < 5 * math.sqrt(1 / 180 / n)


def test_state_round_trips_and_bad_states_are_refused():
    xp = nt.make_backend("numpy").xp
    g = Generator(seed=9)
    g.words(xp, 10)
    state = g.state()
    first = nnx.to_numpy(g.words(xp, 10))
    h = Generator()
    h.set_state(state)
    np.testing.assert_array_equal(nnx.to_numpy(h.words(xp, 10)), first)
    for bad in ({"seed": -1}, {"counter": 2**63}, {"seed": 1.5}, {"stream": True}):
        with pytest.raises(ValueError, match="Generator.set_state"):
            Generator().set_state(bad)


# -- Dropout --------------------------------------------------------------------------------
def test_dropout_masks_are_the_same_bits_on_every_backend(backend):
    x = np.random.default_rng(0).standard_normal((16, 3, 4, 4)).astype("float32")
    nnx.manual_seed(21)
    ref = nnx.to_numpy(Dropout(0.3)(nnx.asarray(x, "numpy")))
    nnx.manual_seed(21)
    got = Dropout(0.3)(nnx.asarray(x, backend))
    nt.check_placement(got, nnx.asarray(x, backend), "float32")
    np.testing.assert_array_equal(nnx.to_numpy(got), ref)


def test_dropout_keeps_one_minus_p_scaled_and_backward_uses_the_mask(backend, dtype):
    p = 0.3
    x = np.random.default_rng(1).random((50, 400)) + 1.0  # never 0: zeros are the dropped ones
    layer = Dropout(p)
    y = nnx.to_numpy(layer(nnx.asarray(x.astype(dtype), backend)))
    kept = y != 0
    n = x.size
    assert abs(kept.mean() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    nt.assert_close(y[kept], x[kept] / (1 - p), dtype, what="kept values scaled")
    g = np.random.default_rng(2).standard_normal(x.shape)
    dx = nnx.to_numpy(layer.backward(nnx.asarray(g.astype(dtype), backend)))
    nt.assert_close(dx, np.where(kept, g / (1 - p), 0.0), dtype, what="backward")


def test_dropout_in_eval_and_with_p0_is_the_identity(backend):
    x = nnx.asarray(np.random.default_rng(3).random((4, 5)).astype("float32"), backend)
    layer = Dropout(0.5).eval()
    assert layer(x) is x
    zero = Dropout(0.0)
    np.testing.assert_array_equal(nnx.to_numpy(zero(x)), nnx.to_numpy(x))
    np.testing.assert_array_equal(nnx.to_numpy(zero.backward(x)), nnx.to_numpy(x))


def test_consecutive_dropout_calls_draw_new_masks_and_resume_continues_them(tmp_path):
    x = nnx.asarray(np.ones((8, 64), np.float32))
    nnx.manual_seed(4)
    model = nnx.Sequential(nnx.Linear(64, 64), Dropout(0.5))
    first = nnx.to_numpy(model[1](x))
    nnx.save(tmp_path / "c.safetensors", model)
    second = nnx.to_numpy(model[1](x))
    assert not np.array_equal(first != 0, second != 0)
    nnx.manual_seed(99)  # another stream...
    nnx.load(tmp_path / "c.safetensors").restore(model)  # ...until the checkpoint's comes back
    np.testing.assert_array_equal(nnx.to_numpy(model[1](x)), second)
    assert nnx.load(tmp_path / "c.safetensors").meta["device_rng"]["seed"] == 4
    assert default_generator().seed == 4


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan"), True, "0.5"])
def test_dropout_refuses_a_bad_p(p):
    with pytest.raises(ValueError, match=r"Dropout: p must be a probability in \[0, 1\)"):
        Dropout(p)


def test_threads_refuse_to_split_a_batch_through_dropout_or_batchnorm():
    from nnx.parallel import BatchSplitter, auto_threads

    for layer in (Dropout(0.2), nnx.BatchNorm1d(8)):
        model = nnx.Sequential(nnx.Conv2d(1, 2, 3), nnx.Flatten(), nnx.Linear(2 * 4 * 4, 8), layer)
        assert auto_threads(model) == 1
        with pytest.raises(ValueError, match=f"has {type(layer).__name__}.*threads=1"):
            BatchSplitter(model, 2)
