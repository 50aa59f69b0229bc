"""What a run was trained on, recorded so that evaluation and resume can check it.

A fingerprint holds, per split, the number of samples and SHA-256 digests of
the decoded labels (as little-endian int64) and images (as stored, C order).
It depends on the data, not on how the files are named or compressed, so the
same MNIST in ``.gz`` or raw files gives the same fingerprint, and a folder of
other data (another dataset, a subset, a relative path that now points
elsewhere) gives another one. Hashing the full MNIST takes about 0.1 s.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

SPLITS = ("train", "test")


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def split_facts(images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    return {"n": int(len(labels)),
            "labels_sha256": _digest(np.asarray(labels, dtype="<i8")),
            "images_sha256": _digest(np.asarray(images))}


def fingerprint(data: Any) -> dict[str, Any]:
    """``{"train": facts, "test": facts}`` of a dataset with ``train_images``,
    ``train_labels``, ``test_images`` and ``test_labels``."""
    return {s: split_facts(getattr(data, f"{s}_images"), getattr(data, f"{s}_labels"))
            for s in SPLITS}


def differences(recorded: Any, current: dict[str, Any], splits: tuple[str, ...] = SPLITS
                ) -> list[str]:
    """How ``current`` differs from ``recorded`` for ``splits`` (empty: the same data).

    A recorded fingerprint that is not a dict of the expected form counts as a
    difference (it cannot vouch for anything).
    """
    if not isinstance(recorded, dict):
        return ["no valid data fingerprint was recorded"]
    out = []
    for s in splits:
        rec, cur = recorded.get(s), current[s]
        if not isinstance(rec, dict):
            out.append(f"{s}: nothing recorded")
            continue
        if rec.get("n") != cur["n"]:
            out.append(f"{s}: {rec.get('n')} samples recorded, {cur['n']} found")
            continue
        for key, what in (("labels_sha256", "labels"), ("images_sha256", "images")):
            if rec.get(key) != cur[key]:
                out.append(f"{s}: other {what} (sha256 {str(rec.get(key))[:12]}… recorded, "
                           f"{cur[key][:12]}… found)")
    return out


__all__ = ["differences", "fingerprint", "split_facts"]
