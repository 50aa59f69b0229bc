"""`nnx train --dataset ...` through the real command: CIFAR-10 binary folders, MNIST files
under the dotted naming, and preprocessing recorded for `nnx evaluate`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from clitools import nnx_cli, one_line_error
from test_datasets import IDX, mnist_arrays, write_cifar, write_mnist

import nnx


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cifar") / "cifar-10-batches-bin"
    write_cifar(folder, per_batch=40, n_test=50)
    return folder.parent


def test_cifar10_trains_with_augmentation_and_evaluates(cifar, tmp_path):
    out = tmp_path / "run"
    res = nnx_cli("train", "--dataset", "cifar10", "--data", str(cifar), "--model", "widecnn",
                  "--augment", "--epochs", "1", "--out", str(out), "--backend", "numpy",
                  "--no-progress")
    assert res.returncode == 0, res.stderr + res.stdout
    assert "3×32×32" in res.stdout and "RandomCrop(padding=4)" in res.stdout
    config = nnx.load(out / "best.safetensors").meta["config"]
    assert config["dataset"] == "cifar10" and config["augment"] is True
    assert [t["name"] for t in config["transforms"]["train"]["transforms"]] == \
        ["RandomCrop", "RandomHorizontalFlip", "Normalize"]
    assert [t["name"] for t in config["transforms"]["eval"]["transforms"]] == ["Normalize"]
    assert len(config["transforms"]["eval"]["transforms"][0]["mean"]) == 3
    assert nnx.load(out / "best.safetensors").meta["model_config"]["input_size"] == 32
    best = json.loads((out / "history.json").read_text())["epochs"][0]["val_acc"]
    ev = nnx_cli("evaluate", str(out / "best.safetensors"))
    assert ev.returncode == 0, ev.stderr
    assert f"accuracy: {best:.4f}" in ev.stdout and "(50 held-out images" in ev.stdout


def test_digits_get_crops_but_no_flips(tmp_path):
    folder = write_mnist(tmp_path / "m", mnist_arrays(200, 50))
    res = nnx_cli("train", "--data", str(folder), "--model", "mlp", "--augment", "--epochs", "1",
                  "--out", str(tmp_path / "run"), "--backend", "numpy", "--no-progress")
    assert res.returncode == 0, res.stderr
    names = [t["name"] for t in nnx.load(tmp_path / "run/last.safetensors")
             .meta["config"]["transforms"]["train"]["transforms"]]
    assert names == ["RandomCrop", "Normalize"]


def test_mnist_files_under_the_dotted_naming_uncompressed(tmp_path):
    arrays = mnist_arrays(200, 50)
    folder = write_mnist(tmp_path / "m", arrays, [n.replace("-idx", ".idx", 1) for n in IDX], "")
    res = nnx_cli("train", "--data", str(folder), "--model", "mlp", "--epochs", "1", "--out",
                  str(tmp_path / "run"), "--backend", "numpy", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "200 train / 50 held-out" in res.stdout


def test_a_dataset_folder_of_the_wrong_kind_is_one_line(cifar, tmp_path):
    line = one_line_error(nnx_cli("train", "--dataset", "mnist", "--data", str(cifar),
                                  "--out", str(tmp_path / "run"), "--backend", "numpy"))
    assert "train-images-idx3-ubyte" in line
    line = one_line_error(nnx_cli("train", "--dataset", "sample", "--data", str(cifar),
                                  "--out", str(tmp_path / "run"), "--backend", "numpy"))
    assert "bundled sample" in line
    assert not (tmp_path / "run").exists()


def test_normalisation_is_recorded_and_the_course_recipe_can_turn_it_off(tmp_path):
    res = nnx_cli("train", "--model", "mlp", "--epochs", "1", "--no-normalize", "--out",
                  str(tmp_path / "raw"), "--backend", "numpy", "--no-progress")
    assert res.returncode == 0, res.stderr
    config = nnx.load(tmp_path / "raw/last.safetensors").meta["config"]
    assert config["normalize"] is False and config["transforms"] == {"train": None, "eval": None}
    line = one_line_error(nnx_cli("train", "--resume", "--out", str(tmp_path / "raw"),
                                  "--normalize", "--epochs", "2", "--backend", "numpy"))
    assert "--normalize off there, on here" in line
    np.testing.assert_allclose(nnx.load(tmp_path / "raw/last.safetensors").meta["config"]
                               ["data_facts"]["mean"], [0.13095355392156863], rtol=1e-12)
