"""Failure handling: one rank's exception ends the whole job, with its message.

Without this, a rank that raises exits while the others wait forever in their
next collective. :func:`abort` prints ``rank R failed: <message>`` to stderr and
calls ``MPI.COMM_WORLD.Abort``, which the launcher turns into the end of every
rank and a non-zero exit status.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

from ._world import get_world

T = TypeVar("T")
_installed = False


def describe(exc: BaseException) -> str:
    """``"TypeName: message"`` for an exception."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def abort(message: str, code: int = 1) -> NoReturn:
    """Print ``rank R failed: <message>`` to stderr and end every rank with exit ``code``.

    In a single-process world this raises ``SystemExit(code)`` after printing.
    """
    world = get_world()
    print(f"rank {world.rank} failed: {message}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    if world.size > 1:
        world.comm.Abort(code)
    raise SystemExit(code)


def _should_abort(exc: BaseException) -> bool:
    if isinstance(exc, SystemExit):
        return exc.code not in (None, 0)
    return True


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """Context manager: an exception escaping the block aborts the whole job.

    The traceback is printed first, then ``rank R failed: <message>``. In a
    single-process world exceptions pass through unchanged.
    """
    try:
        yield
    except BaseException as exc:
        if get_world().size <= 1 or not _should_abort(exc):
            raise
        traceback.print_exc()
        abort(describe(exc))


def run_guarded(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)`` under :func:`guarded` and return its result."""
    with guarded():
        return fn(*args, **kwargs)


def install_excepthook() -> None:
    """Make an uncaught exception on any rank abort the job (installed by ``init``).

    The previous hook still prints the traceback; then ``rank R failed: ...``
    is printed and the world is aborted. Installing twice has no extra effect.
    """
    global _installed
    if _installed:
        return
    previous = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        previous(exc_type, exc, tb)
        if get_world().size > 1 and _should_abort(exc):
            abort(describe(exc))

    sys.excepthook = hook
    _installed = True
