"""Atomic file writes: a temp file in the same folder, fsync, rename, fsync the folder.

A reader sees the old file or the whole new one, never a part; a write that fails
(an exception, a full disk) removes its temp file and leaves the old file as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], binary: bool = True) -> Iterator[IO[Any]]:
    """``with atomic_writer(path) as f: f.write(...)`` replaces ``path`` only on success."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    tmp = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:  # name the file the caller asked for, not our temp file
        raise type(exc)(exc.errno, f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename is None \
                and not str(exc.strerror or "").startswith("cannot write"):
            # a full disk, a vanished folder: name the file, keep the reason
            raise type(exc)(exc.errno, f"cannot write {path}: {exc.strerror}") from None
        raise
    _fsync_dir(folder)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as strict JSON (NaN is not JSON: refused) through :func:`atomic_writer`."""
    with atomic_writer(path, binary=False) as f:
        json.dump(data, f, indent=1, allow_nan=False)
