"""The model pipeline, stage by stage, with a content-addressed cache between stages.

spec -> data -> train -> quantize -> verify -> (acceptance) -> codegen.  Each stage's result is
stored under ``<work>/cache/<stage>-<key>/`` where the key hashes exactly what the stage depends on
(spec sections, data contents, upstream result, library versions).  An unchanged rerun therefore
reuses everything and only re-emits sources (byte-identical); editing ``acceptance`` or ``budgets``
retrains nothing.  Cache entries are built in a temporary folder and renamed into place, so an
interrupted run never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np

from .. import __version__
from .codegen import Generated, TestVectors, check_io, check_ops, check_quantization, generate, select_test_images
from .data import Dataset, load_dataset
from ..errors import AcceptanceError, DataError, SpecError
from ..fileio import sha256_bytes, write_atomic
from .model_file import content_hash, float_input_shape, load_float_model, model_kind
from .spec import Spec, check_layers
from .tflite_model import ModelInfo, count_macs, count_parameters, inspect_model
from .verify import METHOD as VERIFY_METHOD, Verification, confusion_matrix, describe_divergence, quantize_input
from .verify import random_inputs, run_tflm, verify, verify_outputs


class UI(Protocol):
    """What the pipeline reports while it runs (the CLI renders it with rich)."""

    def stage(self, name: str, detail: str = "") -> Any: ...  # context manager
    def epoch(self, epoch: int, epochs: int, logs: dict[str, float]) -> None: ...
    def batch(self, done: int, total: int) -> None: ...
    def images(self, done: int, total: int) -> None: ...
    def note(self, text: str) -> None: ...


@dataclass
class StageTime:
    """Wall seconds of one stage and whether it came from the cache."""

    seconds: float
    cached: bool = False


@dataclass
class BuildOptions:
    """Where to read data and write outputs, and whether to ignore the training cache."""

    work_dir: Path
    data_dir: Path | None = None
    out_dir: Path | None = None
    retrain: bool = False
    allow_download: bool = True


@dataclass
class BuildResult:
    """Everything the summary, the firmware stage and the tests need."""

    spec: Spec
    work_dir: Path
    tflite_path: Path
    info: ModelInfo
    verification: Verification
    generated: Generated
    params: int
    macs: int
    timings: dict[str, StageTime] = field(default_factory=dict)
    data_notes: tuple[str, ...] = ()
    quality: dict[str, Any] | None = None  # a GAN's generated images as its classifier sees them

    def summary(self) -> dict[str, Any]:
        """Plain figures for reports (JSON-safe)."""
        v = self.verification
        return {
            "model": self.spec.name,
            "data_notes": list(self.data_notes),
            "float_accuracy": v.float_accuracy,
            "tflite_int8_accuracy": v.tflite_accuracy,
            "tflite_ref_int8_accuracy": v.tflite_ref_accuracy,
            "tflm_int8_accuracy": v.tflm_accuracy,
            "accuracy_drop_points": v.accuracy_drop,
            "test_images": v.images,
            "tflm_vs_tflite_ref_mismatches": v.ref_mismatches,
            "tflm_vs_tflite_ref_rounding_mismatches": v.ref_rounding_mismatches,
            "tflm_vs_tflite_ref_unexplained_mismatches": v.ref_unexplained_mismatches,
            "tflm_vs_tflite_ref_divergence_ops": v.ref_divergence_ops,
            "tflm_vs_tflite_ref_first_divergence": v.first_divergence,
            "tflm_vs_tflite_optimized_argmax_agreement": v.optimized_argmax_agreement,
            "tflm_vs_tflite_optimized_vector_differences": v.optimized_vector_differences,
            "model_bytes": self.info.size,
            "arena_host_measured_bytes": v.arena_host_bytes,
            "arena_bytes": self.generated.arena_size,
            "parameters": self.params,
            "macs_per_inference": self.macs,
            "ops": list(self.info.unique_ops),
            "generated_dir": str(self.generated.folder),
            "stage_seconds": {k: round(t.seconds, 2) for k, t in self.timings.items()},
            "stage_cached": {k: t.cached for k, t in self.timings.items()},
            **({"quality": self.quality} if self.quality is not None else {}),
        }


def _key(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:20]


@contextmanager
def _cache_entry(root: Path, name: str) -> Iterator[Path]:
    """A temporary folder that becomes ``root/name`` only if the block succeeds."""
    final = root / name
    tmp = root / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _Timer:
    def __init__(self, timings: dict[str, StageTime], name: str):
        self.timings, self.name = timings, name

    def __enter__(self) -> "_Timer":
        self.start = time.perf_counter()
        self.cached = False
        return self

    def __exit__(self, *exc: object) -> None:
        self.timings[self.name] = StageTime(time.perf_counter() - self.start, self.cached)


def _versions() -> str:
    import keras
    import tensorflow as tf

    return f"tf{tf.__version__}-keras{keras.__version__}-tinyml{__version__}"


def build_model(spec: Spec, options: BuildOptions, ui: UI) -> BuildResult:
    """Run every model stage for ``spec``; raises a TinymlError subclass on any user-fixable fault.

    A spec with ``model.layers`` is trained; one with ``model.file`` (a model trained elsewhere) is
    not: a Keras/SavedModel file is quantized like a trained model, an int8 ``.tflite`` is taken as is.
    """
    if spec.gan is not None:
        from .gan_pipeline import build_gan

        return build_gan(spec, options, ui)
    timings: dict[str, StageTime] = {}
    work = Path(options.work_dir)
    cache = work / "cache"
    kind = model_kind(spec.model_file) if spec.model_file is not None else "spec"
    float_model: Any = None
    tflite_file: bytes | None = None
    file_info: ModelInfo | None = None
    meta: dict[str, Any] = {}

    with ui.stage("spec", spec.path.name), _Timer(timings, "spec"):
        if kind == "spec":
            check_layers(spec)
        elif kind == "tflite":
            tflite_file = Path(spec.model_file).read_bytes()  # type: ignore[arg-type]
            file_info = inspect_model(tflite_file, spec.model_file or "")
            check_io(file_info, str(spec.model_file))
            spec = _with_input_shape(spec, tuple(file_info.input.shape[1:]))
            meta = {"parameters": count_parameters(tflite_file)}
        else:
            float_model = load_float_model(spec.model_file)  # type: ignore[arg-type]
            spec = _with_input_shape(spec, float_input_shape(float_model, spec.model_file))  # type: ignore[arg-type]
            meta = {"parameters": int(float_model.count_params()) if hasattr(float_model, "count_params") else 0}
        versions = _versions()

    data: Dataset | None = None
    if spec.has_data:
        with ui.stage("data"), _Timer(timings, "data"):
            data = load_dataset(spec.data_source(), spec.input_shape, options.data_dir, options.allow_download,
                                classes=_classes(spec, float_model, file_info))
            ui.note(f"{len(data.x_train):,} training and {len(data.x_test):,} test images from {data.source}")
            for note in data.notes:
                ui.note(note)
        if not spec.labels and data.class_names:
            spec = replace(spec, labels=data.class_names)
    elif kind != "tflite":
        raise DataError(f"{spec.path}: a {'spec that trains' if kind == 'spec' else 'Keras model'} needs data "
                        f"({'dataset:' if kind == 'spec' else '--data-dir DIR or --dataset NAME|PATH'}) to "
                        f"{'train' if kind == 'spec' else 'quantize'} and verify.")

    history: dict[str, list[float]] = {}
    train_dir: Path | None = None
    if kind == "spec":
        assert data is not None
        train_dir = train_stage(spec, data, options, ui, timings, versions)
        meta = json.loads((train_dir / "meta.json").read_text())
        history = json.loads((train_dir / "history.json").read_text())
        weights_key = meta.get("weights_sha256", train_dir.name.removeprefix("train-"))
    elif kind != "tflite":
        weights_key = content_hash(spec.model_file)  # type: ignore[arg-type]

    def model() -> Any:
        nonlocal float_model
        if float_model is None and train_dir is not None:
            import keras

            float_model = keras.models.load_model(train_dir / "model.keras")
        return float_model

    from .quantize import RECIPE

    with ui.stage("quantize" if kind != "tflite" else "model", "" if kind != "tflite" else "int8 .tflite as given"), \
            _Timer(timings, "quantize" if kind != "tflite" else "model") as timer:
        if tflite_file is not None:
            tflite, timer.cached = tflite_file, True
        else:
            assert data is not None
            # Keyed by the trained weights, not the training recipe: --retrain (or a model trained with
            # other numerics) must never reuse the int8 model of the weights it replaced.
            quant_key = _key("quantize", weights_key, spec.section_hash("quantization", "dataset"), RECIPE,
                             *([] if kind == "spec" else [kind, ",".join(spec.labels)]))
            quant_dir = cache / f"quantize-{quant_key}"
            if (quant_dir / "model.tflite").is_file():
                timer.cached = True
            else:
                from .quantize import quantize

                tflite_bytes = quantize(spec, model(), data, spec.labels)
                with _cache_entry(cache, quant_dir.name) as tmp:
                    (tmp / "model.tflite").write_bytes(tflite_bytes)
            tflite = (quant_dir / "model.tflite").read_bytes()
        info = file_info if file_info is not None else inspect_model(tflite, spec.model_file or spec.path)
        origin = f"the model of {spec.path.name}"
        check_ops(info, origin)
        check_quantization(tflite, origin)
        check_io(info, origin)
        if data is not None and info.output.shape[-1] < int(data.y_test.max()) + 1:
            raise DataError(f"{data.source}: labels go up to {int(data.y_test.max())} but {origin} has only "
                            f"{info.output.shape[-1]} outputs.")

    test_seed = spec.seed
    verify_key = _key("verify", sha256_bytes(tflite), data.fingerprint if data else f"random-{test_seed}",
                      spec.section_hash("dataset"), versions, kind, str(spec.test_images), VERIFY_METHOD)
    verify_dir = cache / f"verify-{verify_key}"
    what = f"{len(data.x_test):,} test images" if data else f"{spec.test_images} seeded random inputs (no data given)"
    with ui.stage("verify", what), _Timer(timings, "verify") as timer:
        if (verify_dir / "verification.json").is_file():
            timer.cached = True
        else:
            if data is not None:
                result = verify(spec, data, model(), tflite, info, ui.images)
            else:
                result = verify_outputs(tflite, random_inputs(info, spec.test_images, test_seed), ui.images)
            with _cache_entry(cache, verify_dir.name) as tmp:
                (tmp / "verification.json").write_text(json.dumps(result.to_json()))
        verification = Verification(**json.loads((verify_dir / "verification.json").read_text()))
    _write_outputs(spec, work, train_dir, tflite, history, verification, data, timings)
    check_acceptance(spec, verification)

    with ui.stage("codegen"), _Timer(timings, "codegen"):
        tests = test_vectors(spec, tflite, info, data, verification, test_seed)
        generated = generate(spec, tflite, info, verification.arena_host_bytes, tests, options.out_dir, spec.labels)
        macs = count_macs(tflite)

    result = BuildResult(spec, work, work / f"{spec.name}.tflite", info, verification, generated,
                         meta.get("parameters", 0), macs, timings, data.notes if data is not None else ())
    write_atomic(work / "report.json", json.dumps(result.summary(), indent=1, sort_keys=True) + "\n")
    return result


def train_stage(spec: Spec, data: Dataset, options: BuildOptions, ui: UI, timings: dict[str, StageTime],
                versions: str) -> Path:
    """The cache folder of the spec's trained model (model.keras, history.json, meta.json), trained if absent."""
    train_key = _key("train", spec.section_hash("dataset", "model", "training"), data.fingerprint, versions)
    train_dir = Path(options.work_dir) / "cache" / f"train-{train_key}"
    with ui.stage("train"), _Timer(timings, "train") as timer:
        if (train_dir / "model.keras").is_file() and not options.retrain:
            timer.cached = True
        else:
            # Later stages read the saved model.keras even right after training, so a fresh build,
            # a train-cache hit and a full-cache hit all quantize the very same artifact.
            _train(spec, data, ui, train_dir.parent, train_dir.name)
    return train_dir


