"""The model pipeline of a classifier spec or a model file, stage by stage.

spec -> data -> train -> quantize -> verify -> (acceptance) -> codegen, each stage cached by
:mod:`.stages` under a key of exactly what it depends on, so an unchanged rerun reuses everything
and only re-emits sources (byte-identical); editing ``acceptance`` or ``budgets`` retrains nothing.

A spec whose committed sources (``codegen.output_dir``, e.g. samples/mnist/generated) were
generated from the same data set, network, training and quantization sections is not trained
again: its int8 model is read back from ``model_data.cc`` and verified and generated as is, so a
fresh clone builds the very bytes that were committed (training on another CPU gives other
weights). ``--retrain`` trains anyway. A GAN spec goes to :mod:`.gan_pipeline`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AcceptanceError, DataError, ModelError, SpecError
from ..fileio import content_hash, sha256_bytes, write_atomic, write_if_changed
from .arena import FACTS
from .codegen import (
    TestVectors,
    check_io,
    check_ops,
    check_quantization,
    generate,
    select_test_images,
)
from .data import Dataset, DataSource, load_dataset
from .gan_pipeline import build_gan
from .keras_stack import check_layers
from .model_file import float_input_shape, load_float_model, model_kind
from .plots import confusion_plot, training_curve
from .quantize import RECIPE, quantize, quantize_torch
from .sources import generated_facts, generated_model
from .spec import Spec
from .stages import (
    UI,
    BuildOptions,
    BuildResult,
    Stages,
    StageTime,
    library_versions,
    stage_key,
)
from .tflite_model import ModelInfo, count_macs, count_parameters, inspect_model
from .torch_model import RECIPE as TORCH_RECIPE
from .torch_model import converter_versions
from .train import train_stage
from .verify import METHOD as VERIFY_METHOD
from .verify import (
    Verification,
    confusion_matrix,
    describe_divergence,
    quantize_input,
    random_inputs,
    run_tflm,
    verify,
    verify_outputs,
)

__all__ = ["BuildOptions", "BuildResult", "build_model", "check_acceptance", "committed_model"]


def build_model(spec: Spec, options: BuildOptions, ui: UI) -> BuildResult:
    """Run every model stage for ``spec``; raises a TinymlError subclass on any user-fixable fault.

    A spec with ``model.layers`` is trained (or its committed model reused); one with ``model.file``
    (a model trained elsewhere) is not: a Keras/SavedModel file is quantized like a trained model, a
    PyTorch ``.pt2`` and ONNX are quantized and converted by litert-torch, an int8 ``.tflite`` is taken as is.
    """
    if spec.model.gan is not None:
        return build_gan(spec, options, ui)
    work = Path(options.work_dir)
    stages = Stages(ui, work / "cache")
    kind = model_kind(spec.model.file) if spec.model.file is not None else "spec"
    float_model: Any = None
    tflite_file: bytes | None = None
    file_info: ModelInfo | None = None
    meta: dict[str, Any] = {}

    with stages.stage("spec", spec.path.name):
        if kind == "spec":
            check_layers(spec)
            committed = None if options.retrain else committed_model(spec, options.out_dir)
        elif kind == "tflite":
            tflite_file = Path(spec.model.file).read_bytes()  # type: ignore[arg-type]
            file_info = inspect_model(tflite_file, spec.model.file or "")
            check_io(file_info, str(spec.model.file))
            spec = _with_input_shape(spec, tuple(file_info.input.shape[1:]))
            meta = {"parameters": count_parameters(tflite_file)}
        else:
            float_model = load_float_model(spec.model.file)  # type: ignore[arg-type]
            spec = _with_input_shape(spec, float_input_shape(float_model, spec.model.file))  # type: ignore[arg-type]
            meta = {"parameters": int(float_model.count_params()) if hasattr(float_model, "count_params") else 0}
        versions = library_versions()

    data: Dataset | None = None
    if spec.dataset.has_data:
        with stages.stage("data"):
            data = load_dataset(DataSource.of_spec(spec), spec.dataset.input_shape, options.data_dir, options.allow_download,
                                classes=_classes(spec, float_model, file_info))
            ui.note(f"{len(data.x_train):,} training and {len(data.x_test):,} test images from {data.source}")
            for note in data.notes:
                ui.note(note)
        if not spec.dataset.labels and data.class_names:
            spec = replace(spec, dataset=replace(spec.dataset, labels=data.class_names))
    elif kind != "tflite":
        what = {"spec": "spec that trains", "torch": "PyTorch or ONNX model"}.get(kind, "Keras model")
        raise DataError(f"{spec.path}: a {what} needs data "
                        f"({'dataset:' if kind == 'spec' else '--data-dir DIR or --dataset NAME|PATH'}) to "
                        f"{'train' if kind == 'spec' else 'quantize'} and verify.")

    history: dict[str, list[float]] = {}
    train_dir: Path | None = None
    source = "file" if kind != "spec" else "trained"
    if kind == "spec":
        assert data is not None
        if committed is not None:
            source = "committed"
            tflite_file = committed
            with stages.stage("train", f"reused: {_shown(_output_dir(spec, options.out_dir))} holds the int8 model "
                                       f"of this spec (--retrain trains anew)") as timer:
                timer.cached = True
                train_dir = _float_twin(spec, data, stages, versions, committed)
                meta = {"parameters": count_parameters(committed)}
        else:
            train_dir = train_stage(spec, data, stages, versions, options.retrain)
        if train_dir is not None:
            meta = json.loads((train_dir / "meta.json").read_text())
            history = json.loads((train_dir / "history.json").read_text())
    weights_key = ""
    if kind == "spec" and train_dir is not None:
        weights_key = _weights_key(train_dir)
    elif kind not in ("spec", "tflite"):
        weights_key = content_hash(spec.model.file)  # type: ignore[arg-type]

    def model() -> Any:
        nonlocal float_model
        if float_model is None and train_dir is not None:
            import keras

            float_model = keras.models.load_model(train_dir / "model.keras")
        return float_model

    with stages.stage("model" if kind == "tflite" else "quantize",
                      ".tflite as given" if kind == "tflite" else "committed" if source == "committed" else "") \
            as timer:
        if tflite_file is not None:
            tflite, timer.cached = tflite_file, True
        else:
            assert data is not None
            convert = quantize_torch if kind == "torch" else quantize
            entry = stages.cached(timer, f"quantize-{_quantize_key(spec, kind, weights_key)}", "model.tflite",
                                  lambda folder: (folder / "model.tflite").write_bytes(
                                      convert(spec, model(), data, spec.dataset.labels)))
            tflite = (entry / "model.tflite").read_bytes()
        info = file_info if file_info is not None else inspect_model(tflite, spec.model.file or spec.path)
        origin = f"the model of {spec.path.name}"
        check_ops(info, origin)
        check_quantization(tflite, origin)
        check_io(info, origin)
        if data is not None and info.output.shape[-1] < int(data.y_test.max()) + 1:
            raise DataError(f"{data.source}: labels go up to {int(data.y_test.max())} but {origin} has only "
                            f"{info.output.shape[-1]} outputs.")

    test_seed = spec.training.seed
    verify_key = stage_key("verify", sha256_bytes(tflite), data.fingerprint if data else f"random-{test_seed}",
                           spec.section_hash("dataset"), versions, kind, str(spec.codegen.test_images), VERIFY_METHOD,
                           "float" if train_dir is not None or float_model is not None else "no-float")
    what = f"{len(data.x_test):,} test images" if data else f"{spec.codegen.test_images} seeded random inputs (no data given)"

    def run_verification(folder: Path) -> None:
        if data is not None:
            result = verify(spec, data, model(), tflite, info, ui.images)
        else:
            result = verify_outputs(tflite, random_inputs(info, spec.codegen.test_images, test_seed), ui.images)
        (folder / "verification.json").write_text(json.dumps(result.to_json()))

    with stages.stage("verify", what) as timer:
        entry = stages.cached(timer, f"verify-{verify_key}", "verification.json", run_verification)
        verification = Verification(**json.loads((entry / "verification.json").read_text()))
    _write_outputs(spec, work, train_dir, tflite, history, verification, data, stages.timings)
    check_acceptance(spec, verification)

    arena_host = verification.arena_host_bytes
    if source == "committed":
        # The committed sources keep the host arena they were generated with: host TFLM's figure moves
        # by a few bytes between tflite-micro releases, and the committed files must not churn with it.
        recorded = generated_facts(_output_dir(spec, options.out_dir)).get("arena", {}).get("host_measured_bytes")
        if isinstance(recorded, int) and recorded > 0:
            if recorded != arena_host:
                ui.note(f"arena: this host TFLM needs {arena_host:,} bytes, the committed sources recorded "
                        f"{recorded:,}; kept (--retrain measures anew)")
            arena_host = recorded

    with stages.stage("codegen"):
        tests = test_vectors(spec, tflite, info, data, verification, test_seed)
        generated = generate(spec, tflite, info, arena_host, tests, options.out_dir, spec.dataset.labels)
        macs = count_macs(tflite)

    result = BuildResult(spec, work, work / f"{spec.name}.tflite", info, verification, generated,
                         meta.get("parameters", 0), macs, stages.timings, data.notes if data is not None else (),
                         model_source=source)
    write_atomic(work / "report.json", json.dumps(result.summary(), indent=1, sort_keys=True) + "\n")
    return result


def committed_model(spec: Spec, out_dir: Path | None = None) -> bytes | None:
    """The int8 model committed in the spec's output folder, when it was made from this spec; else None.

    "Made from this spec": its facts file names the same data set, network, training and
    quantization sections (``trained_from``), or, for sources generated before that key existed,
    its header names this very spec file. The model bytes must match the facts file's hash.
    """
    folder = _output_dir(spec, out_dir)
    if not (folder / FACTS).is_file():
        return None
    try:
        facts = generated_facts(folder)
    except ValueError as err:
        raise ModelError(f"{folder / FACTS} is not valid JSON ({err}): restore the folder (git checkout -- "
                         f"{folder}) or train anew with --retrain") from None
    stamp = f"sha256 {spec.file_hash()[:16]}," if spec.path.is_file() else None
    same = facts.get("trained_from") == spec.model_hash() or (
        "trained_from" not in facts and stamp is not None and stamp in facts.get("generated_by", ""))
    if not same or facts.get("name") != spec.name:
        return None
    return generated_model(folder, f"restore the folder (git checkout -- {folder}) or train anew with --retrain")


def _output_dir(spec: Spec, out_dir: Path | None) -> Path:
    return Path(out_dir or spec.codegen.output_dir)


def _shown(folder: Path) -> str:
    """A folder as the user would type it: relative to the current directory when inside it."""
    try:
        return str(folder.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(folder)


def _weights_key(train_dir: Path) -> str:
    meta = json.loads((train_dir / "meta.json").read_text())
    return meta.get("weights_sha256", train_dir.name.removeprefix("train-"))


def _quantize_key(spec: Spec, kind: str, weights_key: str) -> str:
    """Keyed by the trained weights, not the training recipe: --retrain (or a model trained with other
    numerics) must never reuse the int8 model of the weights it replaced."""
    return stage_key("quantize", weights_key, spec.section_hash("quantization", "dataset"),
                     TORCH_RECIPE + converter_versions() if kind == "torch" else RECIPE,
                     *([] if kind == "spec" else [kind, ",".join(spec.dataset.labels)]))


def _float_twin(spec: Spec, data: Dataset, stages: Stages, versions: str, committed: bytes) -> Path | None:
    """This machine's train cache entry whose int8 model is the committed one, if there is one.

    With it the float model is at hand (float accuracy, the training curve); without it the
    committed model is verified without its float twin (float accuracy n/a).
    """
    key = stage_key("train", spec.section_hash("dataset", "model", "training"), data.fingerprint, versions)
    train_dir = stages.cache / f"train-{key}"
    if not (train_dir / "model.keras").is_file():
        return None
    quantized = stages.cache / f"quantize-{_quantize_key(spec, 'spec', _weights_key(train_dir))}" / "model.tflite"
    return train_dir if quantized.is_file() and quantized.read_bytes() == committed else None


def _with_input_shape(spec: Spec, shape: tuple[int, ...]) -> Spec:
    """The spec with the model's input shape; a spec that names another shape is an error."""
    if spec.dataset.input_shape and tuple(spec.dataset.input_shape) != tuple(shape):
        raise SpecError(f"{spec.path}: 'dataset.input_shape' is {list(spec.dataset.input_shape)} but the model in "
                        f"'model.file' takes {list(shape)}; remove input_shape or make them match.")
    return replace(spec, dataset=replace(spec.dataset, input_shape=tuple(shape)))


