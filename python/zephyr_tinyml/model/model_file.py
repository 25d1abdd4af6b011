"""Models trained elsewhere: a ``.tflite``, a ``.keras`` / ``.h5`` file, a SavedModel folder or a
PyTorch ``torch.export`` program (``.pt2``) or an ONNX model (``.onnx``), both converted by :mod:`.torch_model`.

``west tinyml build path/to/model.tflite`` needs no spec: :func:`spec_for_model_file` writes the
spec a user would have written (name from the file, data from ``--dataset`` / ``--data-dir``, labels
from ``--labels``), and the pipeline then treats it like any spec whose ``model.file`` is set:
no training; a Keras or PyTorch model is quantized and verified like ours; an int8 ``.tflite`` goes straight to
host-TFLM verification and codegen.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, ModelError, SpecError
from .data import BUILTIN, IDX_FILES, IDX_MD5
from .spec import Spec, spec_from_data
from .torch_model import TORCH_SUFFIXES, load_torch_model

MODEL_SUFFIXES = (".tflite", ".keras", ".h5", ".hdf5") + TORCH_SUFFIXES


def model_kind(path: Path) -> str:
    """'tflite', 'keras', 'savedmodel' or 'torch' (.pt2 and .onnx); a ModelError saying what is accepted otherwise."""
    path = Path(path)
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        raise ModelError(f"{path} is a folder without saved_model.pb, so not a SavedModel. Give a .tflite, .keras, "
                         f".h5, .pt2, .onnx file or a SavedModel folder.")
    if path.suffix == ".tflite":
        return "tflite"
    if path.suffix in (".keras", ".h5", ".hdf5"):
        return "keras"
    if path.suffix in TORCH_SUFFIXES:
        return "torch"
    raise ModelError(f"{path}: unknown model format '{path.suffix}'. zephyr-tinyml takes .tflite, .keras, .h5, "
                     f".pt2 (torch.export), .onnx files and SavedModel folders (or a .yaml spec).")


def is_model_path(text: str) -> bool:
    """Whether a command-line model argument names a model file rather than a spec."""
    path = Path(text)
    return path.suffix in MODEL_SUFFIXES or (path.is_dir() and (path / "saved_model.pb").is_file())


def name_from_path(path: Path) -> str:
    """A spec name (lower case, digits, '_') from a file name: ``micro_speech.tflite`` -> ``micro_speech``."""
    stem = Path(path).name if Path(path).is_dir() else Path(path).stem
    name = re.sub(r"[^a-z0-9_]+", "_", stem.lower()).strip("_")
    return name if name and name[0].isalpha() else f"model_{name}"


def read_labels_file(path: Path) -> tuple[str, ...]:
    """One label per line (blank lines ignored), as TFLite's labels.txt."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SpecError(f"--labels {path}: cannot read it ({exc.strerror}).") from None
    labels = tuple(line.strip() for line in lines if line.strip())
    if not labels:
        raise SpecError(f"--labels {path} holds no labels; write one label per line.")
    return labels


def detect_dataset(data_dir: Path) -> dict[str, Any]:
    """What ``--data-dir`` holds when no ``--dataset`` is given: a built-in set's files, an .npz or an image folder."""
    data_dir = Path(data_dir)
    if data_dir.suffix == ".npz" or not data_dir.is_dir():
        return {"path": str(data_dir.resolve())}
    if all((data_dir / f).is_file() for f in IDX_FILES.values()):
        digest = hashlib.md5((data_dir / IDX_FILES["x_test"]).read_bytes()).hexdigest()
        return {"name": "mnist" if digest == IDX_MD5[IDX_FILES["x_test"]] else "fashion_mnist"}
    for name in ("mnist", "fashion_mnist", "cifar10", "cifar100"):
        if (data_dir / f"{name}.npz").is_file():
            return {"name": name}
    if (data_dir / "cifar-10-batches-py").is_dir() or (data_dir / "test_batch").is_file():
        return {"name": "cifar10"}
    if (data_dir / "cifar-100-python").is_dir():
        return {"name": "cifar100"}
    return {"path": str(data_dir.resolve())}


