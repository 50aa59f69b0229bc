"""Public test helpers: run code on every backend and compare with NumPy float64.

Users check their own layers the way nnx checks its own::

    import nnx, nnx.testing as nt

    for spec in nt.backends():
        nt.assert_matches_reference(
            lambda x: MyLayer(dtype=nt.dtype_of(x))(x), x_host, backend=spec, dtype="float32")
    nt.gradcheck(MyLayer(dtype="float64"), x_host)

Tolerances live in :data:`TOLERANCES`, written down once for every test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from . import backends as _backends
from ._array import array_namespace, device, dtype_name
from .backend import use_backend
from .backends import Backend

#: (rtol, atol) by dtype of the computation under test, against a float64 reference.
#: atol is scaled by max(1, max|reference|) so sums of many terms are judged fairly.
TOLERANCES: dict[str, tuple[float, float]] = {
    "float32": (2e-4, 2e-5),
    "float64": (1e-9, 1e-11),
}

#: Every backend spec nnx knows: "name" or "name:device" (one per adapter in
#: ``nnx.backends``).
ALL_BACKEND_SPECS = _backends.KNOWN_BACKENDS


def parse_spec(spec: str) -> tuple[str, str | None]:
    name, _, dev = spec.partition(":")
    return name, (dev or None)


def backend_status(spec: str) -> str | None:
    """None when ``spec`` ("torch", "torch:cuda", "array_api_strict:device1", ...) can run
    here, else the reason it cannot."""
    name, dev = parse_spec(spec)
    if name not in _backends.KNOWN_BACKENDS:
        return f"unknown backend {name!r}"
    reason = _backends.probe(name)
    if reason is None and dev is not None:
        try:
            _backends.create_backend(name, dev)
        except Exception as exc:  # noqa: BLE001 - any failure is the reason
            return str(exc)
    return reason


def requested_specs() -> list[str]:
    """The specs named by ``NNX_TEST_BACKENDS`` (comma separated), else all known ones."""
    env = os.environ.get("NNX_TEST_BACKENDS", "").strip()
    if not env:
        return list(ALL_BACKEND_SPECS)
    return [s.strip() for s in env.split(",") if s.strip()]


def backends() -> list[str]:
    """The backend specs that can run here (restricted by ``NNX_TEST_BACKENDS``)."""
    return [s for s in requested_specs() if backend_status(s) is None]


def make_backend(spec: str | Backend) -> Backend:
    if isinstance(spec, Backend):
        return spec
    name, dev = parse_spec(spec)
    return _backends.create_backend(name, dev)


def dtype_of(x: Any) -> str:
    """``"float32"`` / ``"float64"`` / ... for an array of any backend."""
    return dtype_name(x.dtype)


def tolerance(dtype: str) -> tuple[float, float]:
    return TOLERANCES.get(dtype, TOLERANCES["float32"])


def assert_close(actual: Any, expected: Any, dtype: str | None = None, what: str = "",
                 rtol: float | None = None, atol: float | None = None) -> None:
    """Compare an array of any backend with a host reference using :data:`TOLERANCES`."""
    a = np.asarray(_backends.to_numpy(actual), dtype=np.float64)
    e = np.asarray(_backends.to_numpy(expected), dtype=np.float64)
    if a.shape != e.shape:
        raise AssertionError(f"{what}: shape {a.shape} != expected {e.shape}")
    r, t = tolerance(dtype or dtype_of(actual))
    rtol = r if rtol is None else rtol
    atol = t if atol is None else atol
    finite = e[np.isfinite(e)]
    scale = max(1.0, float(np.max(np.abs(finite)))) if finite.size else 1.0
    np.testing.assert_allclose(a, e, rtol=rtol, atol=atol * scale, err_msg=what)


def _as_tuple(out: Any) -> tuple[Any, ...]:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def check_placement(out: Any, like: Any, dtype: str, what: str = "") -> None:
    """``out`` is an array of the same library and device as ``like``, of ``dtype``."""
    lib_out, lib_like = _backends.array_library(out), _backends.array_library(like)
    if lib_out != lib_like:
        raise AssertionError(f"{what}: result is a {lib_out} array, input was {lib_like}")
    if str(device(out)) != str(device(like)):
        raise AssertionError(f"{what}: result on {device(out)}, input on {device(like)}")
    if dtype_of(out) != dtype:
        raise AssertionError(f"{what}: result dtype {dtype_of(out)}, expected {dtype}")


def assert_matches_reference(fn: Callable[..., Any], *host_inputs: np.ndarray,
                             backend: str | Backend, dtype: str = "float32", seed: int = 0,
                             float_inputs: Sequence[bool] | None = None) -> tuple[Any, ...]:
    """Run ``fn`` on NumPy float64 and on ``backend`` in ``dtype``; compare every output.

    ``fn(*arrays)`` is called inside ``use_backend`` after ``manual_seed(seed)``, so
    a layer it builds gets the same initial weights in both runs (build it with
    ``dtype=dtype_of(x)``). Floating host inputs are cast to ``dtype`` (integer ones,
    such as labels, are kept). Also checks that every output is on the input's
    library and device with the input's dtype, and that inputs are left unmodified.
    Returns the backend outputs.
    """
    be = make_backend(backend)
    ref_be = _backends.create_backend("numpy")

    def run(target: Backend, dt: str) -> tuple[tuple[Any, ...], list[Any]]:
        arrays = []
        for i, a in enumerate(host_inputs):
            a = np.asarray(a)
            is_float = np.issubdtype(a.dtype, np.floating) if float_inputs is None \
                else float_inputs[i]
            arrays.append(target.from_numpy(a.astype(dt) if is_float else a.copy()))
        _backends.manual_seed(seed)
        with use_backend(target):
            out = _as_tuple(fn(*arrays))
        return out, arrays

    expected, _ = run(ref_be, "float64")
    before = [np.array(a, copy=True) for a in host_inputs]
    actual, arrays = run(be, dtype)
    if len(actual) != len(expected):
        raise AssertionError(f"{len(actual)} outputs on {be.name}, {len(expected)} on numpy")
    first_float = next((a for a in arrays if array_namespace(a).isdtype(a.dtype, "real floating")),
                       arrays[0] if arrays else None)
    for i, (a, e) in enumerate(zip(actual, expected)):
        what = f"output {i} on {be.name} ({dtype})"
        if first_float is not None and array_namespace(a).isdtype(a.dtype, "real floating"):
            check_placement(a, first_float, dtype, what)
        assert_close(a, e, dtype, what)
    for i, (a, b) in enumerate(zip(arrays, before)):
        if not np.array_equal(_backends.to_numpy(a), b.astype(_backends.to_numpy(a).dtype)):
            raise AssertionError(f"input {i} was modified on {be.name}")
    return actual


def numeric_grad(f: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences (f(x+eps·e_i) − f(x−eps·e_i)) / 2eps of a scalar
    function of a float64 host array, element by element (``x`` is restored)."""
    grad = np.zeros_like(x)
    flat_x, flat_g = x.reshape(-1), grad.reshape(-1)
    for i in range(flat_x.size):  # test helper: one probe per element is the point
        old = flat_x[i]
        flat_x[i] = old + eps
        up = f(x)
        flat_x[i] = old - eps
        down = f(x)
        flat_x[i] = old
        flat_g[i] = (up - down) / (2 * eps)
    return grad


