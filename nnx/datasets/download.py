"""Fetching a dataset's files into the cache: pinned by SHA-256, mirrors in order, atomic.

The cache folder is ``$NNX_DATA`` when set, else the platform's user cache folder
for nnx (``~/.cache/nnx`` on Linux, ``~/Library/Caches/nnx`` on macOS,
``%LOCALAPPDATA%\\nnx\\nnx\\Cache`` on Windows); each dataset has a subfolder.

A file is downloaded (through pooch, the downloader SciPy and scikit-image use)
under a temporary name in that subfolder, checked against its published size and
SHA-256, and only then renamed to its real name: an interrupted transfer, a
truncated file or a hash mismatch leaves nothing under the real name, and the
error names the file, the expected and the received hash. Mirrors are tried in
order. Files already in the cache are checked against their hash on every use.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

from .registry import DatasetSpec, RemoteFile

ENV = "NNX_DATA"
INSTALL_HINT = "pip install 'nnx-array[datasets]' (or pip install pooch)"


class DownloadError(RuntimeError):
    """A dataset could not be fetched; the message says what to do instead."""


def cache_dir() -> Path:
    """``$NNX_DATA``, else the user cache folder of nnx (see the module docstring)."""
    env = os.environ.get(ENV, "").strip()
    if env:
        return Path(env).expanduser()
    try:
        import platformdirs
    except ImportError:  # comes with pooch; without it, the same rule by hand
        if sys.platform == "darwin":
            return Path.home() / "Library" / "Caches" / "nnx"
        if os.name == "nt":
            base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
            return Path(base) / "nnx" / "nnx" / "Cache"
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nnx"
    return Path(platformdirs.user_cache_dir("nnx"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_verified(path: Path, remote: RemoteFile) -> bool:
    """``path`` exists with the published size and SHA-256."""
    return path.is_file() and path.stat().st_size == remote.size \
        and sha256_of(path) == remote.sha256


def _place_hint(spec: DatasetSpec, folder: Path) -> str:
    names = ", ".join(f.name for f in spec.files)
    return (f"place {names} (from {spec.homepage}) in {folder}, or in any folder and pass "
            "--data DIR (Python: nnx.datasets.load(name, root=DIR))")


def _download_one(pooch: object, url: str, remote: RemoteFile, folder: Path,
                  progress: bool) -> str | None:
    """Download ``url`` as ``remote``; None on success, else why it failed (the real name
    is only ever the verified file)."""
    import requests

    part = f".{remote.name}.{os.getpid()}.part"
    with contextlib.suppress(OSError):
        (folder / part).unlink()  # pooch would take a leftover file for the download
    try:
        downloader = pooch.HTTPDownloader(progressbar=progress, timeout=60)
        pooch.retrieve(url, known_hash=None, fname=part, path=folder, downloader=downloader)
    except (requests.RequestException, OSError) as exc:
        return f"{url}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    tmp = folder / part
    try:
        size = tmp.stat().st_size
        received = sha256_of(tmp)
        if size != remote.size or received != remote.sha256:
            return (f"{url}: {remote.name} does not match its published hash (expected sha256 "
                    f"{remote.sha256}, {remote.size} bytes; received sha256 {received}, {size} "
                    "bytes)")
        os.replace(tmp, folder / remote.name)
        return None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def fetch(spec: DatasetSpec, folder: Path, progress: bool | None = None,
          log: Callable[[str], None] | None = None) -> None:
    """Make ``folder`` hold every file of ``spec``, verified (downloading what is missing).

    Raises DownloadError: pooch missing (how to install it, where to place the files),
    every mirror unreachable (the files to place and the folder), or a hash mismatch
    on every mirror that answered (the file, the expected and the received hash).
    """
    missing = [f for f in spec.files if not is_verified(folder / f.name, f)]
    if not missing:
        return
    try:
        import pooch
    except ImportError:
        raise DownloadError(f"downloading {spec.title} needs pooch: {INSTALL_HINT}; or "
                            f"{_place_hint(spec, folder)}") from None
    pooch.get_logger().setLevel("WARNING")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create the data cache {folder}: {exc.strerror or exc}; set "
                            f"{ENV} to a writable folder") from None
    show = sys.stderr.isatty() if progress is None else progress
    for remote in missing:
        problems = []
        for base in spec.mirrors:
            url = base + remote.name
            if log is not None:
                log(f"downloading {spec.title}: {remote.name} ({remote.size / 1e6:.1f} MB) from "
                    f"{url}")
            problem = _download_one(pooch, url, remote, folder, show)
            if problem is None:
                break
            problems.append(problem)
        else:
            mismatches = [p for p in problems if "does not match" in p]
            if mismatches:
                raise DownloadError(mismatches[-1] + "; nothing was kept")
            raise DownloadError(
                f"could not download {remote.name} of {spec.title} from any mirror (last: "
                f"{problems[-1] if problems else 'no mirrors'}); without a network, "
                f"{_place_hint(spec, folder)}")


__all__ = ["ENV", "DownloadError", "cache_dir", "fetch", "is_verified", "sha256_of"]
