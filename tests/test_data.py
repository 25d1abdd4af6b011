"""Data stage: real MNIST files, local formats, and clear errors for missing or corrupt data."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from zephyr_tinyml.model.data import DATA_DIR_ENV, IDX_FILES, load_dataset, read_idx
from zephyr_tinyml.errors import DataError


def test_idx_files_load_with_official_shapes(mnist):
    assert mnist.x_train.shape == (60000, 28, 28, 1) and mnist.x_test.shape == (10000, 28, 28, 1)
    assert mnist.x_train.dtype == np.uint8 and set(np.unique(mnist.y_test)) == set(range(10))
    assert np.bincount(mnist.y_test).tolist()[:3] == [980, 1135, 1032]


def test_npz_gives_the_same_data(tmp_path: Path, mnist):
    np.savez(tmp_path / "mnist.npz", x_train=mnist.x_train[..., 0], y_train=mnist.y_train,
             x_test=mnist.x_test[..., 0], y_test=mnist.y_test)
    again = load_dataset("mnist", (28, 28, 1), tmp_path, allow_download=False)
    assert again.fingerprint == mnist.fingerprint


def test_env_variable_is_used(monkeypatch, mnist_dir: Path, mnist):
    monkeypatch.setenv(DATA_DIR_ENV, str(mnist_dir))
    assert load_dataset("mnist", (28, 28, 1), None, allow_download=False).fingerprint == mnist.fingerprint


def test_missing_data_says_where_it_looked(tmp_path: Path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(DataError) as info:
        load_dataset("mnist", (28, 28, 1), tmp_path, allow_download=False)
    assert str(tmp_path) in str(info.value) and "--data-dir" in str(info.value)
    assert "train-images-idx3-ubyte.gz" in str(info.value)


def test_corrupt_file_is_refused(tmp_path: Path, mnist_dir: Path):
    for name in IDX_FILES.values():
        shutil.copy(mnist_dir / name, tmp_path / name)
    path = tmp_path / IDX_FILES["y_test"]
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="md5 differs"):
        load_dataset("mnist", (28, 28, 1), tmp_path, allow_download=False)


def test_truncated_unknown_idx_file(tmp_path: Path):
    path = tmp_path / "other-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02"))
    with pytest.raises(DataError, match="truncated"):
        read_idx(path)


def test_partial_folder_names_missing_files(tmp_path: Path, mnist_dir: Path):
    shutil.copy(mnist_dir / IDX_FILES["x_test"], tmp_path)
    with pytest.raises(DataError, match="missing train-images"):
        load_dataset("mnist", (28, 28, 1), tmp_path, allow_download=False)


def test_builtin_set_is_brought_to_the_spec_shape(mnist_dir: Path):
    """MNIST for a 32×32 RGB model: grey repeated into RGB, resized bilinearly (Keras' default)."""
    data = load_dataset("mnist", (32, 32, 3), mnist_dir, allow_download=False)
    assert data.x_test.shape == (10000, 32, 32, 3) and data.x_test.dtype == np.uint8
    assert any("grey -> RGB" in note and "28×28 -> 32×32" in note for note in data.notes)
