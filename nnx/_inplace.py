"""Slice updates that work on mutable and immutable arrays alike.

NumPy, CuPy, PyTorch and array-api-strict write ``x[key] = v`` into ``x``; JAX arrays are
immutable and raise. Every slice update in nnx goes through :func:`set_at` or
:func:`add_at`, which return the updated array: ``x`` itself where the library writes in
place, a new array where it cannot (``x.at[key].set(v)``). Callers always rebind::

    out = set_at(out, (..., slice(1, 3)), x)

``x += v`` on an immutable array already rebinds the name to ``x + v``; what must be
rebound by hand is everything else that held ``x`` (an optimizer's state, ``p.data``).
:func:`mutable` tells whether that is needed. The adapter behind an array type is looked
up once per type, so the helpers cost a dictionary lookup on top of the update.
"""

from __future__ import annotations

from typing import Any

from . import backends as _backends

_ADAPTER_CLASS: dict[type, type[_backends.Backend]] = {}


def _adapter_class(x: Any) -> type[_backends.Backend]:
    kind = type(x)
    cls = _ADAPTER_CLASS.get(kind)
    if cls is None:
        try:
            cls = type(_backends.backend_for(x))
        except TypeError:  # an array type no adapter owns (a test double): written in place
            cls = _backends.Backend
        _ADAPTER_CLASS[kind] = cls
    return cls


def mutable(x: Any) -> bool:
    """True when array ``x`` can be written in place (every library but JAX)."""
    return _adapter_class(x).mutable_arrays


def set_at(x: Any, key: Any, value: Any) -> Any:
    """``x[key] = value``; returns the updated array (``x`` itself when mutable)."""
    return _adapter_class(x).set_at(x, key, value)


def add_at(x: Any, key: Any, value: Any) -> Any:
    """``x[key] += value``; returns the updated array (``x`` itself when mutable)."""
    return _adapter_class(x).add_at(x, key, value)