def trained_classifier(spec: Spec, options: BuildOptions, ui: UI) -> Any:
    """The float Keras model of a classifier spec, from its train cache (trained first if absent).

    Used to judge what another model makes (a GAN's digits); runs only the spec, data and train stages.
    """
    import keras

    if not spec.layers:
        raise SpecError(f"{spec.path}: a judging classifier must be a spec that trains 'model.layers'.")
    check_layers(spec)
    data = load_dataset(spec.data_source(), spec.input_shape, options.data_dir, options.allow_download)
    train_dir = train_stage(spec, data, options, ui, {}, _versions())
    return keras.models.load_model(train_dir / "model.keras")


def _with_input_shape(spec: Spec, shape: tuple[int, ...]) -> Spec:
    """The spec with the model's input shape; a spec that names another shape is an error."""
    if spec.input_shape and tuple(spec.input_shape) != tuple(shape):
        raise SpecError(f"{spec.path}: 'dataset.input_shape' is {list(spec.input_shape)} but the model in "
                        f"'model.file' takes {list(shape)}; remove input_shape or make them match.")
    return replace(spec, input_shape=tuple(shape))


def _classes(spec: Spec, float_model: Any, file_info: ModelInfo | None) -> int | None:
    """How many classes the model outputs (bounds the data's labels); None when not known yet."""
    if file_info is not None:
        return int(file_info.output.shape[-1])
    if float_model is not None and hasattr(float_model, "output_shape"):
        shape = float_model.output_shape
        return int(shape[-1]) if shape and isinstance(shape[-1], int) else None
    return len(spec.labels) or None