def spec_for_model_file(model_path: Path, *, name: str | None = None, dataset: str | None = None,
                        data_dir: Path | None = None, labels: tuple[str, ...] = (),
                        input_scale: float = 1 / 255, input_offset: float = 0.0, test_inputs: int = 10,
                        representative_samples: int = 500, output_dir: Path | None = None,
                        work_dir: Path | None = None, acceptance: dict[str, float] | None = None) -> Spec:
    """The spec for a model file given on the command line (see the module docstring)."""
    model_path = Path(model_path).resolve()
    if not model_path.exists():
        raise ModelError(f"{model_path} does not exist.")
    model_kind(model_path)
    name = name or name_from_path(model_path)
    ds: dict[str, Any] = {}
    if dataset:
        ds = {"name": dataset} if dataset in BUILTIN else {"path": str(Path(dataset).resolve())}
        if "path" in ds and not Path(ds["path"]).exists():
            raise DataError(f"--dataset {dataset}: neither a built-in set ({', '.join(BUILTIN)}) nor an existing "
                            f"folder or .npz.")
    elif data_dir is not None:
        ds = detect_dataset(data_dir)
    # The normalization applies to the inputs the build makes up when no data is given, too.
    ds["normalization"] = {"scale": float(input_scale), "offset": float(input_offset)}
    if labels:
        ds["labels"] = list(labels)
    data: dict[str, Any] = {"name": name, "dataset": ds, "model": {"file": str(model_path)},
                            "quantization": {"representative_samples": representative_samples},
                            "codegen": {"test_images": test_inputs}}
    if acceptance:
        data["acceptance"] = dict(acceptance)
    work = Path(work_dir) if work_dir else Path.cwd() / "build" / "tinyml" / name
    return spec_from_data(data, model_path, output_dir=Path(output_dir) if output_dir else work / "generated",
                          description=f"{model_path.name}, trained elsewhere")


class SavedModelPredictor:
    """A SavedModel's serving signature with a ``predict`` like Keras' (float outputs for verification)."""

    def __init__(self, path: Path):
        import tensorflow as tf

        self.loaded = tf.saved_model.load(str(path))
        if "serving_default" not in self.loaded.signatures:
            raise ModelError(f"{path} has no 'serving_default' signature; export it with one "
                             f"(model.export(path) in Keras 3, tf.saved_model.save(..., signatures=...)).")
        self.function = self.loaded.signatures["serving_default"]
        inputs = self.function.structured_input_signature[1]
        if len(inputs) != 1:
            raise ModelError(f"{path}: its serving signature takes {len(inputs)} inputs; the runtime runs "
                             f"models with one.")
        (self.input_name, self.input_spec), = inputs.items()
        self.input_shape = tuple(self.input_spec.shape)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        outputs = self.function(**{self.input_name: batch})
        if len(outputs) != 1:
            raise ModelError(f"the SavedModel's serving signature gives {len(outputs)} outputs; the runtime runs "
                             f"models with one.")
        return np.asarray(next(iter(outputs.values())))

    def predict(self, x: np.ndarray, batch_size: int = 1000, verbose: int = 0) -> np.ndarray:
        return np.concatenate([self(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def load_float_model(path: Path) -> Any:
    """A Keras model (``.keras``/``.h5``), a :class:`SavedModelPredictor` or a PyTorch program
    (:class:`.torch_model.TorchPredictor`, NHWC input); a clear error when unreadable."""
    kind = model_kind(path)
    if kind == "savedmodel":
        return SavedModelPredictor(path)
    if kind == "torch":
        return load_torch_model(path)
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises many types for unreadable or custom-object files
        raise ModelError(f"{path}: Keras cannot load it ({type(exc).__name__}: {exc}). Custom layers or losses "
                         f"must be importable; a model saved with another Keras major version may need re-saving "
                         f"as .keras with Keras 3.") from None


def float_input_shape(model: Any, path: Path) -> tuple[int, ...]:
    """The model's input shape without the batch dimension; dynamic dimensions are an error."""
    shape = tuple(model.input_shape) if hasattr(model, "input_shape") else ()
    if isinstance(model, SavedModelPredictor):
        shape = model.input_shape
    if shape and isinstance(shape[0], (list, tuple)):
        raise ModelError(f"{path} has several inputs; the runtime runs models with one.")
    dims = tuple(shape[1:])
    if not dims or any(d is None or d < 0 for d in dims):
        raise ModelError(f"{path}: its input shape {list(shape)} has unknown dimensions besides the batch; build it "
                         f"with a fixed input shape (keras.Input(shape=(28, 28, 1))).")
    return tuple(int(d) for d in dims)
