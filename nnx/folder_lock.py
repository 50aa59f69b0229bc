"""An exclusive lock on a folder, held by one process for its lifetime.

:class:`FolderLock` holds ``FOLDER/.nnx.lock`` with an operating-system lock
(``fcntl.flock``; ``msvcrt.locking`` on Windows). The OS drops the lock when the
process ends in any way (``kill -9`` included), so a lock file left behind by a
dead process is stale by construction: it is taken over and reported. A live
holder is named by the pid, host and start time it wrote into the file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path

LOCK_NAME = ".nnx.lock"


class FolderBusyError(Exception):
    """The folder is locked by another live process."""


def _lock_fd(fd: int) -> bool:
    """Try to take an exclusive OS lock on ``fd`` without waiting."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _read_holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""
    return text.splitlines()[0] if text else ""


class FolderLock:
    """An exclusive lock on ``folder`` (the file ``folder/.nnx.lock``) for this process.

    ``acquire()`` raises :class:`FolderBusyError` naming the holder (pid, host,
    start time) when another live process holds it, and OSError naming the folder
    when no lock file can be written there. ``stale`` is the holder
    line of a dead process whose lock file was taken over, or None.
    ``on_acquire(folder)`` runs once the lock is held (e.g. to clean up what a
    dead holder left behind).
    """

    def __init__(self, folder: str | os.PathLike[str],
                 on_acquire: Callable[[Path], None] | None = None) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.stale: str | None = None
        self._on_acquire = on_acquire
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> FolderLock:
        for _ in range(20):  # retried only when a releasing holder unlinked the file meanwhile
            fd = self._open()
            if not _lock_fd(fd):
                os.close(fd)
                holder = _read_holder(self.path) or "a process that has not written its pid yet"
                raise FolderBusyError(f"{self.folder} is in use by another nnx process ({holder})")
            if not self._still_ours(fd):
                os.close(fd)
                continue
            previous = os.read(fd, 4096).decode("utf-8", "replace").strip()
            if previous:
                self.stale = previous.splitlines()[0]
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            line = f"pid {os.getpid()} on {socket.gethostname()}, since {stamp}\n"
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, line.encode())
            self._fd = fd
            if self._on_acquire is not None:
                try:
                    self._on_acquire(self.folder)
                except BaseException:
                    self.release()
                    raise
            return self
        raise FolderBusyError(f"could not lock {self.path}: it keeps being replaced")

    def _open(self) -> int:
        """The lock file, opened without following a link or blocking on a FIFO; OSError
        naming it when it cannot be a lock file (a folder, a link, a FIFO, unwritable)."""
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            if os.path.islink(self.path) or os.path.isdir(self.path):
                raise OSError(exc.errno, f"the lock file {self.path} is a link or a folder, not a "
                                         "file; remove it") from None
            raise OSError(exc.errno, f"cannot write to {self.folder}: "
                                     f"{exc.strerror or exc}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, f"the lock file {self.path} is not a regular file; "
                                        "remove it")
        return fd

    def _still_ours(self, fd: int) -> bool:
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path, follow_symlinks=False))
        except FileNotFoundError:
            return False

    def verify(self) -> None:
        """FolderBusyError when the lock file is no longer the one this process holds (it
        was deleted or replaced by hand: another run may be writing into the folder)."""
        if self._fd is not None and not self._still_ours(self._fd):
            raise FolderBusyError(f"the lock file {self.path} was removed or replaced while this "
                                  "run held it; another run may be writing into "
                                  f"{self.folder}, so this one stops before writing")

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._still_ours(fd):  # never another run's lock that replaced ours
            with contextlib.suppress(OSError):
                os.unlink(self.path)  # while still locked: a waiting opener re-checks the path
        os.close(fd)

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["LOCK_NAME", "FolderBusyError", "FolderLock"]
