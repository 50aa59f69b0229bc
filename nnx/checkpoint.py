"""Checkpoints as safetensors files, through the ``safetensors`` package, with nnx's metadata.

File layout (https://github.com/huggingface/safetensors)::

    8 bytes     little-endian uint64 n: the header's length
    n bytes     UTF-8 JSON: {name: {"dtype": "F32", "shape": [...], "data_offsets": [b, e]},
                             "__metadata__": {str: str}}   (padded with spaces)
    rest        the tensors' raw little-endian bytes; offsets are relative to here,
                contiguous, covering the rest exactly

The ``safetensors`` package, the format's reference implementation, encodes
(``safetensors.numpy.save``) and decodes (``safetensors.deserialize``, what
``safetensors.numpy.load`` calls) the files. Before it decodes a file, nnx reads the
header itself to say in one line what is wrong with a bad one, and to refuse what the
library lets through (duplicate JSON keys): a pickle, a zip (.npz, torch.save), a
truncated or otherwise corrupt file is rejected with a ValueError naming the file and
the problem. Nothing is executed on load. Writes are atomic (the bytes go to a temp
file in the same folder, fsync, ``os.replace``, fsync of the folder), so a failing
write leaves an existing file as it was.

An nnx checkpoint stores the model's ``state_dict`` as ``model.<name>``, the
optimizer's state arrays as ``optimizer.<index>`` (the first, e.g. a momentum buffer)
and ``optimizer.<index>.<slot>`` (others, e.g. Adam's second moment) and, under the
metadata key ``"nnx"``, one JSON string: format, nnx version, model config, dtype, the
backend it was saved from, optimizer and scheduler state (without arrays), the host
and device RNG states and the caller's extra items (epoch, history, config, ...).
Loading goes through NumPy, so any backend can load what any backend saved; files
written by nnx 0.1 (the same format, written by nnx's own encoder) load unchanged.
"""

from __future__ import annotations

import json
import math
import os
import reprlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import backends as _backends
from . import philox
from .atomic import atomic_writer
from .backend import resolve_backend
from .backends import Backend
from .module import Module, backend_of

#: safetensors dtype names -> NumPy dtypes (little-endian). BF16 and FP8 have no NumPy dtype.
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"),
    "U8": np.dtype("u1"), "I8": np.dtype("i1"),
    "U16": np.dtype("<u2"), "I16": np.dtype("<i2"),
    "U32": np.dtype("<u4"), "I32": np.dtype("<i4"),
    "U64": np.dtype("<u8"), "I64": np.dtype("<i8"),
    "F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8"),
}
_NAMES = {(dt.kind, dt.itemsize): name for name, dt in DTYPES.items()}
#: Known to the format but not representable in NumPy (or, C64, not a type nnx reads).
_UNSUPPORTED = {"BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64"}

MAX_HEADER = 100_000_000  # the limit the safetensors library itself enforces
FORMAT = 1
META_KEY = "nnx"
_RESERVED = ("format", "nnx_version", "model_config", "dtype", "backend", "device",
             "optimizer", "scheduler", "rng", "device_rng")

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxstring, _REPR.maxother = 2, 4, 4, 60, 60


def _show(value: Any) -> str:
    """A short one-line repr of a value read from a file (bounded in depth and length)."""
    return _REPR.repr(value)


def _safetensors() -> Any:
    """The ``safetensors`` package (with its NumPy API imported), or an ImportError that
    says how to install it."""
    try:
        import safetensors
        import safetensors.numpy  # noqa: F401 - the API save() uses
    except ImportError:
        raise ImportError("nnx checkpoints need the safetensors package (a dependency of nnx): "
                          "pip install safetensors") from None
    return safetensors


# ---------------------------------------------------------------------------
# low level: safetensors files
# ---------------------------------------------------------------------------
def _dtype_name(name: str, a: np.ndarray) -> str:
    key = (a.dtype.kind, a.dtype.itemsize)
    if key not in _NAMES or a.dtype.kind not in "biuf":
        raise ValueError(f"tensor {name!r}: dtype {a.dtype} cannot be stored in safetensors "
                         f"(supported: {', '.join(DTYPES)})")
    return _NAMES[key]


