"""The out folder's lock: exclusive, names its holder, released by the OS when the holder dies."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nnx.folder_lock import LOCK_NAME, FolderBusyError, FolderLock


def test_a_second_lock_on_the_same_folder_is_refused_naming_the_holder(tmp_path):
    first = FolderLock(tmp_path).acquire()
    with pytest.raises(FolderBusyError, match=f"in use by another nnx process \\(pid {os.getpid()}"):
        FolderLock(tmp_path).acquire()
    first.release()
    assert not (tmp_path / LOCK_NAME).exists()
    with FolderLock(tmp_path) as again:
        assert again.held and again.stale is None


def test_the_lock_of_a_dead_process_is_stale_and_taken_over(tmp_path):
    code = ("import os, sys; from nnx.folder_lock import FolderLock; "
            f"FolderLock({str(tmp_path)!r}).acquire(); os._exit(0)")  # dies holding it
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert (tmp_path / LOCK_NAME).read_text().startswith("pid ")
    lock = FolderLock(tmp_path).acquire()
    assert lock.stale is not None and lock.stale.startswith("pid ")
    assert f"pid {os.getpid()} " in (tmp_path / LOCK_NAME).read_text()
    lock.release()


def test_an_unwritable_folder_is_an_os_error_naming_it(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OSError, match="afile"):
        FolderLock(tmp_path / "afile").acquire()


def test_a_failing_on_acquire_releases_the_lock(tmp_path):
    def boom(folder):
        raise RuntimeError("cleanup failed")

    with pytest.raises(RuntimeError):
        FolderLock(tmp_path, on_acquire=boom).acquire()
    FolderLock(tmp_path).acquire().release()  # free again
