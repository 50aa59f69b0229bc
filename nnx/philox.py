"""Random numbers generated on the device, identical bit for bit on every backend.

Philox-4x32-10 (Salmon, Moraes, Dror and Shaw, "Parallel random numbers: as easy as
1, 2, 3", SC 2011) is a counter-based generator: the i-th block of four 32-bit
words is a keyed bijection of the counter i, so any block is computed directly,
in parallel, with no state but (key, counter). Each of its 10 rounds is

    (hi0, lo0) = M0 · c0,   (hi1, lo1) = M1 · c2        (64-bit products, split)
    (c0, c1, c2, c3) ← (hi1 ⊕ c1 ⊕ k0,  lo1,  hi0 ⊕ c3 ⊕ k1,  lo0)
    (k0, k1) ← (k0 + W0, k1 + W1) mod 2³²

with M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85. It is written
here in the standard's int64 operations only (products of 32- by 16-bit halves, so
nothing overflows; no uint64, which not every library supports), so NumPy, PyTorch,
CuPy and array-api-strict compute the same words on their own devices; the tests
check Random123's published known-answer vectors.

:class:`Generator` hands out consecutive blocks: counter (c0, c1) = the block index
(low and high 32 bits), c2 = the stream, c3 = 0, key = the seed's two 32-bit halves.
:func:`nnx.manual_seed` resets the default generator; checkpoints carry its state,
so a resumed run continues the stream.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from ._array import device as device_of

MASK32 = 0xFFFFFFFF
M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
ROUNDS = 10


def _mulhilo(m: int, b: Any) -> tuple[Any, Any]:
    """(high, low) 32-bit words of m · b for a 32-bit constant m and int64 words b < 2³²."""
    p_lo = (b & 0xFFFF) * m           # < 2⁴⁸
    p_hi = (b >> 16) * m              # < 2⁴⁸; m·b = p_hi·2¹⁶ + p_lo
    t = p_lo + ((p_hi & 0xFFFF) << 16)
    return (p_hi >> 16) + (t >> 32), t & MASK32


def philox4x32(counter: tuple[Any, Any, Any, Any], key: tuple[int, int],
               rounds: int = ROUNDS) -> tuple[Any, Any, Any, Any]:
    """Philox-4x32 of int64 arrays of 32-bit counter words (c0, c1, c2, c3) under the
    key (k0, k1): four int64 arrays of 32-bit output words."""
    c0, c1, c2, c3 = counter
    k0, k1 = key[0] & MASK32, key[1] & MASK32
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + W0) & MASK32, (k1 + W1) & MASK32
        hi0, lo0 = _mulhilo(M0, c0)
        hi1, lo1 = _mulhilo(M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


class Generator:
    """Philox-4x32-10 streams on the device of the caller's choice.

    ``words(xp, n, device)`` returns n 32-bit words (int64 values in [0, 2³²)) and
    advances the counter by ⌈n/4⌉ blocks; ``uniform`` and ``keep_mask`` build on it.
    ``state()`` / ``set_state()`` are JSON-able (seed and counter).
    """

    def __init__(self, seed: int = 0, stream: int = 0) -> None:
        self.set_state({"seed": seed, "counter": 0, "stream": stream})
        self._lock = threading.Lock()

    def state(self) -> dict[str, int]:
        return {"seed": self.seed, "counter": self.counter, "stream": self.stream}

    def set_state(self, state: dict[str, Any]) -> None:
        vals = {}
        for key in ("seed", "counter", "stream"):
            v = state.get(key, 0)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 2**63:
                raise ValueError(f"Generator.set_state: {key} must be an int in [0, 2**63), got "
                                 f"{v!r}")
            vals[key] = v
        self.seed, self.counter, self.stream = vals["seed"], vals["counter"], vals["stream"]

    def _take(self, blocks: int) -> int:
        with self._lock:
            start = self.counter
            self.counter += blocks
        return start

    def words(self, xp: Any, n: int, device: Any = None) -> Any:
        """n 32-bit random words (int64 array of shape (n,)) on ``device``."""
        blocks = -(-int(n) // 4)
        start = self._take(blocks)
        index = xp.arange(blocks, dtype=xp.int64, device=device) + start
        zeros = xp.zeros_like(index)
        key = (self.seed & MASK32, (self.seed >> 32) & MASK32)
        out = philox4x32((index & MASK32, index >> 32, zeros + (self.stream & MASK32), zeros), key)
        return xp.reshape(xp.stack(out, axis=1), (4 * blocks,))[:n]

    def uniform(self, xp: Any, shape: tuple[int, ...], dtype: Any, device: Any = None) -> Any:
        """U[0, 1) of ``shape`` in ``dtype``: the top 24 bits of a word (float32) or 53
        bits of two words (float64), so every value is exact in its dtype."""
        n = math.prod(shape)
        if dtype == xp.float64:
            w = self.words(xp, 2 * n, device)
            bits = (w[0::2] >> 5) * (1 << 26) + (w[1::2] >> 6)
            return xp.reshape(xp.astype(bits, xp.float64) * 2.0 ** -53, shape)
        w = self.words(xp, n, device)
        return xp.reshape(xp.astype(w >> 8, dtype) * (2.0 ** -24), shape)

    def keep_mask(self, x: Any, p: float) -> Any:
        """A boolean array like ``x``, each element True with probability 1 − p (p rounded
        to a multiple of 2⁻³²), drawn on x's device."""
        from ._array import namespace_of

        xp = namespace_of(x)
        threshold = int(round(p * 2**32))
        words = self.words(xp, math.prod(x.shape), device_of(x))
        return xp.reshape(words >= threshold, x.shape)


_default = Generator()


def default_generator() -> Generator:
    """The generator Dropout and other random layers use (reset by ``nnx.manual_seed``)."""
    return _default


def seed(value: int) -> None:
    """Reset the default generator: key ``value``, counter 0."""
    _default.set_state({"seed": int(value) % 2**63, "counter": 0, "stream": 0})


__all__ = ["Generator", "default_generator", "philox4x32", "seed"]