def gradcheck(module: Any, x: Any, eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-7,
              seed: int = 0, check_params: bool = True) -> None:
    """Central finite differences against ``module.backward`` in float64.

    Uses the scalar L = Σ module(x) ⊙ R for a fixed random R, and checks dL/dx
    and dL/dθ for every parameter θ (values, and that each gradient is a float64
    array of the module's library and device); dL/dθ also as left by
    ``module.backward_params_only`` (the training path, which returns None). The module
    must hold float64 parameters; ``x`` may be a host NumPy array or an array of the module's backend.
    Raises AssertionError naming the first gradient that disagrees.
    """
    params = list(module.named_parameters())
    ref = params[0][1].data if params else None
    if ref is not None and dtype_of(ref) != "float64":
        raise ValueError(f"gradcheck needs a float64 module, {module!r} is {dtype_of(ref)}")
    be = _backends.create_backend("numpy") if ref is None else _place(ref)
    if ref is None and not isinstance(x, np.ndarray):
        be = _place(x)
    x_host = np.array(_backends.to_numpy(x), dtype=np.float64, copy=True)
    module.train()

    def forward(xh: np.ndarray) -> Any:
        return module(be.from_numpy(xh.copy()))

    out = forward(x_host)
    r = np.random.default_rng(seed).standard_normal(tuple(out.shape))
    r_be = be.from_numpy(r)
    out = forward(x_host)
    dx = module.backward(r_be)
    check_placement(dx, r_be, "float64", f"gradcheck: input gradient of {module!r}")
    analytic = {"input": _backends.to_numpy(dx)}
    for name, p in params:
        if p.grad is not None:
            check_placement(p.grad, r_be, "float64", f"gradcheck: {name}.grad of {module!r}")
            analytic[name] = _backends.to_numpy(p.grad)
    # the training path too: backward_params_only must leave the same parameter gradients
    params_only: dict[str, np.ndarray] = {}
    if params:
        for _, p in params:
            p.grad = None
        forward(x_host)
        returned = module.backward_params_only(r_be)
        if returned is not None:
            raise AssertionError(f"gradcheck: {module!r}.backward_params_only returned "
                                 f"{type(returned).__name__}, not None")
        params_only = {name: _backends.to_numpy(p.grad) for name, p in params
                       if p.grad is not None}

    def loss_of_input(xh: np.ndarray) -> float:
        return float(np.sum(_backends.to_numpy(forward(xh)) * r))

    numeric = {"input": numeric_grad(loss_of_input, x_host, eps)}
    if check_params:
        for name, p in params:
            host = np.array(_backends.to_numpy(p.data), dtype=np.float64, copy=True)
            original = p.data

            def loss_of_param(ph: np.ndarray, p: Any = p) -> float:
                p.data = be.from_numpy(ph.copy())
                return float(np.sum(_backends.to_numpy(forward(x_host)) * r))

            numeric[name] = numeric_grad(loss_of_param, host, eps)
            p.data = original
    for name, num in numeric.items():
        if name not in analytic:
            raise AssertionError(f"gradcheck: {name} has no gradient after backward")
        np.testing.assert_allclose(analytic[name], num, rtol=rtol, atol=atol,
                                   err_msg=f"gradcheck: d/d{name} of {module!r}")
        if name != "input":
            if name not in params_only:
                raise AssertionError(f"gradcheck: {name} has no gradient after "
                                     "backward_params_only")
            np.testing.assert_allclose(params_only[name], num, rtol=rtol, atol=atol,
                                       err_msg=f"gradcheck: d/d{name} of {module!r} by "
                                               "backward_params_only")


def _place(x: Any) -> Backend:
    from .module import backend_of

    return backend_of(x)


__all__ = [
    "TOLERANCES",
    "assert_close",
    "assert_matches_reference",
    "backend_status",
    "backends",
    "check_placement",
    "dtype_of",
    "gradcheck",
    "make_backend",
    "numeric_grad",
]