def _prepare(tensors: Mapping[str, Any], metadata: Mapping[str, str] | None
             ) -> tuple[dict[str, np.ndarray], dict[str, str] | None]:
    """Checked inputs for ``safetensors.numpy.save``: little-endian C-contiguous NumPy
    arrays (0-d kept) and str -> str metadata (None when empty). ValueError naming the
    tensor or the metadata key otherwise (the library would store some of these, e.g. a
    tensor named ``__metadata__``, as an unreadable file)."""
    meta = None
    if metadata:
        bad = [k for k, v in metadata.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise ValueError(f"metadata keys and values must be str; not so for {bad!r}")
        meta = dict(metadata)
    arrays: dict[str, np.ndarray] = {}
    for name, value in tensors.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"invalid tensor name {name!r}")
        a = value if isinstance(value, np.ndarray) else _backends.to_numpy(value)
        a = np.asarray(a)
        code = _dtype_name(name, a)
        arrays[name] = np.asarray(a, dtype=DTYPES[code], order="C")  # little-endian, C order, 0-d kept
    return arrays, meta


def encode(tensors: Mapping[str, Any], metadata: Mapping[str, str] | None = None) -> bytes:
    """The bytes of a safetensors file holding ``tensors`` (name -> array, NumPy or any
    backend) and ``metadata`` (str -> str), encoded by ``safetensors.numpy.save``.

    Raises ValueError for names, dtypes (object, complex, ...) or metadata that cannot
    be stored.
    """
    arrays, meta = _prepare(tensors, metadata)
    return _safetensors().numpy.save(arrays, metadata=meta)


def save_file(path: str | os.PathLike[str], tensors: Mapping[str, Any],
              metadata: Mapping[str, str] | None = None) -> None:
    """Write ``tensors`` (name -> array; NumPy or any backend) as a safetensors file.

    ``metadata`` maps str to str. The bytes come from ``safetensors.numpy.save``
    (:func:`encode`). Atomic: they go to a temp file in the same folder, which is
    flushed, fsynced and renamed over ``path``; on any error the temp file is removed
    and an existing ``path`` is left untouched. Raises ValueError for names, dtypes
    (object, complex, ...) or metadata that cannot be stored (before anything is
    written).
    """
    data = encode(tensors, metadata)
    with atomic_writer(path) as f:
        f.write(data)


def _sniff(head: bytes) -> str | None:
    """A description of a known non-safetensors format from the first bytes."""
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle (e.g. an old torch.save or pickle.dump file), not safetensors; " \
               "nnx never unpickles files"
    if head[:4] == b"PK\x03\x04":
        return "a zip archive (an .npz file or a torch.save file), not safetensors"
    if head[:6] == b"\x93NUMPY":
        return "a NumPy .npy file, not safetensors"
    if head[:2] == b"\x1f\x8b":
        return "gzip-compressed, not a safetensors file"
    if head[:4] == b"\x89HDF":
        return "an HDF5 file, not safetensors"
    return None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r} in the JSON header")
        out[k] = v
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_header(header: Any, data_len: int, bad: Any) -> list[tuple[str, np.dtype, tuple, int, int]]:
    """Validated entries (name, dtype, shape, begin, end) sorted by offset."""
    if not isinstance(header, dict):
        raise bad(f"the header is a JSON {type(header).__name__}, not an object")
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {name!r}: entry must have exactly dtype, shape and data_offsets, "
                      f"got {_show(info)}")
        code, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if code in _UNSUPPORTED:
            raise bad(f"tensor {name!r}: dtype {code} has no NumPy equivalent that nnx reads")
        if code not in DTYPES:
            raise bad(f"tensor {name!r}: unknown dtype {_show(code)}")
        if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
            raise bad(f"tensor {name!r}: shape must be a list of non-negative ints, got {_show(shape)}")
        if not isinstance(offs, list) or len(offs) != 2 or not all(_is_int(o) for o in offs) \
                or not 0 <= offs[0] <= offs[1]:
            raise bad(f"tensor {name!r}: data_offsets must be [begin, end] with "
                      f"0 <= begin <= end, got {_show(offs)}")
        nbytes = math.prod(shape) * DTYPES[code].itemsize
        if offs[1] - offs[0] != nbytes:
            raise bad(f"tensor {name!r}: shape {shape} of {code} needs {nbytes} bytes but "
                      f"data_offsets {offs} span {offs[1] - offs[0]}")
        entries.append((name, DTYPES[code], tuple(shape), offs[0], offs[1]))
    entries.sort(key=lambda e: (e[3], e[4]))
    pos = 0
    for name, _, _, begin, end in entries:
        if begin != pos:
            what = "overlaps the previous tensor" if begin < pos else f"leaves a gap at {pos}"
            raise bad(f"tensor {name!r}: data_offsets start at {begin}, which {what}")
        pos = end
    if pos > data_len:
        raise bad(f"truncated: the header describes {pos} bytes of tensor data, the file holds "
                  f"{data_len}")
    if pos < data_len:
        raise bad(f"{data_len - pos} unexpected bytes after the tensor data")
    return entries


