"""Small Array API helpers shared by the math modules (standard calls only)."""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace, device

from .backends.base import dtype_name

__all__ = ["array_namespace", "device", "dtype_name", "namespace_of", "shape_str"]

_NAMESPACES: dict[type, Any] = {}


def namespace_of(x: Any) -> Any:
    """``array_namespace(x)`` for one array, cached by its type (the namespace of an
    array depends only on its type; this runs on every layer call)."""
    ns = _NAMESPACES.get(type(x))
    if ns is None:
        ns = array_namespace(x)
        _NAMESPACES[type(x)] = ns
    return ns


def shape_str(shape: Any) -> str:
    """``(3,)``, ``(2, 3)``: a shape as Python writes a tuple of ints."""
    return str(tuple(int(s) for s in shape))
