"""CIFAR-10 in its binary version: a folder of ``.bin`` batches, or the ``.tar.gz``.

The binary version (https://www.cs.toronto.edu/~kriz/cifar.html,
``cifar-10-binary.tar.gz``) holds ``data_batch_1.bin`` … ``data_batch_5.bin``
(training) and ``test_batch.bin`` (test) in ``cifar-10-batches-bin/``. Each file
is a run of 3,073-byte records: one label byte (0..9), then 3,072 pixel bytes —
the 1,024 red values of the 32×32 image row by row, then the green, then the blue.

The "python version" of CIFAR-10 is a set of pickles: it is refused with a
message that points to the binary version, because nnx never unpickles files.
Archives are read in memory, member by member; nothing is extracted to disk.

Host-side code: NumPy.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np

RECORD = 3073  # 1 label byte + 3 × 32 × 32 pixel bytes
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILE = "test_batch.bin"
FOLDER = "cifar-10-batches-bin"
ARCHIVE = "cifar-10-binary.tar.gz"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
_PYTHON_HINT = ("CIFAR-10's python version (pickled batches), which nnx never unpickles; use "
                f"the binary version instead ({ARCHIVE} from https://www.cs.toronto.edu/~kriz/"
                "cifar.html, or nnx.datasets.load('cifar10') to download it)")
#: A member larger than this is not a CIFAR-10 batch (the real ones are 30,730,000 bytes).
_MAX_MEMBER = 64 * 1024 * 1024


def parse_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Decode one binary batch: images (N, 3, 32, 32) uint8 and labels (N,) int64.

    Raises ValueError naming ``name`` for a size that is not a whole number of
    3,073-byte records, an empty file, or a label outside 0..9.
    """
    if len(data) == 0:
        raise ValueError(f"{name}: empty file; a CIFAR-10 batch holds 3,073-byte records")
    if len(data) % RECORD:
        raise ValueError(f"{name}: {len(data)} bytes is not a whole number of 3,073-byte CIFAR-10 "
                         f"records ({len(data) // RECORD} records and {len(data) % RECORD} bytes "
                         "over); truncated, or not the binary version")
    rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    labels = rows[:, 0].astype(np.int64)
    if labels.size and int(labels.max()) > 9:
        bad = int(np.argmax(labels > 9))
        raise ValueError(f"{name}: record {bad} has label {int(labels[bad])}, outside 0..9; not a "
                         "CIFAR-10 binary batch")
    images = rows[:, 1:].reshape(-1, 3, 32, 32).copy()
    return images, labels


def _concat(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _from_folder(folder: Path) -> tuple[np.ndarray, ...]:
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for fname in (*TRAIN_FILES, TEST_FILE):
        path = folder / fname
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no such file; CIFAR-10's binary version needs "
                f"{', '.join(TRAIN_FILES)} and {TEST_FILE} in {folder}")
        parts[fname] = parse_batch(path.read_bytes(), str(path))
    train = _concat([parts[f] for f in TRAIN_FILES])
    return (*train, *parts[TEST_FILE])


def _from_archive(path: Path) -> tuple[np.ndarray, ...]:
    wanted = {f"{FOLDER}/{f}": f for f in (*TRAIN_FILES, TEST_FILE)}
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                name = member.name.lstrip("./")
                if name.startswith("cifar-10-batches-py/"):
                    raise ValueError(f"{path}: this archive is {_PYTHON_HINT}")
                if name not in wanted or not member.isfile():
                    continue
                if member.size > _MAX_MEMBER:
                    raise ValueError(f"{path}: {name} is {member.size} bytes, too large for a "
                                     "CIFAR-10 batch")
                f = tar.extractfile(member)
                parts[wanted[name]] = parse_batch(f.read(), f"{path}:{name}")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ValueError(f"{path}: not a readable .tar.gz archive ({type(exc).__name__}: "
                         f"{exc})") from None
    missing = [f for f in (*TRAIN_FILES, TEST_FILE) if f not in parts]
    if missing:
        raise ValueError(f"{path}: the archive lacks {', '.join(f'{FOLDER}/{m}' for m in missing)}"
                         "; not CIFAR-10's binary version")
    train = _concat([parts[f] for f in TRAIN_FILES])
    return (*train, *parts[TEST_FILE])


def read_cifar10(root: str | os.PathLike[str]) -> tuple[np.ndarray, ...]:
    """(train_images, train_labels, test_images, test_labels) of CIFAR-10's binary version.

    ``root`` is a folder holding the ``.bin`` batches, or ``cifar-10-batches-bin/``,
    or ``cifar-10-binary.tar.gz``; or the ``.tar.gz`` archive itself. Images are
    (N, 3, 32, 32) uint8, labels (N,) int64 (50,000 / 10,000 for the real data).
    Raises FileNotFoundError, or ValueError naming the file and the problem (the
    python version is refused, see the module docstring).
    """
    root = Path(root)
    if root.is_file():
        if root.name.endswith((".tar.gz", ".tgz")):
            if "python" in root.name:
                raise ValueError(f"{root}: this is {_PYTHON_HINT}")
            return _from_archive(root)
        raise ValueError(f"{root}: expected a folder of CIFAR-10 binary batches or "
                         f"{ARCHIVE}")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: CIFAR-10 folder does not exist")
    for folder in (root, root / FOLDER):
        if (folder / TRAIN_FILES[0]).is_file():
            return _from_folder(folder)
    if (root / ARCHIVE).is_file():
        return _from_archive(root / ARCHIVE)
    if (root / "data_batch_1").is_file() or (root / "cifar-10-batches-py").is_dir() \
            or (root / "cifar-10-python.tar.gz").is_file():
        raise ValueError(f"{root}: this folder holds {_PYTHON_HINT}")
    raise FileNotFoundError(f"{root}: no CIFAR-10 binary batches ({', '.join(TRAIN_FILES)}, "
                            f"{TEST_FILE}), no {FOLDER}/ and no {ARCHIVE} here")


__all__ = ["ARCHIVE", "CLASSES", "RECORD", "TEST_FILE", "TRAIN_FILES", "parse_batch",
           "read_cifar10"]