def _classes(spec: Spec, float_model: Any, file_info: ModelInfo | None) -> int | None:
    """How many classes the model outputs (bounds the data's labels); None when not known yet."""
    if file_info is not None:
        return int(file_info.output.shape[-1])
    if float_model is not None and hasattr(float_model, "output_shape"):
        shape = float_model.output_shape
        return int(shape[-1]) if shape and isinstance(shape[-1], int) else None
    return len(spec.dataset.labels) or None


def test_vectors(spec: Spec, tflite: bytes, info: ModelInfo, data: Dataset | None, verification: Verification,
                 seed: int) -> TestVectors:
    """The inputs the device checks itself on, with host TFLM's outputs for them.

    With labelled data: ``codegen.test_images`` test images host TFLM classifies correctly, the first
    of each class first (so the check tests the port, not the model's error rate); their raw pixels
    are embedded for an int8 input (the app quantizes them, as it would a camera frame), the int16
    values themselves for a 16x8 model's. Without data: seeded random inputs over the model's whole
    input range.
    """
    if data is not None:
        chosen = select_test_images(data.y_test, spec.codegen.test_images, int(info.output.shape[-1]),
                                    np.asarray(verification.tflm_predictions))
        pixels = data.x_test[chosen]
        inputs = quantize_input(pixels, spec, info)
        outputs = run_tflm(tflite, inputs).reshape(len(chosen), -1)
        return TestVectors(inputs.reshape(len(chosen), -1), outputs, pixels if info.input.dtype == "int8" else None,
                           data.y_test[chosen],
                           f"{len(chosen)} test-set images (never training images) that host TFLM classifies "
                           f"correctly, first of each class first")
    inputs = random_inputs(info, spec.codegen.test_images, seed)
    outputs = run_tflm(tflite, inputs).reshape(len(inputs), -1)
    return TestVectors(inputs.reshape(len(inputs), -1), outputs, None, None,
                       f"{len(inputs)} seeded random {info.input.dtype} inputs (seed {seed}) over the model's whole "
                       f"input range; "
                       f"no data was given")


