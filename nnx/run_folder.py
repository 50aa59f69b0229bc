"""Where ``nnx train`` writes: choosing, locking and (on request) clearing the out folder.

The rules (README, "Run folders"):

- Without ``--out`` every run gets a new folder ``runs/<YYYYmmdd-HHMMSS>``, and
  ``runs/latest`` points to the newest run that has saved something (it moves when
  the run writes its first checkpoint).
- ``--out DIR`` that already holds a run (checkpoints, history, curves) is
  refused, unless ``--resume`` continues that run or ``--overwrite`` replaces it.
  The old run's files are deleted only when the new run writes its first file (at
  the end of its first epoch), so a new run that fails or is stopped before that
  leaves the old run as it was, and the folder never mixes two runs.
- ``--resume`` with no checkpoint continues ``OUT/last.safetensors`` (without
  ``--out``: the run ``runs/latest`` points to). ``--resume CHECKPOINT`` continues
  in the checkpoint's folder only when it is that folder's ``last.safetensors``
  (resuming an earlier state there would replace the run's later results);
  otherwise it needs a new or empty ``--out``.
- The folder is locked for the run's lifetime: a second run into it refuses,
  naming the holder's pid; before every write the run checks the lock is still its
  own. A folder this run created and left without a single run file (a failed
  start, an interrupt before the first epoch ended) is removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .folder_lock import FolderBusyError, FolderLock

RUNS = Path("runs")
LATEST = "latest"
#: The files a run writes into its folder.
RUN_FILES = ("best.safetensors", "last.safetensors", "history.json", "curves.png")
#: Temp files of nnx's atomic writes (``.NAME.PID.HEX.tmp``), left behind by a killed run.
_TEMP = re.compile(r"^\.(?:" + "|".join(re.escape(n) for n in RUN_FILES) + r")\.\d+\.[0-9a-f]+\.tmp$")


class RunFolderError(Exception):
    """The out folder cannot be used (busy, holds another run, not writable)."""


def run_files(folder: Path) -> list[str]:
    """The names of the run files present in ``folder``."""
    return [name for name in RUN_FILES if (folder / name).exists()]


def holds_run(folder: Path) -> bool:
    return folder.is_dir() and bool(run_files(folder))


def remove_run_files(folder: Path) -> list[str]:
    """Delete the run files (and leftover temp files) in ``folder``; returns the names removed."""
    removed = []
    for name in RUN_FILES:
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
            removed.append(name)
    remove_leftover_temps(folder)
    return removed


def remove_leftover_temps(folder: Path) -> None:
    """Delete temp files of interrupted atomic writes (safe while we hold the lock)."""
    for entry in folder.iterdir():
        if _TEMP.match(entry.name):
            with contextlib.suppress(OSError):
                entry.unlink()


def new_run_folder(parent: str | os.PathLike[str] = "runs") -> Path:
    """Create and return a fresh ``parent/<YYYYmmdd-HHMMSS>[-N]`` folder."""
    parent = Path(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"cannot create the runs folder {parent}: {exc.strerror or exc}") \
            from None
    stem = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        folder = parent / (stem if n == 1 else f"{stem}-{n}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise RunFolderError(f"cannot create a run folder in {parent}: "
                                 f"{exc.strerror or exc}") from None
        return folder
    raise RunFolderError(f"{parent}: no free run folder name for {stem}")


def point_latest(folder: Path) -> str | None:
    """Make ``folder.parent/latest`` a symbolic link to ``folder``.

    Returns None on success, else why it was left alone (a real folder named
    ``latest`` from nnx 0.1, or a file system without symbolic links).
    """
    link = folder.parent / LATEST
    if link.exists() and not link.is_symlink():
        what = "a folder (a run of an earlier nnx?)" if link.is_dir() else "a file"
        return f"{link} is {what}, not a link; left as it is"
    tmp = folder.parent / f".{LATEST}.{os.getpid()}.tmp"
    try:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(folder.name, tmp, target_is_directory=True)
        os.replace(tmp, link)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return f"could not point {link} to {folder.name}: {exc.strerror or exc}"
    return None


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _short(path: Path, room: int = 120) -> str:
    text = str(path)
    return text if len(text) <= room else f"{text[:room // 2]}…{text[-room // 2:]}"


@dataclass
class RunFolder:
    """The out folder of one ``nnx train`` (locked from :func:`open_run_folder` on).

    Pass :meth:`before_write` to the Trainer (``on_write=``): it checks the lock
    before every file, and before the first one clears an ``--overwrite``-n run and
    points ``runs/latest`` here.
    """

    path: Path
    checkpoint: Path | None = None  # the checkpoint --resume continues, if any
    created: bool = False           # this run made the folder
    fresh: bool = False             # a new runs/<timestamp> folder (runs/latest follows it)
    overwrite: bool = False
    lock: FolderLock | None = None
    notes: list[str] = field(default_factory=list)
    log: Callable[[str], None] | None = None
    parent_created: bool = False    # ... and the runs/ folder above it
    _previous_latest: str | None = None
    _pointed: bool = False
    _written: bool = False

    def before_write(self, name: str) -> None:
        """Called before each file of the run is written (RunFolderError stops the run)."""
        if self.lock is not None:
            try:
                self.lock.verify()
            except FolderBusyError as exc:
                raise RunFolderError(str(exc)) from None
        if self._written:
            return
        self._written = True
        if self.overwrite:
            removed = remove_run_files(self.path)
            if removed and self.log is not None:
                self.log(f"--overwrite: removed {', '.join(removed)} of the earlier run in "
                         f"{self.path}")
        if self.fresh:
            link = self.path.parent / LATEST
            with contextlib.suppress(OSError):
                self._previous_latest = os.readlink(link)
            problem = point_latest(self.path)
            self._pointed = problem is None
            if problem is not None and self.log is not None:
                self.log(f"note: {problem}")

    def close(self) -> None:
        """Release the lock; remove the folder if this run created it and wrote nothing."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if not self.created or holds_run(self.path):
            return
        try:
            self.path.rmdir()  # only when empty: never deletes anyone's files
        except OSError:
            return
        if self._pointed:  # runs/latest pointed here: give it back to the previous run
            link = self.path.parent / LATEST
            with contextlib.suppress(OSError):
                link.unlink()
                if self._previous_latest is not None and \
                        (link.parent / self._previous_latest).is_dir():
                    os.symlink(self._previous_latest, link, target_is_directory=True)
        if self.parent_created:  # a refused first run leaves no empty runs/ behind
            with contextlib.suppress(OSError):
                self.path.parent.rmdir()  # only when empty

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_run_folder(out: str | None, resume: str | None, overwrite: bool) -> RunFolder:
    """Choose and lock the out folder for ``--out``/``--resume``/``--overwrite`` (see module doc).

    Raises RunFolderError with the reason and the flag that fixes it.
    """
    if out is not None and not out.strip():
        raise RunFolderError("--out must name a folder, got an empty string")
    if resume is not None and overwrite and out is None:
        raise RunFolderError("--overwrite with --resume would delete the run being resumed; "
                             "leave out --overwrite (or resume into another --out)")
    if resume:  # a checkpoint named: it must exist before anything is created or locked
        if not Path(resume).is_file():
            raise RunFolderError(f"--resume: no checkpoint at {resume}")
    created = fresh = False
    if out is not None:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise RunFolderError(f"--out {_short(path)} is a file, not a folder")
        created = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunFolderError(f"cannot create the out folder {_short(path)} (--out): "
                                 f"{exc.strerror or exc}") from None
    elif resume == "":
        link = RUNS / LATEST
        if not link.is_dir():
            raise RunFolderError(f"--resume: there is no {link} to resume; name the run with "
                                 "--out DIR or give the checkpoint: --resume DIR/last.safetensors")
        path = link.resolve()
    elif resume is not None:
        path = Path(resume).parent
    parent_created = False
    if out is None and resume is None:
        parent_created = not RUNS.exists()
        path, created, fresh = new_run_folder(RUNS), True, True
    run = RunFolder(path, created=created, fresh=fresh, overwrite=overwrite,
                    parent_created=parent_created)
    try:
        try:
            run.lock = FolderLock(path, on_acquire=remove_leftover_temps).acquire()
        except FolderBusyError as exc:
            raise RunFolderError(f"{exc}; wait for it to end, or train into another --out") \
                from None
        except OSError as exc:
            raise RunFolderError(f"the out folder is not usable: {exc.strerror}") from None
        if run.lock.stale:
            run.notes.append(f"took over the stale lock of {path} ({run.lock.stale}, no longer "
                             "running)")
        if resume is not None:
            run.checkpoint = path / "last.safetensors" if resume == "" else Path(resume)
            if not run.checkpoint.is_file():
                raise RunFolderError(f"--resume: no checkpoint at {run.checkpoint}")
        files = run_files(path)
        inside = run.checkpoint is not None and _same_folder(run.checkpoint.parent, path)
        continues = inside and run.checkpoint.name == "last.safetensors"
        if files and inside and overwrite:
            raise RunFolderError(f"--overwrite would delete the run {run.checkpoint} belongs to; "
                                 "resume into another --out")
        if files and inside and not continues:
            raise RunFolderError(
                f"--resume {run.checkpoint}: continuing it in {path} would replace that run's "
                "later results (only its last.safetensors continues in place); resume into a "
                "new folder with --out DIR")
        if files and not inside and not overwrite:
            hint = "continue it with --resume, " if run.checkpoint is None else ""
            raise RunFolderError(
                f"{path} already holds a run ({', '.join(files)}); {hint}replace it with "
                "--overwrite, or train into another --out (without --out every run gets a new "
                f"folder under {RUNS}/)")
    except BaseException:
        run.close()
        raise
    return run


__all__ = ["RunFolder", "RunFolderError", "open_run_folder"]
