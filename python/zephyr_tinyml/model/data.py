"""Data stage: any image data set as uint8 images (N×H×W×C) and int labels, checked against the spec.

Where data comes from (``dataset:`` in a spec, or ``--data-dir`` for a model file):

* a Keras built-in set by name (:data:`BUILTIN`): local files first (``--data-dir`` or
  ``$TINYML_DATA_DIR``), so offline machines and CI never touch the network, then Keras' own
  loader, which downloads once and caches in ``~/.keras/datasets``;
* a folder of images, one subfolder per class (:mod:`image_folder`);
* an ``.npz`` with ``x_train, y_train, x_test, y_test``.

Whatever the source, images are brought to the spec's ``input_shape`` (resized, grey or RGB) by the
same code, and every fault names the file and what to do.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .image_folder import load_image_folder
from .spec import Spec

DATA_DIR_ENV = "TINYML_DATA_DIR"
ARRAY_KEYS = ("x_train", "y_train", "x_test", "y_test")

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
# MD5 of the official MNIST distribution files; a mismatch means a truncated or different download.
# Fashion-MNIST uses the same file names (and is not checked by md5, as Keras does not): seeing
# MNIST's exact files for a Fashion-MNIST spec means the wrong folder was given.
IDX_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# Keras' built-in image sets: name -> (keras.datasets module, classes, native shape, local forms).
BUILTIN: dict[str, tuple[str, int, tuple[int, int, int]]] = {
    "mnist": ("mnist", 10, (28, 28, 1)),
    "fashion_mnist": ("fashion_mnist", 10, (28, 28, 1)),
    "cifar10": ("cifar10", 10, (32, 32, 3)),
    "cifar100": ("cifar100", 100, (32, 32, 3)),
}
SUPPORTED = tuple(BUILTIN)
# Class names of the built-in sets, in label order (CIFAR-100's come from its own meta file when present).
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(d) for d in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                      "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}
DISPLAY_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
# The local forms each built-in set is read from, for messages.
LOCAL_FORMS = {
    "mnist": f"{', '.join(IDX_FILES.values())}, or mnist.npz",
    "fashion_mnist": f"{', '.join(IDX_FILES.values())} (Fashion-MNIST's), or fashion_mnist.npz",
    "cifar10": "cifar-10-batches-py/ (the python version of the official archive, unpacked), or cifar10.npz",
    "cifar100": "cifar-100-python/ (the python version of the official archive, unpacked), or cifar100.npz",
}


@dataclass(frozen=True)
class DataSource:
    """What ``dataset:`` names: a built-in set, or a path (image folder or ``.npz``)."""

    name: str | None = None
    path: Path | None = None
    test_split: float = 0.2        # image folders without train/ and test/
    seed: int = 0
    labels: tuple[str, ...] = ()   # given order (empty: folder names sorted, or numbers)
    origin: str = "dataset"        # where it was written, for messages (spec file:line or option)

    def describe(self) -> str:
        return self.name if self.name else str(self.path)

    @classmethod
    def of_spec(cls, spec: Spec) -> DataSource:
        """What a spec's ``dataset:`` names, with the spec's file and line for messages.

        It lives here, not on ``Spec``, so that reading a spec never imports numpy and this stage.
        """
        where = f"{spec.path}:{spec.dataset.line}" if spec.dataset.line else str(spec.path)
        return cls(name=spec.dataset.name or None, path=spec.dataset.path, test_split=spec.dataset.test_split,
                   seed=spec.training.seed, labels=spec.dataset.labels, origin=where)


@dataclass(frozen=True)
class Dataset:
    """Raw images (uint8, N×H×W×C) and labels (uint8 or uint16), plus where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    fingerprint: str  # hash of the array contents: the cache key for everything downstream
    class_names: tuple[str, ...] = field(default=())  # from folder names, when the source has them
    notes: tuple[str, ...] = field(default=())        # what was done to the images (resized, ...)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def normalize(images: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """The spec's input normalization, ``x * scale + offset``, as float32."""
    return images.astype(np.float32) * np.float32(scale) + np.float32(offset)


