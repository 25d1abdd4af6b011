"""Data sets other than MNIST's IDX files: image folders, .npz, CIFAR's python batches, and their errors.

The images here are real MNIST digits written out as PNG/JPEG/BMP files (so a folder data set is
checked against the very pixels it came from); the CIFAR batches are made-up pixels in the official
file layout, because CIFAR itself cannot be downloaded here: they test the reader, not a model.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from zephyr_tinyml.model.data import DataSource, fit_images, load_dataset
from zephyr_tinyml.errors import DataError


def _write_folder(root: Path, images: np.ndarray, labels: np.ndarray, names: list[str], suffix: str = ".png",
                  mode: str = "L") -> None:
    from PIL import Image

    for i, (image, label) in enumerate(zip(images, labels)):
        folder = root / names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(image[..., 0]).convert(mode)
        picture.save(folder / f"{i:05d}{suffix}")


@pytest.fixture(scope="module")
def digits(mnist):
    """The first 200 training and 100 test digits (every class present in both)."""
    return mnist.x_train[:200], mnist.y_train[:200], mnist.x_test[:100], mnist.y_test[:100]


NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def test_folder_with_train_and_test_reads_exact_pixels_and_sorted_names(tmp_path: Path, digits):
    x_train, y_train, x_test, y_test = digits
    _write_folder(tmp_path / "train", x_train, y_train, NAMES)
    _write_folder(tmp_path / "test", x_test, y_test, NAMES)
    data = load_dataset(DataSource(path=tmp_path), (28, 28, 1))
    assert data.class_names == tuple(sorted(NAMES))           # folder names in sorted order
    assert data.x_train.shape == (200, 28, 28, 1) and data.x_test.shape == (100, 28, 28, 1)
    # Files are read class folder by class folder; PNG is lossless, so every digit comes back exactly.
    order = np.argsort([sorted(NAMES).index(NAMES[int(y)]) for y in y_test], kind="stable")
    assert np.array_equal(data.x_test, x_test[order])
    assert [data.class_names[int(y)] for y in data.y_test] == [NAMES[int(y)] for y in y_test[order]]


def test_given_labels_fix_the_class_order(tmp_path: Path, digits):
    x_train, y_train, x_test, y_test = digits
    _write_folder(tmp_path / "train", x_train, y_train, NAMES)
    _write_folder(tmp_path / "test", x_test, y_test, NAMES)
    data = load_dataset(DataSource(path=tmp_path, labels=tuple(NAMES)), (28, 28, 1))
    assert data.class_names == tuple(NAMES)
    assert sorted(data.y_test.tolist()) == sorted(y_test.tolist())


def test_folder_split_is_seeded_and_per_class(tmp_path: Path, digits):
    x_train, y_train, _, _ = digits
    _write_folder(tmp_path, x_train, y_train, NAMES, suffix=".bmp")
    first = load_dataset(DataSource(path=tmp_path, test_split=0.25, seed=3), (28, 28, 1))
    again = load_dataset(DataSource(path=tmp_path, test_split=0.25, seed=3), (28, 28, 1))
    other = load_dataset(DataSource(path=tmp_path, test_split=0.25, seed=4), (28, 28, 1))
    assert first.fingerprint == again.fingerprint != other.fingerprint
    assert len(first.x_train) + len(first.x_test) == 200
    counts = {name: int(np.sum(y_train == NAMES.index(name))) for name in first.class_names}
    assert np.bincount(first.y_test, minlength=10).tolist() == [max(1, round(counts[n] * 0.25))
                                                                 for n in first.class_names]


def test_folder_rgb_jpeg_resized_to_the_spec(tmp_path: Path, digits):
    x_train, y_train, x_test, y_test = digits
    _write_folder(tmp_path / "train", x_train[:50], y_train[:50], NAMES, suffix=".jpg", mode="RGB")
    _write_folder(tmp_path / "test", x_test[:50], y_test[:50], NAMES, suffix=".jpg", mode="RGB")
    present = sorted({NAMES[int(y)] for y in y_train[:50]} & {NAMES[int(y)] for y in y_test[:50]})
    for side in ("train", "test"):  # keep the classes both sides have
        for folder in (tmp_path / side).iterdir():
            if folder.name not in present:
                for file in folder.iterdir():
                    file.unlink()
                folder.rmdir()
    data = load_dataset(DataSource(path=tmp_path), (32, 32, 3))
    assert data.x_train.shape[1:] == (32, 32, 3) and data.x_train.dtype == np.uint8
    assert np.array_equal(data.x_train[..., 0], data.x_train[..., 2])  # grey JPEG digits stay grey in RGB


def test_corrupt_image_names_the_file(tmp_path: Path, digits):
    x_train, y_train, _, _ = digits
    _write_folder(tmp_path, x_train[:40], y_train[:40], NAMES)
    bad = next((tmp_path / "seven").iterdir())
    bad.write_bytes(bad.read_bytes()[:30])
    with pytest.raises(DataError) as err:
        load_dataset(DataSource(path=tmp_path), (28, 28, 1))
    assert str(bad) in str(err.value) and "not a readable image" in str(err.value)


def test_empty_class_names_the_folder(tmp_path: Path, digits):
    x_train, y_train, _, _ = digits
    _write_folder(tmp_path, x_train[:40], y_train[:40], NAMES)
    (tmp_path / "ten").mkdir()
    with pytest.raises(DataError, match=r"ten: class 'ten' has no images"):
        load_dataset(DataSource(path=tmp_path), (28, 28, 1))


def test_train_and_test_with_different_classes(tmp_path: Path, digits):
    x_train, y_train, x_test, y_test = digits
    _write_folder(tmp_path / "train", x_train, y_train, NAMES)
    _write_folder(tmp_path / "test", x_test[y_test != 3], y_test[y_test != 3], NAMES)
    with pytest.raises(DataError, match="only on one side: three"):
        load_dataset(DataSource(path=tmp_path), (28, 28, 1))


def test_npz_any_size_and_channels(tmp_path: Path):
    rng = np.random.default_rng(0)
    path = tmp_path / "set.npz"
    np.savez(path, x_train=rng.integers(0, 256, (12, 20, 24, 3), dtype=np.uint8), y_train=np.arange(12) % 3,
             x_test=rng.integers(0, 256, (6, 20, 24, 3), dtype=np.uint8), y_test=np.arange(6) % 3,
             about="random pixels")
    data = load_dataset(DataSource(path=path), (16, 16, 1), classes=3)
    assert f"{path}: random pixels" in data.notes                       # the maker's description is shown
    assert data.x_train.shape == (12, 16, 16, 1) and data.y_test.tolist() == [0, 1, 2, 0, 1, 2]
    assert any("RGB -> grey" in note and "24×20 -> 16×16" in note for note in data.notes)


def test_npz_label_out_of_range_names_file_and_index(tmp_path: Path):
    path = tmp_path / "set.npz"
    x = np.zeros((4, 8, 8), dtype=np.uint8)
    np.savez(path, x_train=x, y_train=np.array([0, 1, 2, 1]), x_test=x, y_test=np.array([0, 1, 5, 1]))
    with pytest.raises(DataError) as err:
        load_dataset(DataSource(path=path), (8, 8, 1), classes=3)
    assert f"{path} (y_test): label 5 at index 2 is out of range" in str(err.value)


def test_npz_float_images_and_missing_keys(tmp_path: Path):
    path = tmp_path / "set.npz"
    np.savez(path, x_train=np.zeros((2, 4, 4), np.float32), y_train=[0, 1], x_test=np.zeros((2, 4, 4), np.float32),
             y_test=[0, 1])
    with pytest.raises(DataError, match=r"images are float32.*uint8"):
        load_dataset(DataSource(path=path), (4, 4, 1))
    np.savez(path, x_train=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError, match=r"lacks y_train, x_test, y_test"):
        load_dataset(DataSource(path=path), (4, 4, 1))


def test_rows_as_a_sequence_and_flat_inputs_are_filled_from_the_same_images(mnist_dir: Path, mnist):
    """An LSTM over image rows takes [28, 28]; a dense network [784]: the same pixels, reshaped."""
    rows = load_dataset("mnist", (28, 28), mnist_dir, allow_download=False)
    flat = load_dataset("mnist", (784,), mnist_dir, allow_download=False)
    assert rows.x_test.shape == (10_000, 28, 28) and flat.x_test.shape == (10_000, 784)
    assert np.array_equal(rows.x_test, mnist.x_test[..., 0]) and np.array_equal(flat.x_train.reshape(mnist.x_train.shape),
                                                                                  mnist.x_train)
    assert np.array_equal(rows.y_test, mnist.y_test) and rows.fingerprint == mnist.fingerprint
    assert any("28 steps of 28 pixels" in note for note in rows.notes)
    assert any("flattened row by row" in note for note in flat.notes)


def test_a_flat_input_of_an_image_folder_is_a_square_image(tmp_path: Path, digits):
    x_train, y_train, x_test, y_test = digits
    _write_folder(tmp_path / "train", x_train, y_train, NAMES)
    _write_folder(tmp_path / "test", x_test, y_test, NAMES)
    data = load_dataset(DataSource(path=tmp_path), (14 * 14,))          # 28x28 digits resized to 14x14
    assert data.x_train.shape == (200, 196) and any("14×14×1 image flattened" in n for n in data.notes)
    with pytest.raises(DataError, match=r"flat \[200\], which is no square grey or RGB image"):
        load_dataset(DataSource(path=tmp_path), (200,))


def test_shape_the_pipeline_cannot_take(tmp_path: Path):
    with pytest.raises(DataError, match=r"input_shape' is \[28, 28, 2\].*1 \(grey\) or 3 \(RGB\)"):
        load_dataset(DataSource(path=tmp_path / "x.npz"), (28, 28, 2))
    with pytest.raises(DataError, match=r"shape \[2, 4, 4, 2\]"):
        fit_images(np.zeros((2, 4, 4, 2), np.uint8), (4, 4, 1), "here")


def _cifar_batch(path: Path, count: int, seed: int, key: bytes = b"labels", classes: int = 10) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    batch = {b"data": images.transpose(0, 3, 1, 2).reshape(count, 3072), key: rng.integers(0, classes, count).tolist()}
    path.write_bytes(pickle.dumps(batch))
    return images


def test_cifar10_python_batches(tmp_path: Path):
    """Made-up pixels in the layout of the official cifar-10-python archive (CIFAR is not reachable here)."""
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    first = [_cifar_batch(root / f"data_batch_{i}", 4, i) for i in range(1, 6)][0]
    test = _cifar_batch(root / "test_batch", 3, 9)
    data = load_dataset("cifar10", (32, 32, 3), tmp_path, allow_download=False)
    assert data.class_names[:3] == ("airplane", "automobile", "bird")
    assert data.x_train.shape == (20, 32, 32, 3) and np.array_equal(data.x_train[:4], first)
    assert np.array_equal(data.x_test, test)                   # CHW rows -> HWC images, as Keras gives them
    (root / "data_batch_3").unlink()
    with pytest.raises(DataError, match="lacks data_batch_3"):
        load_dataset("cifar10", (32, 32, 3), tmp_path, allow_download=False)


def test_cifar100_fine_labels(tmp_path: Path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    _cifar_batch(root / "train", 5, 1, b"fine_labels", 100)
    _cifar_batch(root / "test", 2, 2, b"fine_labels", 100)
    (root / "meta").write_bytes(pickle.dumps({b"fine_label_names": [f"class{i}".encode() for i in range(100)]}))
    data = load_dataset("cifar100", (32, 32, 3), tmp_path, allow_download=False)
    assert data.y_train.max() < 100 and len(data.y_test) == 2
    assert data.class_names[:2] == ("class0", "class1") and len(data.class_names) == 100


def test_offline_machine_is_told_what_to_provide(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("TINYML_DATA_DIR", raising=False)
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", (32, 32, 3), tmp_path, allow_download=False)
    text = str(err.value)
    assert str(tmp_path) in text and "cifar-10-batches-py/" in text and "--offline forbids it" in text


def test_unknown_builtin_lists_the_choices():
    with pytest.raises(DataError, match=r"unknown data set 'svhn'.*mnist, fashion_mnist, cifar10, cifar100"):
        load_dataset("svhn", (32, 32, 3), None, allow_download=False)


def test_fashion_mnist_refuses_mnist_files(mnist_dir: Path):
    with pytest.raises(DataError, match="holds the MNIST digits, not Fashion-MNIST"):
        load_dataset("fashion_mnist", (28, 28, 1), mnist_dir, allow_download=False)
