"""Counting the array operations nnx issues: an instrumented NumPy namespace and array type.

On a GPU every array operation is (at least) one kernel launch, so the number of
operations a training step issues bounds how fast it can run there, whatever the
sizes. :class:`CountedArray` wraps a NumPy array; its ``__array_namespace__`` is
:data:`namespace`, a wrapper of array-api-compat's NumPy namespace. nnx takes its
namespace from its inputs, so a model whose parameters and batch are CountedArrays
runs its usual code path, and every operation goes through the wrappers, which
compute on NumPy and wrap the results again (NumPy scalars from reductions become
0-d arrays, as on a GPU library).

What counts as one operation, inside :func:`counting`:

- every call of a function of the namespace (``xp.matmul``, ``xp.reshape``,
  ``xp.permute_dims``, ``xp.zeros``, ``xp.asarray``, ...), views included: they are
  cheap on the device but each is a call into the library;
- every operator of an array: arithmetic, comparison, bitwise, unary, in-place
  (``a += b`` is one), ``@``, ``a[key]`` and ``a[key] = v``, and ``.T`` / ``.mT``;
- every read of a value to the host: ``bool(a)``, ``float(a)``, ``int(a)``,
  ``operator.index(a)`` (each a device-to-host copy and a wait on a GPU).

Not counted (no work on the array data): ``shape``, ``ndim``, ``size``, ``dtype``,
``device``, the namespace's dtypes and constants, and the dtype queries ``isdtype``,
``finfo``, ``iinfo``, ``result_type``, ``can_cast``, ``__array_namespace_info__``.

Of these, ``views`` are the ones whose result shares memory with an input
(``reshape`` and ``permute_dims`` without a copy, basic slicing, ``.T``, ``asarray``
of an array): they move no data, so on a GPU they launch no kernel (they still cost a
call into the library). ``total - views`` is the number of operations that read or
write array data: kernel launches on a GPU.

The counts are exact and deterministic: they depend on the code path (shapes,
settings), not on timing or values. Counters nest: an operation is counted by every
active :func:`counting` block.
"""

from __future__ import annotations

import collections
import contextlib
import operator
from collections.abc import Iterator
from typing import Any

import array_api_compat.numpy as _np_xp
import numpy as np

#: Namespace functions that only inspect dtypes: not operations on arrays.
UNCOUNTED = frozenset({"isdtype", "finfo", "iinfo", "result_type", "can_cast",
                       "__array_namespace_info__"})

class OpCount(collections.Counter):
    """Operation name -> calls (``"xp.matmul"``, ``"array.__iadd__"``, ...); ``views`` the
    same for the operations that returned a view of an input."""

    def __init__(self) -> None:
        super().__init__()
        self.views: collections.Counter = collections.Counter()

    @property
    def total(self) -> int:
        return sum(self.values())

    @property
    def kernels(self) -> int:
        """Operations that read or write array data (all but the views)."""
        return self.total - sum(self.views.values())


_active: list[OpCount] = []


def _arrays(obj: Any) -> list[np.ndarray]:
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [a for o in obj for a in _arrays(o)]
    if isinstance(obj, dict):
        return [a for o in obj.values() for a in _arrays(o)]
    return []


def _count(name: str, result: Any = None, inputs: Any = ()) -> None:
    """Count one operation; a view when every array it returned shares memory with an
    array among ``inputs`` (NumPy arrays)."""
    if not _active:
        return
    outs = _arrays(result)
    ins = _arrays(inputs)
    view = bool(outs) and all(any(np.may_share_memory(o, i) for i in ins) for o in outs)
    for counter in _active:
        counter[name] += 1
        if view:
            counter.views[name] += 1


@contextlib.contextmanager
def counting() -> Iterator[OpCount]:
    """An :class:`OpCount` filled while the block runs."""
    counter = OpCount()
    _active.append(counter)
    try:
        yield counter
    finally:
        _active.remove(counter)


def unwrap(obj: Any) -> Any:
    """The NumPy arrays inside ``obj`` (an array, or lists/tuples/dicts of them)."""
    if type(obj) is CountedArray:
        return obj._a
    if isinstance(obj, (list, tuple)):
        return type(obj)(unwrap(o) for o in obj)
    if isinstance(obj, dict):
        return {k: unwrap(v) for k, v in obj.items()}
    return obj