def load_dataset(source: str | DataSource, input_shape: tuple[int, ...], data_dir: Path | None = None,
                 allow_download: bool = True, classes: int | None = None) -> Dataset:
    """Load ``source`` and bring its images to the model's ``input_shape``.

    ``input_shape`` is [H, W, 1 or 3] (images), [H, W] (grey images whose rows are a sequence: an
    LSTM over the rows) or [N] (images flattened row by row): the images are fitted to the
    [H, W, C] behind it (:func:`image_shape`) and then reshaped, and a note says which mapping was
    used. A built-in name looks in ``data_dir``, then ``$TINYML_DATA_DIR``, then Keras' download
    cache. ``classes`` (the model's outputs) bounds the labels: one out of range is an error naming
    the file.
    """
    if isinstance(source, str):
        source = DataSource(name=source)
    input_shape = tuple(int(d) for d in input_shape)
    image = image_shape(input_shape, None, source.origin) if len(input_shape) != 1 else None
    notes: list[str] = []
    class_names: tuple[str, ...] = ()
    if source.name is not None:
        if source.name not in BUILTIN:
            raise DataError(f"{source.origin}: unknown data set '{source.name}' in 'dataset.name'; built in: "
                            f"{', '.join(SUPPORTED)}. For your own images give 'dataset.path' (a folder with one "
                            f"subfolder per class, or an .npz with x_train, y_train, x_test, y_test).")
        arrays, where = _load_builtin(source.name, data_dir, allow_download)
        class_names = CLASS_NAMES.get(source.name, ())
        if "class_names" in arrays:
            class_names = tuple(str(n) for n in arrays.pop("class_names"))
    else:
        path = Path(source.path).expanduser()  # type: ignore[arg-type]
        if path.suffix == ".npz":
            arrays, where = _read_npz(path), str(path)
        elif path.is_dir():
            image = image or image_shape(input_shape, None, source.origin)
            folder = load_image_folder(path, image, source.test_split, source.seed, source.labels)
            arrays, where, class_names = folder.arrays, str(path), folder.class_names
            notes.extend(folder.notes)
        elif not path.exists():
            raise DataError(f"{source.origin}: 'dataset.path' is {path}, which does not exist. Give a folder "
                            f"of images (one subfolder per class) or an .npz file.")
        else:
            raise DataError(f"{source.origin}: 'dataset.path' is {path}, which is neither a folder nor an .npz "
                            f"file.")
    if "about" in arrays:
        notes.append(f"{where}: {arrays['about']}")
    image = image or image_shape(input_shape, _native_shape(arrays["x_train"]), source.origin)
    x_train, note = fit_images(arrays["x_train"], image, f"{where} (x_train)")
    notes.extend([note] if note else [])
    x_test, _ = fit_images(arrays["x_test"], image, f"{where} (x_test)")
    if image != input_shape:
        x_train, x_test = x_train.reshape((-1,) + input_shape), x_test.reshape((-1,) + input_shape)
        height, width, channels = image
        notes.append(f"model input {list(input_shape)}: " + (
            f"each {width}×{height} grey image is {height} steps of {width} pixels (its rows, top to bottom)"
            if len(input_shape) == 2 else
            f"each {width}×{height}×{channels} image flattened row by row (channels innermost)"))
    y_train = _labels(arrays["y_train"], len(x_train), f"{where} (y_train)", classes)
    y_test = _labels(arrays["y_test"], len(x_test), f"{where} (y_test)", classes)
    digest = hashlib.sha256()
    for array in (x_train, y_train, x_test, y_test):
        digest.update(np.ascontiguousarray(array).tobytes())
    return Dataset(x_train, y_train, x_test, y_test, where, digest.hexdigest(), class_names, tuple(notes))