def _check_file(raw: bytes, bad: Any, path: Path
                ) -> tuple[list[tuple[str, np.dtype, tuple, int, int]], dict[str, str]]:
    """nnx's own pass over a file's bytes before the library decodes it: (validated
    entries in offset order, the metadata), or the ValueError ``bad(...)`` saying what is
    wrong (other formats, truncation, the header's JSON, entries, the metadata)."""
    other = _sniff(raw[:8])
    if other is not None:
        raise ValueError(f"{path}: this file is {other}")
    if len(raw) < 8:
        raise bad(f"truncated: {len(raw)} bytes, shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER:
        raise bad(f"header length {n} is implausibly large (limit {MAX_HEADER})")
    if 8 + n > len(raw):
        raise bad(f"truncated: header length {n} but only {len(raw) - 8} bytes follow")
    if n < 2 or raw[8:9] != b"{":
        raise bad("the header does not start with a JSON object '{'")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as exc:
        raise bad(f"the header is not UTF-8 ({exc})") from None
    except ValueError as exc:  # JSONDecodeError and our duplicate-key error
        raise bad(f"the header is not valid JSON ({exc})") from None
    except RecursionError:
        raise bad("the JSON header is nested too deeply to parse") from None
    entries = _parse_header(header, len(raw) - 8 - n, bad)
    meta = header.get("__metadata__", {})
    if meta is None:
        meta = {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise bad("__metadata__ must be an object of str -> str")
    return entries, dict(meta)


def load_file(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read a safetensors file: (name -> NumPy array, metadata str -> str).

    nnx first checks the header (length within the file, UTF-8 JSON object without
    duplicate keys, known dtypes, shape × itemsize == each span, offsets contiguous
    from 0 and covering the data exactly, metadata str -> str); then the
    ``safetensors`` package decodes the file (``safetensors.deserialize``, what
    ``safetensors.numpy.load`` calls; its error, if any, becomes a ValueError naming
    the file). Arrays are writable, in native byte order, in the file's order.
    Raises FileNotFoundError, or ValueError naming the file and the problem (also for
    pickles, zips/.npz and other formats: never unpickles; also for JSON nested too
    deeply to parse).
    """
    path = Path(path)

    def bad(msg: str) -> ValueError:
        return ValueError(f"{path}: not a valid safetensors file: {msg}")

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        raw = f.read()
    entries, meta = _check_file(raw, bad, path)
    st = _safetensors()
    try:
        decoded = dict(st.deserialize(raw))
    except st.SafetensorError as exc:
        raise bad(_one_line(exc)) from None
    tensors = {}
    for name, dt, shape, _, _ in entries:
        info = decoded.pop(name, None)
        if info is None or info["dtype"] != _NAMES[(dt.kind, dt.itemsize)] \
                or tuple(info["shape"]) != shape:
            raise bad(f"tensor {name!r}: the safetensors library reads it differently from its "
                      "header entry")
        a = np.frombuffer(info["data"], dtype=dt).reshape(shape)
        # the library hands out fresh bytearrays: writable already on little-endian hosts
        tensors[name] = a if dt.isnative and a.flags.writeable else a.astype(dt.newbyteorder("="))
    if decoded:
        raise bad(f"the safetensors library reads tensors the header does not list: "
                  f"{_show(sorted(decoded))}")
    return tensors, meta


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:300]


# ---------------------------------------------------------------------------
# high level: nnx checkpoints
# ---------------------------------------------------------------------------
def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    try:
        a = _backends.to_numpy(obj)
    except TypeError:
        raise TypeError(f"checkpoint info: {type(obj).__name__} is not JSON serialisable") \
            from None
    return a.item() if a.ndim == 0 else a.tolist()


def save(path: str | os.PathLike[str], model: Module, optimizer: Any = None,
         scheduler: Any = None, **info: Any) -> None:
    """Save ``model`` (and optionally ``optimizer``, ``scheduler``) atomically to ``path``.

    Tensors: ``model.<param name>`` and ``optimizer.<param index>`` (a parameter's
    first state array, e.g. its momentum buffer) and ``optimizer.<param index>.<slot>``
    (the others, e.g. Adam's ``exp_avg_sq``). Metadata ``"nnx"``: a JSON object with
    ``format``, ``nnx_version``, ``model_config`` (``model.config`` or None), ``dtype``, ``backend``,
    ``device``, ``optimizer`` / ``scheduler`` state (or None), ``rng`` (the host
    generator's state) and the ``info`` items (JSON-serialisable: epoch,
    history, best metric, ...).
    """
    from . import __version__

    if isinstance(path, Module) or not isinstance(model, Module):
        what = "a Module" if isinstance(path, Module) else type(path).__name__
        raise TypeError(f"save(path, model, ...): the path comes first, then the model (got "
                        f"{what} as path and {type(model).__name__} as model; PyTorch's "
                        "torch.save takes them the other way round)")
    clash = sorted(set(info) & set(_RESERVED))
    if clash:
        raise ValueError(f"save: info keys {clash} are reserved for nnx's own metadata")
    state = model.state_dict()
    tensors = {f"model.{k}": _backends.to_numpy(v) for k, v in state.items()}
    first = next(iter(state.values()), None)
    opt_meta = None
    if optimizer is not None:
        opt_state = dict(optimizer.state_dict())
        for i, buf in opt_state.pop("buffers", {}).items():
            tensors[f"optimizer.{i}"] = _backends.to_numpy(buf)
        opt_meta = opt_state
    meta = {
        "format": FORMAT,
        "nnx_version": __version__,
        "model_config": getattr(model, "config", None),
        "dtype": None if first is None else _backends.dtype_name(first.dtype),
        "backend": None if first is None else backend_of(first).name,
        "device": None if first is None else str(backend_of(first).device),
        "optimizer": opt_meta,
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "rng": _backends.get_rng_state(),
        "device_rng": philox.default_generator().state(),
        **info,
    }
    text = json.dumps(meta, default=_json_default)
    save_file(path, tensors, {META_KEY: text})


@dataclass
class Checkpoint:
    """A loaded nnx checkpoint: host NumPy ``tensors`` and the ``meta`` dict.

    ``meta`` holds ``format``, ``nnx_version``, ``model_config``, ``dtype``,
    ``backend``, ``device``, ``optimizer``, ``scheduler``, ``rng`` and the
    ``info`` items given to :func:`save` (``meta["epoch"]``, ...).
    """

    tensors: dict[str, np.ndarray]
    meta: dict[str, Any]
    path: str = field(default="")

    @property
    def model_state(self) -> dict[str, np.ndarray]:
        """Parameter name -> array, for ``model.load_state_dict``."""
        return {k[6:]: v for k, v in self.tensors.items() if k.startswith("model.")}

    @property
    def optimizer_state(self) -> dict[str, Any] | None:
        """The optimizer's ``state_dict`` with its buffers, or None if none was saved."""
        opt = self.meta.get("optimizer")
        if opt is None:
            return None
        buffers = {k[10:]: v for k, v in self.tensors.items() if k.startswith("optimizer.")}
        return {**opt, "buffers": buffers}

    @property
    def scheduler_state(self) -> dict[str, Any] | None:
        return self.meta.get("scheduler")

    def build_model(self, backend: str | Backend | None = None) -> Module:
        """A new model built from ``model_config`` holding the saved weights on ``backend``.

        The host RNG state is left as it was (building draws initial weights).
        """
        from .models import build_model

        cfg = self.meta.get("model_config")
        if not cfg:
            raise ValueError(f"{self.path}: the checkpoint has no model_config; build the model "
                             "yourself and call Checkpoint.restore(model)")
        be = resolve_backend(backend)
        rng = _backends.get_rng_state()
        try:
            model = build_model(cfg, dtype=self.meta.get("dtype") or "float32", backend=be)
        except (TypeError, ValueError, MemoryError) as exc:  # a config this nnx cannot build
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ValueError(f"{self.path}: model_config {_show(cfg)} does not build a model: "
                             f"{first}") from None
        finally:
            _backends.set_rng_state(rng)
        self._with_path(model.load_state_dict, self.model_state)
        return model

    def restore(self, model: Module, optimizer: Any = None, scheduler: Any = None,
                restore_rng: bool = True) -> None:
        """Put the saved weights, optimizer and scheduler state (and RNG state) back.

        Arrays are moved to each parameter's backend and device. Raises
        ValueError when something asked for is not in the checkpoint or does
        not fit (names, shapes, dtypes, optimizer or scheduler type).
        """
        opt_state = self.optimizer_state
        sched_state = self.scheduler_state
        if optimizer is not None and opt_state is None:
            raise ValueError(f"{self.path}: the checkpoint holds no optimizer state")
        if scheduler is not None and sched_state is None:
            raise ValueError(f"{self.path}: the checkpoint holds no scheduler state")
        for obj, st in ((optimizer, opt_state), (scheduler, sched_state)):
            if obj is not None and st.get("type") != type(obj).__name__:
                raise ValueError(f"{self.path}: the checkpoint holds {st.get('type')} state, "
                                 f"not {type(obj).__name__}")
        # check what can be checked before changing anything (no half-restored state)
        if scheduler is not None:
            for key, value in scheduler.config().items():
                if key in sched_state and sched_state[key] != value:
                    raise ValueError(f"{self.path}: the scheduler's {key} is {value!r} here but "
                                     f"{sched_state[key]!r} in the checkpoint")
        # the optimizer's and scheduler's own validation of the saved values (lr, momentum,
        # last_epoch, ...), with the file named
        for obj, st in ((optimizer, opt_state), (scheduler, sched_state)):
            if obj is not None and hasattr(obj, "_checked_state"):
                self._with_path(obj._checked_state, st)
        self._with_path(model.load_state_dict, self.model_state)
        if optimizer is not None:
            self._with_path(optimizer.load_state_dict, opt_state)
        if scheduler is not None:
            self._with_path(scheduler.load_state_dict, sched_state)
        if restore_rng and self.meta.get("rng") is not None:
            _backends.set_rng_state(self.meta["rng"])
        if restore_rng and self.meta.get("device_rng") is not None:
            philox.default_generator().set_state(self.meta["device_rng"])

    def _with_path(self, fn: Any, state: Any) -> Any:
        try:
            return fn(state)
        except ValueError as exc:
            raise ValueError(f"{self.path}: {exc}") from None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_finite(v: Any) -> bool:
    return _is_number(v) and math.isfinite(v)


def _check_meta(meta: dict[str, Any], path: str) -> None:
    """ValueError(f"{path}: ...") naming the key path when the metadata nnx reads (its own
    keys, and the Trainer's ``trainer``, ``history`` and ``config`` when present) is not
    of the structure nnx writes. Other keys (the caller's info) are not looked at."""

    def need(ok: bool, key: str, what: str, value: Any) -> None:
        if not ok:
            raise ValueError(f"{path}: invalid nnx metadata: {key} must be {what}, got "
                             f"{_show(value)}")

    def check(obj: dict[str, Any], prefix: str, spec: dict[str, tuple[Any, str]],
              required: tuple[str, ...] = ()) -> None:
        for key, (ok, what) in spec.items():
            if key in obj:
                need(ok(obj[key]), f"{prefix}{key}", what, obj[key])
        for key in required:
            if key not in obj:
                raise ValueError(f"{path}: invalid nnx metadata: {prefix}{key} is missing")

    def opt_str(v: Any) -> bool:
        return v is None or isinstance(v, str)

    def count(v: Any) -> bool:
        return _is_int(v) and v >= 0

    def list_of_objects(v: Any) -> bool:
        return isinstance(v, list) and all(isinstance(r, dict) for r in v)

    check(meta, "", {
        "nnx_version": (opt_str, "a str or null"),
        "model_config": (lambda v: v is None or isinstance(v, dict), "an object or null"),
        "dtype": (lambda v: v in (None, "float32", "float64"), "'float32', 'float64' or null"),
        "backend": (opt_str, "a str or null"),
        "device": (opt_str, "a str or null"),
        "optimizer": (lambda v: v is None or isinstance(v, dict), "an object or null"),
        "scheduler": (lambda v: v is None or isinstance(v, dict), "an object or null"),
        "rng": (lambda v: v is None or isinstance(v, dict), "an object or null"),
        "device_rng": (lambda v: v is None or (isinstance(v, dict) and set(v) <= {
            "seed", "counter", "stream"} and all(_is_int(x) and 0 <= x < 2**63
                                                 for x in v.values())),
                       "an object of ints in [0, 2**63): seed, counter, stream"),
        "trainer": (lambda v: v is None or isinstance(v, dict), "an object or null"),
        "history": (lambda v: v is None or isinstance(v, dict), "an object or null"),
        "config": (lambda v: v is None or isinstance(v, dict), "an object or null"),
    })
    opt = meta.get("optimizer")
    if opt is not None:
        check(opt, "optimizer.", {
            "type": (lambda v: isinstance(v, str), "a str"),
            "hyperparameters": (lambda v: isinstance(v, dict), "an object"),
            "step_count": (count, "an int >= 0"),
        }, required=("type", "hyperparameters", "step_count"))
        settings = [("optimizer.hyperparameters", opt["hyperparameters"])]
        groups = opt.get("param_groups")
        if groups is not None:
            need(list_of_objects(groups), "optimizer.param_groups", "a list of objects", groups)
            settings += [(f"optimizer.param_groups.{i}", g) for i, g in enumerate(groups)]
        for where, values in settings:
            for key, value in values.items():
                name = key if key.isidentifier() else _show(key)  # one line, even for odd keys
                if key == "params":
                    need(isinstance(value, list) and all(count(v) for v in value),
                         f"{where}.params", "a list of parameter indices", value)
                    continue
                ok = isinstance(value, (int, float)) or (
                    isinstance(value, list) and all(_is_number(v) for v in value))
                need(ok, f"{where}.{name}", "a number, a bool or a list of numbers", value)
    sched = meta.get("scheduler")
    if sched is not None:
        check(sched, "scheduler.", {
            "type": (lambda v: isinstance(v, str), "a str"),
            "last_epoch": (count, "an int >= 0"),
            "base_lrs": (lambda v: isinstance(v, list) and all(_is_number(x) for x in v),
                         "a list of numbers"),
        }, required=("type", "last_epoch", "base_lrs"))
    rng = meta.get("rng")
    if rng is not None:
        check(rng, "rng.", {
            "bit_generator": (lambda v: v == "PCG64", "'PCG64'"),
            "state": (lambda v: isinstance(v, dict) and set(v) == {"state", "inc"}
                      and all(_is_int(x) and 0 <= x < 2**128 for x in v.values()),
                      "an object of two ints in [0, 2**128): state and inc"),
            "has_uint32": (lambda v: _is_int(v) and v in (0, 1), "0 or 1"),
            "uinteger": (lambda v: _is_int(v) and 0 <= v < 2**32, "an int in [0, 2**32)"),
        }, required=("bit_generator", "state", "has_uint32", "uinteger"))
    trainer = meta.get("trainer")
    if trainer is not None:
        check(trainer, "trainer.", {
            "epoch": (count, "an int >= 0"),
            "step_in_epoch": (count, "an int >= 0"),
            "global_step": (count, "an int >= 0"),
            "best_epoch": (lambda v: v is None or count(v), "an int >= 0 or null"),
            "best_val_acc": (lambda v: v is None or _is_finite(v), "a finite number or null"),
            "partial": (lambda v: v is None or isinstance(v, dict), "an object or null"),
            "scheduler_interval": (lambda v: v in ("epoch", "step"), "'epoch' or 'step'"),
        })
        partial = trainer.get("partial")
        if partial:  # resume uses an empty or null partial as "nothing yet"
            check(partial, "trainer.partial.", {
                "loss_sum": (_is_finite, "a finite number"),
                "correct": (lambda v: count(v) and v < 2**63, "an int in [0, 2**63)"),
                "count": (lambda v: count(v) and v < 2**63, "an int in [0, 2**63)"),
                "lr": (_is_finite, "a finite number"),
            }, required=("loss_sum", "correct", "count"))
    history = meta.get("history")
    if history is not None:
        check(history, "history.", {
            "epochs": (list_of_objects, "a list of objects"),
            "steps": (list_of_objects, "a list of objects"),
        })


def load(path: str | os.PathLike[str]) -> Checkpoint:
    """Read an nnx checkpoint (arrays on the host; nothing executed).

    Raises FileNotFoundError, or ValueError naming the file for a file that is
    not a valid safetensors file, carries no nnx metadata of a known format, or
    whose metadata is not of the structure nnx writes (the message names the key,
    e.g. ``trainer.epoch must be an int >= 0, got 'abc'``): ``model_config`` an
    object or null; ``dtype`` "float32", "float64" or null; ``optimizer`` null or
    {type: str, hyperparameters: {str: number or bool}, step_count: int >= 0};
    ``scheduler`` null or {type: str, last_epoch: int >= 0, base_lrs: [number, ...]};
    ``rng`` null or a PCG64 state; and, when present, the Trainer's ``trainer``
    (int epoch, step_in_epoch, global_step >= 0; best_epoch int or null;
    best_val_acc number or null; partial an object; scheduler_interval "epoch"
    or "step"), ``history`` (``epochs`` and ``steps`` lists of objects) and
    ``config`` (an object).
    """
    tensors, metadata = load_file(path)
    if META_KEY not in metadata:
        raise ValueError(f"{path}: a safetensors file, but not an nnx checkpoint (no "
                         f"{META_KEY!r} metadata); read its arrays with nnx.checkpoint.load_file")
    try:
        meta = json.loads(metadata[META_KEY])
    except ValueError as exc:
        raise ValueError(f"{path}: the nnx metadata is not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError(f"{path}: the nnx metadata JSON is nested too deeply to parse") \
            from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: the nnx metadata is a JSON {type(meta).__name__}, not an "
                         "object")
    fmt = meta.get("format")
    if not _is_int(fmt) or fmt != FORMAT:
        raise ValueError(f"{path}: nnx checkpoint format {_show(fmt)} is not supported (this nnx "
                         f"reads format {FORMAT}); upgrade nnx")
    _check_meta(meta, str(path))
    return Checkpoint(tensors, meta, str(path))


def load_model(path: str | os.PathLike[str], backend: str | Backend | None = None) -> Module:
    """Rebuild the model saved in ``path`` from its config, with its weights, on ``backend``
    (default: the active backend)."""
    return load(path).build_model(backend)


__all__ = ["Checkpoint", "encode", "load", "load_file", "load_model", "save", "save_file"]
