"""The IDX file format of MNIST: reading with strict validation, and writing.

An IDX file is a 4-byte magic number ``0x0000TTDD`` (TT: the element type, DD:
the number of dimensions), DD big-endian uint32 sizes, then the elements in
row-major order, big-endian. MNIST's images are ``0x00000803`` (uint8, 3-D:
N×28×28) and its labels ``0x00000801`` (uint8, 1-D: N). Files ending in
``.gz`` are gunzipped transparently.

Host-side code: NumPy only, the whole file is read into memory (MNIST's largest
file is 47 MB).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

#: IDX element-type byte -> NumPy dtype (big-endian, as the format stores them).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {(dt.kind, dt.itemsize): code for code, dt in IDX_DTYPES.items()}


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when the name ends in ``.gz``."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise ValueError(f"{path}: not a valid gzip file ({type(exc).__name__}: {exc})") from None


def parse_idx(data: bytes, name: str = "<bytes>", ndim: int | None = None,
              dtype: str | None = None) -> np.ndarray:
    """Decode IDX ``data``; ``name`` is used in error messages.

    ``ndim`` / ``dtype`` (e.g. ``3`` and ``"uint8"``), when given, must match
    the header. The data size must be exactly what the header announces.
    Returns a native-byte-order array of the header's shape.
    """
    if len(data) < 4:
        raise ValueError(f"{name}: truncated IDX file: {len(data)} bytes, too short for the "
                         "4-byte magic number")
    zero, code, nd = struct.unpack(">HBB", data[:4])
    magic = int.from_bytes(data[:4], "big")
    if zero != 0 or code not in IDX_DTYPES:
        raise ValueError(f"{name}: bad IDX magic number 0x{magic:08X} (expected 0x0000TTDD with "
                         f"type byte TT in {', '.join(f'0x{c:02X}' for c in IDX_DTYPES)}); "
                         "not an IDX file")
    if ndim is not None and nd != ndim:
        raise ValueError(f"{name}: IDX magic 0x{magic:08X} announces {nd} dimensions, expected "
                         f"{ndim} (magic 0x{(code << 8) | ndim:08X})")
    elem = IDX_DTYPES[code]
    if dtype is not None and elem.newbyteorder("=") != np.dtype(dtype):
        raise ValueError(f"{name}: IDX type byte 0x{code:02X} means {elem.newbyteorder('=').name}, "
                         f"expected {np.dtype(dtype).name}")
    header = 4 + 4 * nd
    if len(data) < header:
        raise ValueError(f"{name}: truncated IDX file: {len(data)} bytes, the header of a "
                         f"{nd}-D file needs {header}")
    shape = struct.unpack(f">{nd}I", data[4:header])
    expected = int(np.prod(shape, dtype=np.int64)) * elem.itemsize
    found = len(data) - header
    if found < expected:
        raise ValueError(f"{name}: truncated IDX file: dimensions {shape} need {expected} bytes "
                         f"of data, found {found}")
    if found > expected:
        raise ValueError(f"{name}: IDX file has {found - expected} unexpected trailing bytes after "
                         f"the {expected} bytes of data for dimensions {shape}")
    arr = np.frombuffer(data, dtype=elem, offset=header).reshape(shape)
    return arr.astype(elem.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike[str], ndim: int | None = None,
             dtype: str | None = None) -> np.ndarray:
    """Read an IDX file (raw, or gzipped when the name ends in ``.gz``).

    Raises FileNotFoundError for a missing file and ValueError naming the file
    and the problem for a bad gzip stream, a wrong magic number, a dimension
    count or element type other than ``ndim`` / ``dtype``, or a size that does
    not match the header (truncated file or trailing bytes).
    """
    path = Path(path)
    return parse_idx(_read_bytes(path), str(path), ndim=ndim, dtype=dtype)


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array`` (uint8, int8, int16, int32, float32 or float64)."""
    a = np.asarray(array)
    code = _CODES.get((a.dtype.kind if a.dtype.kind != "u" or a.itemsize == 1 else "?",
                       a.dtype.itemsize))
    if code is None or a.ndim > 255:
        raise ValueError(f"encode_idx: cannot store dtype {a.dtype} (IDX holds uint8, int8, int16, "
                         "int32, float32, float64)")
    if any(s >= 2**32 for s in a.shape):
        raise ValueError(f"encode_idx: dimension too large for IDX: {a.shape}")
    header = struct.pack(">HBB", 0, code, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape)
    return header + np.ascontiguousarray(a, dtype=IDX_DTYPES[code]).tobytes()


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``.

    The gzip header carries no time stamp, so equal arrays give equal files.
    """
    path = Path(path)
    data = encode_idx(array)
    if path.suffix == ".gz":
        with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                    mtime=0, compresslevel=9) as f:
            f.write(data)
    else:
        path.write_bytes(data)


__all__ = ["IDX_DTYPES", "encode_idx", "parse_idx", "read_idx", "write_idx"]
