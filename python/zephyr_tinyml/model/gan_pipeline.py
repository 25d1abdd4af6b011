"""The pipeline of a GAN spec: train both networks, deploy the generator.

spec -> data -> train (adversarial) -> quantize (generator only) -> verify (host TFLM vs the TFLite
reference kernels on latent vectors) -> quality (the project's classifier labels generated digits,
float and int8) -> acceptance -> codegen (embedded latent vectors with host TFLM's images).
Stages are cached by :mod:`.stages`, keyed by exactly what each depends on.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AcceptanceError
from ..fileio import sha256_bytes, write_atomic, write_if_changed
from .codegen import TestVectors, check_io, check_ops, check_quantization, generate
from .data import Dataset, DataSource, load_dataset
from .gan import GRID_VECTORS, build_generator, grid_png, latent_vectors, to_pixels, train_gan
from .gan_quality import QUALITY_METHOD, Judgement, judge
from .plots import training_curve
from .quantize import convert
from .stages import BuildOptions, BuildResult, Stages, UI, library_versions, stage_key
from .train import save_history, trained_classifier
from .keras_stack import check_layers
from .spec import Spec, load_spec, resolve_spec_path
from .tflite_model import count_macs, inspect_model
from .verify import METHOD as VERIFY_METHOD, Verification, describe_divergence, quantize_real, run_tflm, verify_outputs

RECIPE = "gan-generator-int8-batch1-per-tensor-dense-v1"
EVAL_SEED_OFFSET = 5  # `tinyml eval`'s latent vectors: seed + 5 (training +0, representative +1, grid +2,
                      # verify/quality +3, embedded test vectors +4)
VERIFY_VECTORS = 1000  # latent vectors host TFLM and the TFLite reference kernels must agree on, bit for bit


def to_int8_generator(spec: Spec, generator: Any) -> bytes:
    """The generator as a full-int8 ``.tflite`` at batch 1; representative set: N(0, 1) latent vectors."""
    import tensorflow as tf

    assert spec.model.gan is not None
    single = build_generator(spec, batch_size=1)
    single.set_weights(generator.get_weights())
    samples = latent_vectors(spec.quantization.representative_samples, spec.model.gan.latent_dim, spec.training.seed + 1)
    return convert(spec, tf.lite.TFLiteConverter.from_keras_model(single), samples)


def build_gan(spec: Spec, options: BuildOptions, ui: UI) -> BuildResult:
    """Run every stage for a GAN spec; raises a TinymlError subclass on any user-fixable fault."""
    assert spec.model.gan is not None and spec.quality is not None
    gan, quality_spec = spec.model.gan, spec.quality
    work = Path(options.work_dir)
    stages = Stages(ui, work / "cache")
    with stages.stage("spec", spec.path.name):
        check_layers(spec)
        classifier_spec = load_spec(_classifier_path(spec))
        versions = library_versions()

    with stages.stage("data"):
        data = load_dataset(DataSource.of_spec(spec), spec.dataset.input_shape, options.data_dir, options.allow_download)
        ui.note(f"{len(data.x_train):,} training images from {data.source} (labels unused: the GAN learns "
                f"the images alone)")

    train_key = stage_key("train-gan", spec.section_hash("dataset", "model", "training"), data.fingerprint, versions)
    with stages.stage("train", f"generator and discriminator, {spec.training.epochs} epochs") as timer:
        train_dir = stages.cached(timer, f"train-{train_key}", "generator.keras",
                                  lambda folder: _train_into(spec, data, ui, folder), force=options.retrain)
    meta = json.loads((train_dir / "meta.json").read_text())
    history = json.loads((train_dir / "history.json").read_text())
    generator: Any = None

    def float_generator() -> Any:
        nonlocal generator
        if generator is None:
            import keras

            generator = keras.models.load_model(train_dir / "generator.keras")
        return generator

    quant_key = stage_key("quantize-gan", meta["weights_sha256"], spec.section_hash("quantization", "model"), RECIPE)
    with stages.stage("quantize", "generator only") as timer:
        entry = stages.cached(timer, f"quantize-{quant_key}", "model.tflite",
                              lambda folder: (folder / "model.tflite").write_bytes(
                                  to_int8_generator(spec, float_generator())))
        tflite = (entry / "model.tflite").read_bytes()
        info = inspect_model(tflite, spec.path)
        origin = f"the generator of {spec.path.name}"
        check_ops(info, origin)
        check_quantization(tflite, origin)
        check_io(info, origin)

    # Latent vectors for verification and judging are drawn apart from training's and the representative set's.
    judged = latent_vectors(max(quality_spec.samples, VERIFY_VECTORS), gan.latent_dim, spec.training.seed + 3)
    judged_q = quantize_real(judged, info.input.scale, info.input.zero_point)
    verify_key = stage_key("verify-gan", sha256_bytes(tflite), str(spec.training.seed), str(VERIFY_VECTORS), versions,
                           VERIFY_METHOD)

    def run_verification(folder: Path) -> None:
        result = verify_outputs(tflite, judged_q[:VERIFY_VECTORS], ui.images)
        (folder / "verification.json").write_text(json.dumps(result.to_json()))

    with stages.stage("verify", f"{VERIFY_VECTORS:,} latent vectors: host TFLM vs TFLite reference kernels") as timer:
        entry = stages.cached(timer, f"verify-{verify_key}", "verification.json", run_verification)
        verification = Verification(**json.loads((entry / "verification.json").read_text()))

    quality_key = stage_key("quality", sha256_bytes(tflite), meta["weights_sha256"], classifier_spec.file_hash(),
                            spec.section_hash("quality", "dataset"), versions, QUALITY_METHOD)

    def run_quality(folder: Path) -> None:
        classifier = trained_classifier(classifier_spec, replace(options, work_dir=work.parent /
                                                                 classifier_spec.name, retrain=False), ui)
        z = judged[:quality_spec.samples]
        float_images = float_generator().predict(z, batch_size=500, verbose=0)
        int8_images = dequantize(run_tflm(tflite, judged_q[:quality_spec.samples], ui.images),
                                 info.output.scale, info.output.zero_point)
        judgements = {"float": judge(classifier, classifier_spec, to_pixels(float_images, spec), quality_spec.confidence),
                      "int8": judge(classifier, classifier_spec, to_pixels(int8_images, spec), quality_spec.confidence)}
        write_atomic(folder / "quality.json", json.dumps({k: j.to_json() for k, j in judgements.items()},
                                                         indent=1, sort_keys=True) + "\n")

    with stages.stage("quality", f"{classifier_spec.name} labels {quality_spec.samples:,} generated digits") as timer:
        entry = stages.cached(timer, f"quality-{quality_key}", "quality.json", run_quality)
        quality = {k: Judgement.from_json(v) for k, v in json.loads((entry / "quality.json").read_text()).items()}
        for kind, j in quality.items():
            ui.note(f"{kind:>5} generator: {j.confident_percent:.1f} % confident (>= {quality_spec.confidence:g}), "
                    f"evenness {j.evenness:.3f}, digits {j.histogram}")

    _write_outputs(spec, work, train_dir, tflite, history, judged_q[:GRID_VECTORS], info, quality)
    check_gan_acceptance(spec, verification, quality)

    with stages.stage("codegen"):
        tests = test_vectors(spec, tflite, info)
        generated = generate(spec, tflite, info, verification.arena_host_bytes, tests, options.out_dir)
        macs = count_macs(tflite)

    result = BuildResult(spec, work, work / f"{spec.name}.tflite", info, verification, generated,
                         meta.get("parameters", 0), macs, stages.timings, data.notes,
                         quality={k: j.to_json() for k, j in quality.items()})
    write_atomic(work / "report.json", json.dumps(result.summary(), indent=1, sort_keys=True) + "\n")
    return result


def test_vectors(spec: Spec, tflite: bytes, info: Any) -> TestVectors:
    """``codegen.test_images`` seeded latent vectors (the device's self test) with host TFLM's images."""
    assert spec.model.gan is not None
    latents = quantize_real(latent_vectors(spec.codegen.test_images, spec.model.gan.latent_dim, spec.training.seed + 4),
                               info.input.scale, info.input.zero_point)
    outputs = run_tflm(tflite, latents).reshape(len(latents), -1)
    return TestVectors(latents, outputs, None, None,
                       f"{len(latents)} latent vectors from N(0, 1) (seed {spec.training.seed + 4}); every pixel of each "
                       f"generated image is compared")


def check_gan_acceptance(spec: Spec, v: Verification, quality: dict[str, Judgement]) -> None:
    """Fail the build when the int8 generator misses its bars or differs from the TFLite reference kernels."""
    assert spec.model.gan is not None
    j = quality["int8"]
    faults = []
    if v.ref_mismatches:
        where = describe_divergence(v.first_divergence)
        faults.append(f"{v.ref_mismatches} of {v.images:,} latent vectors give images in host TFLM that differ from "
                      f"the TFLite reference kernels'" + (f" ({where})" if where else ""))
    if j.confident_percent < spec.acceptance.min_confident_percent:
        faults.append(f"the classifier is confident (>= {spec.quality.confidence:g}) about {j.confident_percent:.1f} % "
                      f"of the int8 generator's digits, below acceptance.min_confident_percent "
                      f"{spec.acceptance.min_confident_percent:g} %")
    if j.evenness < spec.acceptance.min_class_evenness:
        faults.append(f"the int8 generator's digits are spread with evenness {j.evenness:.3f} (histogram "
                      f"{j.histogram}), below acceptance.min_class_evenness {spec.acceptance.min_class_evenness:g}")
    if faults:
        f = quality["float"]
        raise AcceptanceError(
            f"{spec.path}: the generator misses its acceptance bars: " + "; ".join(faults)
            + f". Float generator: {f.confident_percent:.1f} % confident, evenness {f.evenness:.3f}. A float figure "
              f"below the bar means training (more epochs, a larger generator); a float figure above it with an "
              f"int8 figure below means quantization (more representative_samples). Or relax 'acceptance' in the "
              f"spec. No sources were generated.")


def _classifier_path(spec: Spec) -> Path:
    assert spec.model.gan is not None
    name = spec.quality.classifier
    if name.endswith((".yaml", ".yml")):
        return resolve_spec_path(str((spec.path.parent / name).resolve()))
    return resolve_spec_path(name)


def judge_pixels(spec: Spec, pixels: np.ndarray, work: Path, data_dir: str | None, ui: UI) -> Judgement:
    """The spec's classifier's labels for generated uint8 images (for `tinyml eval`'s grid)."""
    assert spec.model.gan is not None
    classifier_spec = load_spec(_classifier_path(spec))
    options = BuildOptions(work_dir=work.parent / classifier_spec.name, data_dir=Path(data_dir) if data_dir else None)
    return judge(trained_classifier(classifier_spec, options, ui), classifier_spec, pixels, spec.quality.confidence,
                 keep=len(pixels))


def dequantize(q: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    return (q.astype(np.float32) - zero_point) * np.float32(scale)


def _train_into(spec: Spec, data: Dataset, ui: UI, folder: Path) -> None:
    grids: dict[int, np.ndarray] = {}
    result = train_gan(spec, data, on_epoch=lambda e, logs: ui.epoch(e, spec.training.epochs, logs), on_batch=ui.batch,
                       on_samples=lambda epoch, images: grids.__setitem__(epoch, to_pixels(images, spec)))
    result.generator.save(folder / "generator.keras")
    result.discriminator.save(folder / "discriminator.keras")
    save_history(folder / "history.json", result.history)
    for epoch, pixels in grids.items():
        grid_png(folder / "samples" / f"epoch-{epoch:03d}.png", pixels)
    weights = sha256_bytes(b"".join(w.tobytes() for w in result.generator.get_weights()))
    write_atomic(folder / "meta.json", json.dumps({"parameters": int(result.generator.count_params()),
                                                   "weights_sha256": weights}))


def _write_outputs(spec: Spec, work: Path, train_dir: Path, tflite: bytes, history: dict[str, list[float]],
                   grid_q: np.ndarray, info: Any, quality: dict[str, Judgement]) -> None:
    """Model files, the training samples and curve, and a grid of the int8 generator's digits (host TFLM)
    captioned with the classifier's labels ('?': not confident)."""
    write_if_changed(work / f"{spec.name}.tflite", tflite)
    write_if_changed(work / f"{spec.name}_generator.keras", (train_dir / "generator.keras").read_bytes())
    for png in sorted((train_dir / "samples").glob("*.png")):
        write_if_changed(work / "samples" / png.name, png.read_bytes())
    training_curve(history, work / "training.png", f"{spec.name}: adversarial training")
    images = dequantize(run_tflm(tflite, grid_q), info.output.scale, info.output.zero_point)
    grid_png(work / "int8_digits.png", to_pixels(images, spec), captions=quality["int8"].captions())