def test_vectors(spec: Spec, tflite: bytes, info: ModelInfo, data: Dataset | None, verification: Verification,
                 seed: int) -> TestVectors:
    """The inputs the device checks itself on, with host TFLM's outputs for them.

    With labelled data: ``codegen.test_images`` test images host TFLM classifies correctly, the first
    of each class first (so the check tests the port, not the model's error rate). Without data:
    seeded random int8 inputs over the model's whole input range.
    """
    if data is not None:
        chosen = select_test_images(data.y_test, spec.test_images, int(info.output.shape[-1]),
                                    np.asarray(verification.tflm_predictions))
        pixels = data.x_test[chosen]
        inputs = quantize_input(pixels, spec, info)
        outputs = run_tflm(tflite, inputs).reshape(len(chosen), -1)
        return TestVectors(inputs.reshape(len(chosen), -1), outputs, pixels, data.y_test[chosen],
                           f"{len(chosen)} test-set images (never training images) that host TFLM classifies "
                           f"correctly, first of each class first")
    inputs = random_inputs(info, spec.test_images, seed)
    outputs = run_tflm(tflite, inputs).reshape(len(inputs), -1)
    return TestVectors(inputs.reshape(len(inputs), -1), outputs, None, None,
                       f"{len(inputs)} seeded random int8 inputs (seed {seed}) over the model's whole input range; "
                       f"no data was given")