def image_shape(input_shape: tuple[int, ...], native: tuple[int, int, int] | None,
                origin: str) -> tuple[int, int, int]:
    """The [H, W, C] images that fill a model input of ``input_shape``.

    [H, W, 1 or 3] is itself; [H, W] is grey H×W (the rows as a sequence); [N] is the data's own
    image shape (``native``) when it holds N values, else a square grey, else a square RGB image of
    N values. Anything else cannot be filled from images: a DataError naming the accepted forms.
    """
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 3 and shape[-1] in (1, 3):
        return shape[0], shape[1], shape[2]
    if len(shape) == 2:
        return shape[0], shape[1], 1
    if len(shape) == 1:
        values = shape[0]
        if native is not None and native[0] * native[1] * native[2] == values:
            return native
        for channels in (1, 3):
            side = round((values / channels) ** 0.5)
            if side * side * channels == values:
                return side, side, channels
        raise DataError(f"{origin}: the model's input is flat [{values}], which is no square grey or RGB image "
                        + (f"and not the data's {native[1]}×{native[0]}×{native[2]} images " if native else "")
                        + "; give the model an input of [height, width, channels], or reshape the data to it.")
    raise DataError(f"{origin}: 'dataset.input_shape' is {list(shape)}; image data sets fill a model input of "
                    f"[height, width, channels] with 1 (grey) or 3 (RGB) channels, [height, width] (grey rows "
                    f"as a sequence) or [height*width*channels] (flat).")


def _native_shape(images: np.ndarray) -> tuple[int, int, int] | None:
    """The H, W, C of a loaded image array (N×H×W grey or N×H×W×C); None for another shape."""
    if images.ndim == 3:
        return int(images.shape[1]), int(images.shape[2]), 1
    if images.ndim == 4:
        return int(images.shape[1]), int(images.shape[2]), int(images.shape[3])
    return None


def fit_images(images: np.ndarray, input_shape: tuple[int, ...], where: str) -> tuple[np.ndarray, str]:
    """uint8 N×H×W×C in the spec's shape: channels converted (grey <-> RGB), size changed (bilinear).

    Returns the images and a note of what was changed ('' when nothing was).
    """
    if images.dtype != np.uint8:
        raise DataError(f"{where}: images are {images.dtype}, but the pipeline takes 8-bit pixels (uint8, "
                        f"0-255), as a camera gives them. Convert them (e.g. (x * 255).round().astype('uint8') "
                        f"for [0, 1] floats) and set dataset.normalization to what the model expects.")
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(f"{where}: images have shape {list(images.shape)}; expected N×H×W (grey) or N×H×W×C "
                        f"with C = 1 or 3.")
    height, width, channels = input_shape
    changes = []
    if images.shape[-1] != channels:
        changes.append(f"{'grey -> RGB' if channels == 3 else 'RGB -> grey'}")
        images = to_channels(images, channels)
    if images.shape[1:3] != (height, width):
        changes.append(f"{images.shape[2]}×{images.shape[1]} -> {width}×{height} (bilinear)")
        images = resize(images, height, width)
    return np.ascontiguousarray(images), (f"{where.split(' (')[0]}: " + ", ".join(changes)) if changes else ""