def wrap(obj: Any) -> Any:
    """NumPy arrays and scalars in ``obj`` as CountedArrays (scalars as 0-d arrays)."""
    if isinstance(obj, np.ndarray):
        return CountedArray(obj)
    if isinstance(obj, np.generic):
        return CountedArray(np.asarray(obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(wrap(o) for o in obj)
    return obj


class CountingNamespace:
    """array-api-compat's NumPy namespace, each function counted (see the module)."""

    def __init__(self, inner: Any, name: str) -> None:
        self._inner = inner
        self.__name__ = name

    def __getattr__(self, name: str) -> Any:
        obj = getattr(self._inner, name)
        if isinstance(obj, type(contextlib)):  # a submodule: linalg, fft
            out: Any = CountingNamespace(obj, f"{self.__name__}.{name}")
        elif isinstance(obj, type) or not callable(obj):
            out = obj  # dtypes, constants
        elif name in UNCOUNTED:
            def out(*args: Any, _f: Any = obj, **kwargs: Any) -> Any:
                return _f(*unwrap(args), **unwrap(kwargs))
        else:
            label = f"xp.{name}"

            def out(*args: Any, _f: Any = obj, _label: str = label, **kwargs: Any) -> Any:
                args, kwargs = unwrap(args), unwrap(kwargs)
                result = _f(*args, **kwargs)
                _count(_label, result, (args, kwargs))
                return wrap(result)
        setattr(self, name, out)  # looked up once
        return out


namespace = CountingNamespace(_np_xp, "opcount_numpy")


class CountedArray:
    """A NumPy array whose operations are counted; its namespace is :data:`namespace`."""

    __slots__ = ("_a",)
    __array_ufunc__ = None  # NumPy's operators defer to ours

    def __init__(self, a: Any) -> None:
        if not isinstance(a, np.ndarray):
            raise TypeError(f"CountedArray wraps a NumPy array, got {type(a).__name__}")
        self._a = a

    def __array_namespace__(self, api_version: str | None = None) -> CountingNamespace:
        return namespace

    def __repr__(self) -> str:
        return f"CountedArray({self._a!r})"

    # metadata: not operations
    shape = property(lambda self: self._a.shape)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    dtype = property(lambda self: self._a.dtype)
    device = property(lambda self: "cpu")

    @property
    def T(self) -> CountedArray:  # noqa: N802 - the standard's name
        result = self._a.T
        _count("array.T", result, self._a)
        return CountedArray(result)

    @property
    def mT(self) -> CountedArray:  # noqa: N802
        result = np.swapaxes(self._a, -1, -2)
        _count("array.mT", result, self._a)
        return CountedArray(result)

    def to_device(self, device: Any, /, *, stream: Any = None) -> CountedArray:
        _count("array.to_device", self._a, self._a)
        return self

    def __getitem__(self, key: Any) -> CountedArray:
        result = self._a[unwrap(key)]
        _count("array.__getitem__", result, self._a)
        return wrap(result)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._a[unwrap(key)] = unwrap(value)
        _count("array.__setitem__")

    def _host(self, name: str, convert: Any) -> Any:
        result = convert(self._a)
        _count(f"array.{name}")
        return result

    def __bool__(self) -> bool:
        return self._host("__bool__", bool)

    def __float__(self) -> float:
        return self._host("__float__", float)

    def __int__(self) -> int:
        return self._host("__int__", int)

    def __index__(self) -> int:
        return self._host("__index__", operator.index)

    def __complex__(self) -> complex:
        return self._host("__complex__", complex)


def _binary(name: str) -> Any:
    label = f"array.{name}"

    def op(self: CountedArray, other: Any) -> Any:
        result = getattr(self._a, name)(unwrap(other))
        if result is NotImplemented:
            return result
        _count(label)
        return wrap(result)

    op.__name__ = name
    return op


def _inplace(name: str) -> Any:
    label = f"array.{name}"

    def op(self: CountedArray, other: Any) -> CountedArray:
        getattr(self._a, name)(unwrap(other))  # NumPy's in-place operators write self._a
        _count(label)
        return self

    op.__name__ = name
    return op


def _unary(name: str) -> Any:
    label = f"array.{name}"

    def op(self: CountedArray) -> CountedArray:
        result = getattr(self._a, name)()
        _count(label)
        return wrap(result)

    op.__name__ = name
    return op


_BINARY = ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul",
           "and", "or", "xor", "lshift", "rshift")
for _op in _BINARY:
    for _name in (f"__{_op}__", f"__r{_op}__"):
        setattr(CountedArray, _name, _binary(_name))
    setattr(CountedArray, f"__i{_op}__", _inplace(f"__i{_op}__"))
for _name in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"):
    setattr(CountedArray, _name, _binary(_name))
for _name in ("__neg__", "__pos__", "__abs__", "__invert__"):
    setattr(CountedArray, _name, _unary(_name))
CountedArray.__hash__ = None  # type: ignore[assignment]  # as NumPy arrays


def instrument(model: Any) -> Any:
    """Rebind every parameter's (and buffer's) array of ``model`` (built on NumPy) to a
    CountedArray; returns the model. Its optimizer state must be created afterwards."""
    for p in model.parameters():
        p.data = CountedArray(np.asarray(p.data))
        if p.grad is not None:
            p.grad = CountedArray(np.asarray(p.grad))
    for _, b in getattr(model, "named_buffers", lambda: [])():
        b.data = CountedArray(np.asarray(b.data))
    return model
