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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np

from . import __version__
from .codegen import Generated, check_ops, check_quantization, generate, select_test_images
from .data import Dataset, load_dataset
from .errors import AcceptanceError
from .fileio import sha256_bytes, write_atomic
from .spec import Spec, check_layers
from .tflite_model import ModelInfo, count_macs, inspect_model
from .verify import Verification, confusion_matrix, describe_divergence, verify


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

    def summary(self) -> dict[str, Any]:
        """Plain figures for reports (JSON-safe)."""
        v = self.verification
        return {
            "model": self.spec.name,
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
    """Run every model stage for ``spec``; raises a TinymlError subclass on any user-fixable fault."""
    timings: dict[str, StageTime] = {}
    work = Path(options.work_dir)
    cache = work / "cache"

    with ui.stage("spec", spec.path.name), _Timer(timings, "spec"):
        check_layers(spec)
        versions = _versions()

    with ui.stage("data"), _Timer(timings, "data"):
        data = load_dataset(spec.dataset, spec.input_shape, options.data_dir, options.allow_download)
        ui.note(f"{len(data.x_train):,} training and {len(data.x_test):,} test images from {data.source}")

    keras_model: Any = None
    train_key = _key("train", spec.section_hash("dataset", "model", "training"), data.fingerprint, versions)
    train_dir = cache / f"train-{train_key}"
    with ui.stage("train"), _Timer(timings, "train") as timer:
        if (train_dir / "model.keras").is_file() and not options.retrain:
            timer.cached = True
        else:
            # Later stages read the saved model.keras even right after training, so a fresh build,
            # a train-cache hit and a full-cache hit all quantize the very same artifact.
            _train(spec, data, ui, cache, train_dir.name)
    meta = json.loads((train_dir / "meta.json").read_text())
    history = json.loads((train_dir / "history.json").read_text())

    def model() -> Any:
        nonlocal keras_model
        if keras_model is None:
            import keras

            keras_model = keras.models.load_model(train_dir / "model.keras")
        return keras_model

    from .quantize import RECIPE

    # Keyed by the trained weights, not the training recipe: --retrain (or a model trained with other
    # numerics) must never reuse the int8 model of the weights it replaced.
    quant_key = _key("quantize", meta.get("weights_sha256", train_key), spec.section_hash("quantization", "dataset"),
                     RECIPE)
    quant_dir = cache / f"quantize-{quant_key}"
    with ui.stage("quantize"), _Timer(timings, "quantize") as timer:
        if (quant_dir / "model.tflite").is_file():
            timer.cached = True
        else:
            from .quantize import quantize

            tflite_bytes = quantize(spec, model(), data)
            with _cache_entry(cache, quant_dir.name) as tmp:
                (tmp / "model.tflite").write_bytes(tflite_bytes)
        tflite = (quant_dir / "model.tflite").read_bytes()
        info = inspect_model(tflite, quant_dir / "model.tflite")
        check_ops(info, f"the model of {spec.path.name}")
        check_quantization(tflite, f"the model of {spec.path.name}")

    verify_key = _key("verify", sha256_bytes(tflite), data.fingerprint,
                      spec.section_hash("dataset"), versions)
    verify_dir = cache / f"verify-{verify_key}"
    with ui.stage("verify", f"{len(data.x_test):,} test images"), _Timer(timings, "verify") as timer:
        if (verify_dir / "verification.json").is_file():
            timer.cached = True
        else:
            result = verify(spec, data, model(), tflite, info, ui.images)
            with _cache_entry(cache, verify_dir.name) as tmp:
                (tmp / "verification.json").write_text(json.dumps(result.to_json()))
        verification = Verification(**json.loads((verify_dir / "verification.json").read_text()))
    _write_outputs(spec, work, train_dir, tflite, history, verification, data, timings)
    check_acceptance(spec, verification)

    with ui.stage("codegen"), _Timer(timings, "codegen"):
        chosen = select_test_images(data.y_test, spec.test_images, len(spec.labels),
                                    np.asarray(verification.tflm_predictions))
        images = data.x_test[chosen]  # raw pixels: the app quantizes them as it would a sensor's
        generated = generate(spec, tflite, info, verification.arena_host_bytes, images,
                             data.y_test[chosen], options.out_dir)
        macs = count_macs(tflite)

    result = BuildResult(spec, work, work / f"{spec.name}.tflite", info, verification, generated,
                         meta["parameters"], macs, timings)
    write_atomic(work / "report.json", json.dumps(result.summary(), indent=1, sort_keys=True) + "\n")
    return result


def _train(spec: Spec, data: Dataset, ui: UI, cache: Path, name: str) -> None:
    from .train import save_history, train

    result = train(spec, data, on_epoch=lambda e, logs: ui.epoch(e, spec.epochs, logs), on_batch=ui.batch)
    with _cache_entry(cache, name) as tmp:
        result.model.save(tmp / "model.keras")
        save_history(tmp / "history.json", result.history)
        weights = sha256_bytes(b"".join(w.tobytes() for w in result.model.get_weights()))
        write_atomic(tmp / "meta.json", json.dumps({"parameters": int(result.model.count_params()),
                                                    "weights_sha256": weights}))


def _write_outputs(spec: Spec, work: Path, train_dir: Path, tflite: bytes, history: dict[str, list[float]],
                   verification: Verification, data: Dataset, timings: dict[str, StageTime]) -> None:
    """The user-facing artifacts: model files and plots next to each other in the work folder."""
    from .fileio import write_if_changed
    from .plots import confusion_plot, training_curve

    write_if_changed(work / f"{spec.name}.tflite", tflite)
    write_if_changed(work / f"{spec.name}.keras", (train_dir / "model.keras").read_bytes())
    all_cached = all(t.cached for name, t in timings.items() if name in ("train", "quantize", "verify"))
    curve, confusion = work / "training.png", work / "confusion.png"
    if not (all_cached and curve.is_file() and confusion.is_file()):
        training_curve(history, curve, f"{spec.name}: training")
        matrix = confusion_matrix(data.y_test, np.asarray(verification.tflm_predictions), len(spec.labels))
        confusion_plot(matrix, spec.labels, confusion,
                       f"{spec.name}: int8 TFLM, {verification.tflm_accuracy:.2f} %")


def check_acceptance(spec: Spec, v: Verification) -> None:
    """Fail the build when the spec's acceptance bars are missed.

    The message names each missed bar and gives every accuracy on the same images, so the user can
    tell where the loss happened: a low float figure means training, a large float->int8 drop means
    quantization, a TFLM figure below TFLite's means the runtime.
    """
    faults = []
    if v.tflm_accuracy < spec.min_int8_accuracy:
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
    figures = (f"on {v.images:,} test images: float Keras {v.float_accuracy:.2f} %, int8 TFLite "
               f"{v.tflite_ref_accuracy:.2f} % (reference kernels), int8 TFLM {v.tflm_accuracy:.2f} %, "
               f"float->int8 drop {v.accuracy_drop:.2f} points")
    if v.float_accuracy < spec.min_int8_accuracy:
        hint = ("The float model itself is below the bar, so training is where accuracy is lost: train "
                "longer (training.epochs), change the model or its training recipe")
    elif v.accuracy_drop > spec.max_accuracy_drop or v.tflm_accuracy < spec.min_int8_accuracy:
        hint = ("The float model reaches the bar but the int8 model does not, so quantization is where "
                "accuracy is lost: more or more typical quantization.representative_samples, or layers "
                "that quantize better (ReLU6 over unbounded activations, BatchNormalization folded)")
    else:
        hint = "TFLM and the reference kernels must agree bit for bit before a model is deployed"
    raise AcceptanceError(f"{spec.path}: the model misses its acceptance bars: " + "; ".join(faults)
                          + f". Measured {figures}. {hint}; or relax 'acceptance' in the spec. "
                            "No sources were generated.")
