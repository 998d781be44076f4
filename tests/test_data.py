"""convlib.data: finds CIFAR-10 in either format, and says how to get it when it is missing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convlib import data


def _fake_jpeg_tree(root: Path, per_class: int = 2) -> None:
    rng = np.random.default_rng(0)
    for name in data.CIFAR10_CLASSES:
        d = root / "cifar10-jpg" / "test" / name
        d.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / f"{i:04d}.jpg")


def test_finds_jpeg_tree_via_root(tmp_path):
    _fake_jpeg_tree(tmp_path)
    src = data.find_cifar10(tmp_path)
    assert src.kind == "jpeg" and src.root == tmp_path
    ds = data.cifar10(root=tmp_path)
    assert len(ds) == 20
    x, label = ds[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert -1.0 <= x.min() and x.max() <= 1.0  # normalised to [-1, 1]
    assert label == 1  # sorted folders: airplane 0, 1 -> automobile 2, 3
    assert ds.source == src


def test_finds_jpeg_tree_via_environment(tmp_path, monkeypatch):
    _fake_jpeg_tree(tmp_path)
    monkeypatch.setenv("CONVLIB_DATA", str(tmp_path))
    assert data.find_cifar10().root == tmp_path


def test_torchvision_copy_wins_over_jpeg(tmp_path):
    _fake_jpeg_tree(tmp_path)
    (tmp_path / "cifar-10-batches-py").mkdir()
    assert data.find_cifar10(tmp_path).kind == "torchvision"


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(data.DataNotFoundError) as err:
        data.find_cifar10(tmp_path)
    msg = str(err.value)
    assert "make data" in msg and "CONVLIB_DATA" in msg and str(tmp_path) in msg
    assert isinstance(err.value, FileNotFoundError)


def test_training_split_needs_torchvision_copy(tmp_path):
    _fake_jpeg_tree(tmp_path)
    with pytest.raises(data.DataNotFoundError, match="training split"):
        data.find_cifar10(tmp_path, train=True)


def test_wrong_class_folders_rejected(tmp_path):
    (tmp_path / "cifar10-jpg" / "test" / "cats").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(tmp_path / "cifar10-jpg" / "test" / "cats" / "0.jpg")
    with pytest.raises(ValueError, match="expected CIFAR-10's"):
        data.cifar10(root=tmp_path)


@pytest.mark.skipif(not os.environ.get("CONVLIB_DATA"), reason="CONVLIB_DATA not set (CI sets it)")
def test_real_test_split_loads():
    ds = data.cifar10()
    assert len(ds) == 10_000
    x, label = ds[0]
    assert x.shape == (3, 32, 32) and 0 <= label < 10