def to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """Grey -> RGB by repeating; RGB -> grey by ITU-R 601 luma, as Pillow's convert('L') does."""
    if channels == 3:
        return np.repeat(images, 3, axis=-1)
    weights = np.array([299, 587, 114], dtype=np.uint32)
    grey = (images.astype(np.uint32) * weights).sum(axis=-1) + 500
    return (grey // 1000).astype(np.uint8)[..., np.newaxis]


def resize(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Each image resized with Pillow's bilinear filter (the default of Keras' image loaders)."""
    from PIL import Image

    out = np.empty((len(images), height, width, images.shape[-1]), dtype=np.uint8)
    for i, image in enumerate(images):
        mode_image = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        resized = np.asarray(mode_image.resize((width, height), Image.Resampling.BILINEAR))
        out[i] = resized.reshape(height, width, -1)
    return out


def _labels(labels: np.ndarray, count: int, where: str, classes: int | None) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]  # CIFAR's (N, 1)
    if labels.ndim != 1 or len(labels) != count:
        raise DataError(f"{where}: {len(labels)} labels of shape {list(labels.shape)} for {count} images; "
                        f"give one integer class index per image.")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where}: labels are {labels.dtype}; give integer class indices (0, 1, ...), not "
                        f"one-hot vectors or names.")
    if labels.size and (labels.min() < 0 or (classes is not None and labels.max() >= classes)):
        bad = int(np.flatnonzero((labels < 0) | (labels >= (classes or 1 << 62)))[0])
        raise DataError(f"{where}: label {int(labels[bad])} at index {bad} is out of range: the model has "
                        f"{classes} classes (0-{(classes or 1) - 1}).")
    return labels.astype(np.uint16 if labels.size and labels.max() > 255 else np.uint8)


def _env_dir() -> Path | None:
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value) if value else None


def _load_builtin(name: str, data_dir: Path | None, allow_download: bool) -> tuple[dict[str, np.ndarray], str]:
    looked: list[str] = []
    for candidate, origin in ((data_dir, "--data-dir"), (_env_dir(), f"${DATA_DIR_ENV}")):
        if candidate is None:
            continue
        candidate = Path(candidate).expanduser()
        if not candidate.is_dir():
            raise DataError(f"{origin} points at '{candidate}', which is not a directory.")
        arrays = _load_local(name, candidate)
        if arrays is not None:
            return arrays, str(candidate)
        looked.append(f"{candidate} ({origin})")
    if allow_download:
        arrays, where = _load_keras(name, looked)
        if arrays is not None:
            return arrays, where
    where = "; ".join(looked) or "nowhere (no --data-dir or $TINYML_DATA_DIR given)"
    raise DataError(
        f"{DISPLAY_NAMES[name]} data not found. Looked in: {where}. Provide a directory holding {LOCAL_FORMS[name]} with "
        f"--data-dir DIR or {DATA_DIR_ENV}=DIR, or let Keras download it (network needed"
        f"{'' if allow_download else '; --offline forbids it'}).")


def _load_local(name: str, folder: Path) -> dict[str, np.ndarray] | None:
    """The local forms of built-in set ``name`` in ``folder``; None if none is there."""
    npz = folder / f"{name}.npz"
    if name in ("mnist", "fashion_mnist"):
        if all((folder / f).is_file() for f in IDX_FILES.values()):
            return _read_idx_set(name, folder)
        present = [f for f in IDX_FILES.values() if (folder / f).is_file()]
        if present and not npz.is_file():
            missing = [f for f in IDX_FILES.values() if f not in present]
            raise DataError(f"{folder} holds only part of {name}: missing {', '.join(missing)}.")
    elif name == "cifar10":
        for root in (folder / "cifar-10-batches-py", folder):
            if (root / "test_batch").is_file():
                return _read_cifar10(root)
    elif name == "cifar100":
        for root in (folder / "cifar-100-python", folder):
            if (root / "test").is_file() and (root / "train").is_file():
                return _read_cifar100(root)
    return _read_npz(npz) if npz.is_file() else None


def _read_idx_set(name: str, folder: Path) -> dict[str, np.ndarray]:
    check = name == "mnist"
    arrays = {key: read_idx(folder / fname, check_md5=check) for key, fname in IDX_FILES.items()}
    if name == "fashion_mnist":
        digest = hashlib.md5((folder / IDX_FILES["x_test"]).read_bytes()).hexdigest()
        if digest == IDX_MD5[IDX_FILES["x_test"]]:
            raise DataError(f"{folder} holds the MNIST digits, not Fashion-MNIST: give the folder with "
                            f"Fashion-MNIST's files (same names), or set dataset.name to mnist.")
    return arrays


def read_idx(path: Path, check_md5: bool = True) -> np.ndarray:
    """Read one (optionally gzipped) IDX file, checking the official MNIST MD5 where known."""
    raw = path.read_bytes()
    expected = IDX_MD5.get(path.name) if check_md5 else None
    if expected and hashlib.md5(raw).hexdigest() != expected:
        raise DataError(f"{path} does not match the official MNIST file (md5 differs): the file is "
                        f"corrupt or truncated. Download it again or remove it.")
    try:
        data = gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError) as exc:
        raise DataError(f"{path} is not a valid gzip file: {exc}.") from None
    if len(data) < 4:
        raise DataError(f"{path} is too short to be an IDX file.")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (magic {data[:4].hex()}).")
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but holds {body.size} bytes; the file is truncated.")
    return body.reshape(dims)


def _unpickle(path: Path) -> dict[Any, Any]:
    try:
        with path.open("rb") as handle:
            return pickle.load(handle, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DataError(f"{path} is not a CIFAR python batch file (unreadable pickle: {exc}); unpack the "
                        f"official 'python version' archive again.") from None


def _cifar_images(batch: dict[Any, Any], path: Path) -> np.ndarray:
    data = np.asarray(batch.get(b"data", batch.get("data")))
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: 'data' has shape {list(data.shape)}, not N×3072 as in CIFAR's python batches.")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.uint8)


def _read_cifar10(root: Path) -> dict[str, np.ndarray]:
    """The official ``cifar-10-batches-py`` folder: data_batch_1..5 and test_batch, as Keras reads it."""
    xs, ys = [], []
    for i in range(1, 6):
        path = root / f"data_batch_{i}"
        if not path.is_file():
            raise DataError(f"{root} lacks {path.name}: unpack the whole cifar-10-python archive.")
        batch = _unpickle(path)
        xs.append(_cifar_images(batch, path))
        ys.append(np.asarray(batch[b"labels"]))
    test = _unpickle(root / "test_batch")
    return {"x_train": np.concatenate(xs), "y_train": np.concatenate(ys),
            "x_test": _cifar_images(test, root / "test_batch"), "y_test": np.asarray(test[b"labels"])}


def _read_cifar100(root: Path) -> dict[str, np.ndarray]:
    """The official ``cifar-100-python`` folder (fine labels, as Keras' default)."""
    train, test = _unpickle(root / "train"), _unpickle(root / "test")
    arrays = {"x_train": _cifar_images(train, root / "train"), "y_train": np.asarray(train[b"fine_labels"]),
              "x_test": _cifar_images(test, root / "test"), "y_test": np.asarray(test[b"fine_labels"])}
    if (root / "meta").is_file():
        names = _unpickle(root / "meta").get(b"fine_label_names", [])
        arrays["class_names"] = np.asarray([n.decode() if isinstance(n, bytes) else str(n) for n in names])
    return arrays


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path} does not exist; give an .npz with {', '.join(ARRAY_KEYS)}.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in ARRAY_KEYS if key not in npz.files]
            if missing:
                raise DataError(f"{path} lacks {', '.join(missing)}; an .npz data set needs "
                                f"{', '.join(ARRAY_KEYS)} (it has {', '.join(npz.files) or 'nothing'}).")
            arrays = {key: npz[key] for key in ARRAY_KEYS}
            if "about" in npz.files:  # a one-line description the maker stored (shown as a note)
                arrays["about"] = np.asarray(str(npz["about"]))
            return arrays
    except (ValueError, OSError) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc}); save it with numpy.savez(path, "
                        f"x_train=..., y_train=..., x_test=..., y_test=...).") from None


def _load_keras(name: str, looked: list[str]) -> tuple[dict[str, np.ndarray] | None, str]:
    """Keras' loader: reads its cache, downloading on first use."""
    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"
    try:
        import keras

        loader = getattr(keras.datasets, BUILTIN[name][0])
        (x_train, y_train), (x_test, y_test) = loader.load_data()
    except Exception as exc:  # no network, proxy, broken cache: all reported with their cause
        looked.append(f"{cache} (Keras download: {type(exc).__name__}: {exc})")
        return None, ""
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}, f"{cache} (Keras)"
