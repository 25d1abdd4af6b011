"""Data stage: load a data set as uint8 images and int labels, from local files or Keras' cache.

Local files come first so that offline machines and CI never touch the network: a directory given
with ``--data-dir`` or ``$TINYML_DATA_DIR`` holding the four official IDX ``.gz`` files or an
``mnist.npz``.  Without one, Keras' own loader downloads and caches the data (``~/.keras/datasets``).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError

DATA_DIR_ENV = "TINYML_DATA_DIR"

IDX_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
# MD5 of the official MNIST distribution files; a mismatch means a truncated or different download.
IDX_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
SUPPORTED = ("mnist",)


@dataclass(frozen=True)
class Dataset:
    """Raw images (uint8, N×H×W×C) and labels (uint8), plus where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    fingerprint: str  # hash of the array contents: the cache key for everything downstream

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def normalize(images: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """The spec's input normalization, ``x * scale + offset``, as float32."""
    return images.astype(np.float32) * np.float32(scale) + np.float32(offset)


def load_dataset(name: str, input_shape: tuple[int, ...], data_dir: Path | None = None,
                 allow_download: bool = True) -> Dataset:
    """Load data set ``name`` and check it against the spec's ``input_shape``.

    Looks in ``data_dir``, then ``$TINYML_DATA_DIR``, then Keras' download cache.
    """
    if name not in SUPPORTED:
        raise DataError(f"unknown data set '{name}' in 'dataset.name'; supported: {', '.join(SUPPORTED)}.")
    looked: list[str] = []
    arrays: dict[str, np.ndarray] | None = None
    source = ""
    for candidate, origin in ((data_dir, "--data-dir"), (_env_dir(), f"${DATA_DIR_ENV}")):
        if candidate is None:
            continue
        candidate = Path(candidate).expanduser()
        if not candidate.is_dir():
            raise DataError(f"{origin} points at '{candidate}', which is not a directory.")
        arrays = _load_local(candidate)
        if arrays is not None:
            source = str(candidate)
            break
        looked.append(f"{candidate} ({origin})")
    if arrays is None and allow_download:
        arrays, source = _load_keras(looked)
    if arrays is None:
        where = "; ".join(looked) or "nowhere (no --data-dir or $TINYML_DATA_DIR given)"
        raise DataError(
            f"MNIST data not found. Looked in: {where}. Provide a directory holding "
            f"{', '.join(IDX_FILES.values())} or mnist.npz with --data-dir DIR or "
            f"{DATA_DIR_ENV}=DIR, or allow Keras to download it (network needed).")
    x_train = _with_channels(arrays["x_train"], input_shape, source)
    x_test = _with_channels(arrays["x_test"], input_shape, source)
    digest = hashlib.sha256()
    for key in ("x_train", "y_train", "x_test", "y_test"):
        digest.update(np.ascontiguousarray(arrays[key]).tobytes())
    return Dataset(x_train, arrays["y_train"].astype(np.uint8), x_test, arrays["y_test"].astype(np.uint8),
                   source, digest.hexdigest())


def _env_dir() -> Path | None:
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value) if value else None


def _with_channels(images: np.ndarray, input_shape: tuple[int, ...], source: str) -> np.ndarray:
    """Reshape N×28×28 to the spec's N×28×28×1; refuse a shape the images cannot take."""
    want = tuple(input_shape)
    if images.shape[1:] == want:
        return images
    if int(np.prod(images.shape[1:])) == int(np.prod(want)):
        return images.reshape((images.shape[0],) + want)
    raise DataError(f"'dataset.input_shape' is {list(want)} but the images in {source} are "
                    f"{'×'.join(map(str, images.shape[1:]))}; set input_shape to "
                    f"{list(images.shape[1:]) + ([1] if images.ndim == 3 else [])}.")


def _load_local(folder: Path) -> dict[str, np.ndarray] | None:
    """IDX .gz files (md5-checked) or mnist.npz in ``folder``; None if neither is there."""
    if all((folder / f).is_file() for f in IDX_FILES.values()):
        return {key: read_idx(folder / fname) for key, fname in IDX_FILES.items()}
    npz = folder / "mnist.npz"
    if npz.is_file():
        return _read_npz(npz)
    present = [f for f in IDX_FILES.values() if (folder / f).is_file()]
    if present:
        missing = [f for f in IDX_FILES.values() if f not in present]
        raise DataError(f"{folder} holds only part of MNIST: missing {', '.join(missing)}.")
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read one (optionally gzipped) IDX file, checking the official MD5 where known."""
    raw = path.read_bytes()
    expected = IDX_MD5.get(path.name)
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


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as npz:
            return {key: npz[key] for key in IDX_FILES}
    except (KeyError, ValueError, OSError) as exc:
        raise DataError(f"{path} is not a Keras mnist.npz (needs x_train, y_train, x_test, y_test): "
                        f"{exc}.") from None


def _load_keras(looked: list[str]) -> tuple[dict[str, np.ndarray] | None, str]:
    """Keras' loader: reads its cache, downloading on first use."""
    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets" / "mnist.npz"
    try:
        import keras

        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as exc:  # no network, proxy, broken cache ...
        looked.append(f"{cache} (Keras download: {type(exc).__name__}: {exc})")
        return None, ""
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}, str(cache)
