"""Atomic writes: all or nothing, and errors that name the file the caller asked for."""

from __future__ import annotations

import json
import math

import pytest

from nnx.atomic import atomic_writer, write_json_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_writer(path) as f:
        f.write(b"new, half written")
        raise RuntimeError("disk full")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_an_unwritable_place_is_named_not_the_temp_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    target = tmp_path / "afile" / "best.safetensors"  # its folder is a file
    with pytest.raises(OSError) as info, atomic_writer(target) as f:
        f.write(b"x")
    assert str(target) in str(info.value) and ".tmp" not in str(info.value)


def test_write_json_atomic_writes_strict_json(tmp_path):
    path = tmp_path / "history.json"
    write_json_atomic(path, {"epochs": [{"epoch": 1, "val_acc": 0.5}], "steps": []})
    assert json.loads(path.read_text()) == {"epochs": [{"epoch": 1, "val_acc": 0.5}], "steps": []}
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]


def test_write_json_atomic_refuses_nan_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "history.json"
    path.write_text('{"old": true}')
    with pytest.raises(ValueError):
        write_json_atomic(path, {"loss": math.nan})  # NaN is not JSON
    assert path.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["history.json"]