def _write_outputs(spec: Spec, work: Path, train_dir: Path | None, tflite: bytes, history: dict[str, list[float]],
                   verification: Verification, data: Dataset | None, timings: dict[str, StageTime]) -> None:
    """The user-facing artifacts: model files and plots next to each other in the work folder."""
    write_if_changed(work / f"{spec.name}.tflite", tflite)
    if train_dir is not None:
        write_if_changed(work / f"{spec.name}.keras", (train_dir / "model.keras").read_bytes())
    all_cached = all(t.cached for name, t in timings.items() if name in ("train", "quantize", "verify"))
    curve, confusion = work / "training.png", work / "confusion.png"
    if history and not (all_cached and curve.is_file()):
        training_curve(history, curve, f"{spec.name}: training")
    if data is not None and verification.tflm_accuracy is not None and not (all_cached and confusion.is_file()):
        classes = max(len(spec.dataset.labels), int(data.y_test.max()) + 1, max(verification.tflm_predictions) + 1)
        names = spec.dataset.labels or tuple(str(i) for i in range(classes))
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
    if v.tflm_accuracy is not None and v.tflm_accuracy < spec.acceptance.min_int8_accuracy:
        faults.append(f"int8 TFLM accuracy {v.tflm_accuracy:.2f} % is below acceptance.min_int8_accuracy "
                      f"{spec.acceptance.min_int8_accuracy:g} %")
    if v.accuracy_drop > spec.acceptance.max_accuracy_drop:
        faults.append(f"float->int8 drop {v.accuracy_drop:.2f} points exceeds acceptance.max_accuracy_drop "
                      f"{spec.acceptance.max_accuracy_drop:g}")
    if v.ref_by_design_mismatches:
        op = (v.first_divergence or {}).get("op", "?")
        cost = (f"on {v.ref_by_design_mismatches:,} of {v.images:,} inputs TFLM's {op} kernel gives other int8 "
                f"outputs than TFLite's (by design)")
        if v.kernel_accuracy_gap > spec.acceptance.max_kernel_accuracy_gap:
            faults.append(f"{cost}, and TFLM's accuracy is {v.kernel_accuracy_gap:.2f} points below TFLite's: more "
                          f"than acceptance.max_kernel_accuracy_gap {spec.acceptance.max_kernel_accuracy_gap:g}")
        if v.kernel_argmax_agreement_percent < spec.acceptance.min_kernel_argmax_agreement:
            faults.append(f"{cost}, and the two pick the same argmax on {v.kernel_argmax_agreement_percent:.2f} % "
                          f"of them: below acceptance.min_kernel_argmax_agreement "
                          f"{spec.acceptance.min_kernel_argmax_agreement:g} % (outputs differ by up to "
                          f"{v.kernel_max_abs_error:.4g}, {v.kernel_mean_abs_error:.3g} on average, dequantized)")
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
    if v.float_accuracy is not None and v.float_accuracy < spec.acceptance.min_int8_accuracy:
        hint = ("The float model itself is below the bar, so training is where accuracy is lost: train "
                "longer (training.epochs), change the model or its training recipe")
    elif v.accuracy_drop > spec.acceptance.max_accuracy_drop or (v.tflm_accuracy or 0.0) < spec.acceptance.min_int8_accuracy:
        hint = ("The float model reaches the bar but the int8 model does not, so quantization is where "
                "accuracy is lost: more or more typical quantization.representative_samples, or layers "
                "that quantize better (ReLU6 over unbounded activations, BatchNormalization folded)")
    elif v.ref_unexplained_mismatches:
        hint = "TFLM and the reference kernels must agree bit for bit before a model is deployed"
    else:
        hint = ("An op whose TFLM kernel differs from TFLite's by design costs this model more than its bars "
                "allow; the device runs TFLM's kernel (it equals host TFLM byte for byte). If the cost is acceptable, "
                "relax the bars: acceptance.max_kernel_accuracy_gap and min_kernel_argmax_agreement in a spec, "
                "--max-kernel-accuracy-gap and --min-kernel-agreement for a model file")
    relax = "" if v.ref_by_design_mismatches and not v.ref_unexplained_mismatches else "; or relax 'acceptance' in the spec"
    raise AcceptanceError(f"{spec.path}: the model misses its acceptance bars: " + "; ".join(faults)
                          + f". Measured {figures}. {hint}{relax}. No sources were generated.")
