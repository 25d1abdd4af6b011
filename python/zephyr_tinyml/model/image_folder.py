"""A folder of images, one subfolder per class: the layout ``keras.utils.image_dataset_from_directory`` reads.

Either ``root/train/<class>/*`` and ``root/test/<class>/*``, or ``root/<class>/*`` split by a seeded,
per-class fraction (every class keeps the same share in the test set).  PNG, JPEG and BMP files are
read with Pillow, converted to grey or RGB as the spec's ``input_shape`` says and resized to it with the
bilinear filter (Keras' default).  Other files are ignored, as Keras does.  A corrupt image, an empty
class or a class missing from one side is an error naming the file or folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


@dataclass(frozen=True)
class ImageFolder:
    """Arrays as :func:`data.load_dataset` takes them, with the class names in index order."""

    arrays: dict[str, np.ndarray]
    class_names: tuple[str, ...]
    notes: tuple[str, ...]


def _class_dirs(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image(path: Path, input_shape: tuple[int, ...]) -> np.ndarray:
    """One image as uint8 H×W×C in ``input_shape``; a file Pillow cannot decode is a DataError naming it."""
    from PIL import Image, UnidentifiedImageError

    height, width, channels = input_shape
    try:
        with Image.open(path) as image:
            image.load()
            converted = image.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: not a readable image ({exc}). Replace or delete the file.") from None
    if converted.size != (width, height):
        converted = converted.resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(converted, dtype=np.uint8).reshape(height, width, channels)


def _index_classes(names: list[str], labels: tuple[str, ...], root: Path) -> dict[str, int]:
    if not labels:
        return {name: i for i, name in enumerate(sorted(names))}
    unknown = [n for n in names if n not in labels]
    if unknown:
        raise DataError(f"{root}: class folder(s) {', '.join(unknown)} are not in 'dataset.labels' "
                        f"({', '.join(labels)}); add them there or remove the folders.")
    return {name: labels.index(name) for name in names}


def _read_split(folder: Path, index: dict[str, int], input_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for class_dir in _class_dirs(folder):
        files = _images(class_dir)
        if not files:
            raise DataError(f"{class_dir}: class '{class_dir.name}' has no images ({', '.join(IMAGE_SUFFIXES)}); "
                            f"add some or remove the folder.")
        for path in files:
            xs.append(read_image(path, input_shape))
            ys.append(index[class_dir.name])
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def load_image_folder(root: Path, input_shape: tuple[int, ...], test_split: float, seed: int,
                      labels: tuple[str, ...] = ()) -> ImageFolder:
    """Read ``root`` (see the module docstring)."""
    root = Path(root)
    height, width, channels = input_shape
    note = (f"{root}: images read as {'grey' if channels == 1 else 'RGB'} and resized to {width}×{height} "
            f"where needed")
    if (root / "train").is_dir() and (root / "test").is_dir():
        train_classes = [p.name for p in _class_dirs(root / "train")]
        test_classes = [p.name for p in _class_dirs(root / "test")]
        if not train_classes:
            raise DataError(f"{root / 'train'} has no class subfolders; put each class's images in "
                            f"train/<class>/.")
        if set(train_classes) != set(test_classes):
            only = sorted(set(train_classes) ^ set(test_classes))
            raise DataError(f"{root}: train/ and test/ must have the same class folders; only on one side: "
                            f"{', '.join(only)}.")
        index = _index_classes(train_classes, labels, root)
        x_train, y_train = _read_split(root / "train", index, input_shape)
        x_test, y_test = _read_split(root / "test", index, input_shape)
    else:
        classes = [p.name for p in _class_dirs(root)]
        if not classes:
            raise DataError(f"{root} has no class subfolders: put each class's images in {root}/<class>/ "
                            f"(or in train/<class>/ and test/<class>/).")
        if not 0 < test_split < 1:
            raise DataError(f"{root} has no train/ and test/ folders, so 'dataset.test_split' must be a fraction "
                            f"in (0, 1); got {test_split}.")
        index = _index_classes(classes, labels, root)
        x_all, y_all = _read_split(root, index, input_shape)
        rng = np.random.default_rng(seed)
        test = np.zeros(len(y_all), dtype=bool)
        for cls in np.unique(y_all):
            members = np.flatnonzero(y_all == cls)
            take = max(1, int(round(len(members) * test_split)))
            if take >= len(members):
                raise DataError(f"{root / classes[list(index.values()).index(int(cls))]}: too few images "
                                f"({len(members)}) to keep some for training after a {test_split:g} test split.")
            test[rng.choice(members, size=take, replace=False)] = True
        x_train, y_train, x_test, y_test = x_all[~test], y_all[~test], x_all[test], y_all[test]
        note += f"; split {1 - test_split:g}/{test_split:g} per class with seed {seed}"
    names = [""] * (max(index.values()) + 1)
    for name, i in index.items():
        names[i] = name
    if labels:
        names = list(labels)
    return ImageFolder({"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test},
                       tuple(names), (note,))