def _train(spec: Spec, data: Dataset, ui: UI, cache: Path, name: str) -> None:
    from .train import save_history, train

    result = train(spec, data, on_epoch=lambda e, logs: ui.epoch(e, spec.epochs, logs), on_batch=ui.batch)
    with _cache_entry(cache, name) as tmp:
        result.model.save(tmp / "model.keras")
        save_history(tmp / "history.json", result.history)
        weights = sha256_bytes(b"".join(w.tobytes() for w in result.model.get_weights()))
        write_atomic(tmp / "meta.json", json.dumps({"parameters": int(result.model.count_params()),
                                                    "weights_sha256": weights}))


def _write_outputs(spec: Spec, work: Path, train_dir: Path | None, tflite: bytes, history: dict[str, list[float]],
                   verification: Verification, data: Dataset | None, timings: dict[str, StageTime]) -> None:
    """The user-facing artifacts: model files and plots next to each other in the work folder."""
    from ..fileio import write_if_changed
    from .plots import confusion_plot, training_curve

    write_if_changed(work / f"{spec.name}.tflite", tflite)
    if train_dir is not None:
        write_if_changed(work / f"{spec.name}.keras", (train_dir / "model.keras").read_bytes())
    all_cached = all(t.cached for name, t in timings.items() if name in ("train", "quantize", "verify"))
    curve, confusion = work / "training.png", work / "confusion.png"
    if history and not (all_cached and curve.is_file()):
        training_curve(history, curve, f"{spec.name}: training")
    if data is not None and verification.tflm_accuracy is not None and not (all_cached and confusion.is_file()):
        classes = max(len(spec.labels), int(data.y_test.max()) + 1, max(verification.tflm_predictions) + 1)
        names = spec.labels or tuple(str(i) for i in range(classes))
        matrix = confusion_matrix(data.y_test, np.asarray(verification.tflm_predictions), classes)
        confusion_plot(matrix, names, confusion,
                       f"{spec.name}: int8 TFLM, {verification.tflm_accuracy:.2f} %")


def check_acceptance(spec: Spec, v: Verification) -> None:
    """Fail the build when the spec's acceptance bars are missed.

    The message names each missed bar and gives every accuracy on the same images, so the user can
    tell where the loss happened: a low float figure means training, a large float->int8 drop means
    quantization, a TFLM figure below TFLite's means the runtime.
    """
    faults = []
    if v.tflm_accuracy is not None and v.tflm_accuracy < spec.min_int8_accuracy:
        faults.append(f"int8 TFLM accuracy {v.tflm_accuracy:.2f} % is below acceptance.min_int8_accuracy "
                      f"{spec.min_int8_accuracy:g} %")
    if v.accuracy_drop > spec.max_accuracy_drop:
        faults.append(f"float->int8 drop {v.accuracy_drop:.2f} points exceeds acceptance.max_accuracy_drop "
                      f"{spec.max_accuracy_drop:g}")
    if v.ref_unexplained_mismatches:
        fault = (f"{v.ref_unexplained_mismatches} test images give int8 outputs in TFLM that the TFLite "
                 f"reference kernels do not, beyond a 1-LSB requantization rounding difference")
        where = describe_divergence(v.first_divergence)
        faults.append(fault + (f"; {where}" if where else ""))
    if not faults:
        return

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f} %"

    figures = (f"on {v.images:,} test {'images' if v.tflm_accuracy is not None else 'inputs'}: float "
               f"{pct(v.float_accuracy)}, int8 TFLite {pct(v.tflite_ref_accuracy)} (reference kernels), int8 TFLM "
               f"{pct(v.tflm_accuracy)}, float->int8 drop {v.accuracy_drop:.2f} points")
    if v.float_accuracy is not None and v.float_accuracy < spec.min_int8_accuracy:
        hint = ("The float model itself is below the bar, so training is where accuracy is lost: train "
                "longer (training.epochs), change the model or its training recipe")
    elif v.accuracy_drop > spec.max_accuracy_drop or (v.tflm_accuracy or 0.0) < spec.min_int8_accuracy:
        hint = ("The float model reaches the bar but the int8 model does not, so quantization is where "
                "accuracy is lost: more or more typical quantization.representative_samples, or layers "
                "that quantize better (ReLU6 over unbounded activations, BatchNormalization folded)")
    else:
        hint = "TFLM and the reference kernels must agree bit for bit before a model is deployed"
    raise AcceptanceError(f"{spec.path}: the model misses its acceptance bars: " + "; ".join(faults)
                          + f". Measured {figures}. {hint}; or relax 'acceptance' in the spec. "
                            "No sources were generated.")
