"""Train stage: build the spec's Keras model and fit it, seeded and repeatable.

Why this shape: the data stays in memory as numpy arrays (MNIST is 47 MB) and each epoch gets a
fresh, seeded augmentation of the whole training set: whole-pixel shifts alone (cheap), or small
random rotations, zooms and sub-pixel shifts (one batched TF image transform, about 2 s an epoch on
two cores), which a network this small needs to pass 99.3 %.  The learning-rate schedule's step counts are filled in from the
spec so a user only states rates and epochs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import SpecError
from ..fileio import sha256_bytes, write_atomic
from .data import Dataset, DataSource, load_dataset, normalize
from .keras_stack import build_keras_model, check_layers
from .spec import Spec
from .stages import BuildOptions, Stages, UI, library_versions, stage_key

EpochCallback = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    """The trained model and its per-epoch history (loss, accuracy[, val_*], lr, seconds)."""

    model: Any
    history: dict[str, list[float]]


def set_determinism(seed: int) -> None:
    """Seed Python, numpy and TF, and ask TF for deterministic kernels (same spec -> same weights)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def shift_images(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Shift each image by a random whole number of pixels in [-max_shift, max_shift] in x and y.

    Vacated pixels are zero (the MNIST background).  Grouping by offset keeps this vectorised.
    """
    if max_shift == 0:
        return images
    n, height, width = images.shape[:3]
    dx = rng.integers(-max_shift, max_shift + 1, n)
    dy = rng.integers(-max_shift, max_shift + 1, n)
    pad = ((0, 0), (max_shift, max_shift), (max_shift, max_shift)) + ((0, 0),) * (images.ndim - 3)
    padded = np.pad(images, pad)
    out = np.empty_like(images)
    for sx in range(-max_shift, max_shift + 1):
        for sy in range(-max_shift, max_shift + 1):
            idx = np.flatnonzero((dx == sx) & (dy == sy))
            out[idx] = padded[idx, max_shift - sy:max_shift - sy + height, max_shift - sx:max_shift - sx + width]
    return out


def affine_images(images: np.ndarray, max_shift: float, max_degrees: float, max_zoom: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Rotate, zoom and shift each image by random amounts, bilinear, with a zero background.

    Angles are uniform in [-max_degrees, max_degrees] about the image centre, scale factors in
    [1 - max_zoom, 1 + max_zoom] and shifts in [-max_shift, max_shift] pixels (not whole pixels
    here).  The random numbers come from ``rng``, so a seed fixes the result; TF's projective
    transform samples each output pixel independently, so it is the same on every run.
    """
    import tensorflow as tf

    n, height, width = images.shape[:3]
    angle = np.deg2rad(rng.uniform(-max_degrees, max_degrees, n))
    scale = rng.uniform(1.0 - max_zoom, 1.0 + max_zoom, n)
    tx = rng.uniform(-max_shift, max_shift, n)
    ty = rng.uniform(-max_shift, max_shift, n)
    cy, cx = (height - 1) / 2, (width - 1) / 2
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    # Output pixel (x, y) reads input (a0 x + a1 y + a2, b0 x + b1 y + b2): the inverse of
    # "rotate and scale about the centre, then shift".
    dx, dy = -cx - tx, -cy - ty
    zeros = np.zeros(n)
    transforms = np.stack([cos, sin, cos * dx + sin * dy + cx,
                           -sin, cos, -sin * dx + cos * dy + cy, zeros, zeros], axis=1).astype(np.float32)
    batch = tf.convert_to_tensor(images.reshape(n, height, width, -1).astype(np.float32))
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=batch, transforms=transforms, output_shape=[height, width], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT")
    return out.numpy().reshape(images.shape)


def augment(images: np.ndarray, spec: Spec, rng: np.random.Generator) -> np.ndarray:
    """One epoch's augmented copy of ``images`` as the spec's ``training.augmentation`` asks."""
    if spec.training.rotation_degrees or spec.training.zoom:
        return affine_images(images, spec.training.shift_pixels, spec.training.rotation_degrees, spec.training.zoom, rng)
    return shift_images(images, spec.training.shift_pixels, rng)


def _keras_object(kind: str, spec_obj: dict[str, Any], extra: dict[str, Any] | None = None) -> Any:
    """Instantiate a Keras optimizer / loss / schedule from ``class_name`` + ``config``."""
    import keras

    module = {"optimizer": keras.optimizers, "loss": keras.losses,
              "schedule": keras.optimizers.schedules}[kind]
    config = dict(spec_obj.get("config") or {})
    config.update(extra or {})
    return getattr(module, spec_obj["class_name"])(**config)


def _schedule(spec: Spec, steps_per_epoch: int) -> Any | None:
    """The spec's LR schedule with decay/warmup steps derived from epochs (unless given)."""
    if spec.training.lr_schedule is None:
        return None
    config = dict(spec.training.lr_schedule.get("config") or {})
    extra: dict[str, Any] = {}
    warmup = spec.training.warmup_epochs * steps_per_epoch
    if spec.training.lr_schedule["class_name"] == "CosineDecay":
        extra.setdefault("decay_steps", max(1, spec.training.epochs * steps_per_epoch - warmup))
        if warmup and "warmup_steps" not in config:
            extra["warmup_steps"] = warmup
    elif "decay_steps" not in config:
        extra["decay_steps"] = max(1, spec.training.epochs * steps_per_epoch)
    extra = {k: v for k, v in extra.items() if k not in config}
    return _keras_object("schedule", spec.training.lr_schedule, extra)


def train(spec: Spec, data: Dataset, on_epoch: EpochCallback | None = None,
          on_batch: Callable[[int, int], None] | None = None) -> TrainResult:
    """Fit the spec's model on ``data``; ``on_epoch``/``on_batch`` drive a progress display."""
    import keras

    set_determinism(spec.training.seed)
    model = build_keras_model(spec)
    x_all = data.x_train
    y_all = data.y_train
    n_val = int(round(len(x_all) * spec.training.validation_split))
    x_fit, y_fit = x_all[: len(x_all) - n_val], y_all[: len(y_all) - n_val]
    x_val = normalize(x_all[len(x_all) - n_val:], spec.dataset.norm_scale, spec.dataset.norm_offset) if n_val else None
    y_val = y_all[len(y_all) - n_val:] if n_val else None

    steps = -(-len(x_fit) // spec.training.batch_size)
    schedule = _schedule(spec, steps)
    extra = {"learning_rate": schedule} if schedule is not None else {}
    optimizer = _keras_object("optimizer", spec.training.optimizer, extra)
    model.compile(optimizer=optimizer, loss=_keras_object("loss", spec.training.loss), metrics=["accuracy"])

    rng = np.random.default_rng(spec.training.seed)
    history: dict[str, list[float]] = {}
    for epoch in range(spec.training.epochs):
        started = time.perf_counter()
        x_epoch = normalize(augment(x_fit, spec, rng), spec.dataset.norm_scale, spec.dataset.norm_offset)
        callbacks = [_BatchCallback(on_batch, steps)] if on_batch else []
        fit = model.fit(x_epoch, y_fit, batch_size=spec.training.batch_size, epochs=epoch + 1, initial_epoch=epoch,
                        validation_data=(x_val, y_val) if n_val else None, shuffle=True, verbose=0,
                        callbacks=callbacks)
        logs = {key: float(values[-1]) for key, values in fit.history.items()}
        logs["lr"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        logs["seconds"] = time.perf_counter() - started
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        if on_epoch:
            on_epoch(epoch, logs)
    return TrainResult(model, history)


class _BatchCallback:
    """Adapter from Keras' callback protocol to a plain ``(batch, steps)`` function."""

    def __new__(cls, fn: Callable[[int, int], None], steps: int) -> Any:
        import keras

        class Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
                fn(batch + 1, steps)

        return Callback()


def save_history(path: Path, history: dict[str, list[float]]) -> None:
    """History as JSON next to the model (read back for plots and reports)."""
    write_atomic(path, json.dumps(history, indent=1, sort_keys=True))


def train_stage(spec: Spec, data: Dataset, stages: Stages, versions: str, retrain: bool = False) -> Path:
    """The cache folder of the spec's trained model (model.keras, history.json, meta.json), trained if absent.

    Later stages read the saved model.keras even right after training, so a fresh build, a
    train-cache hit and a full-cache hit all quantize the very same artifact.
    """
    key = stage_key("train", spec.section_hash("dataset", "model", "training"), data.fingerprint, versions)
    with stages.stage("train") as timer:
        return stages.cached(timer, f"train-{key}", "model.keras",
                             lambda folder: _train_into(spec, data, stages.ui, folder), force=retrain)


def trained_classifier(spec: Spec, options: BuildOptions, ui: UI) -> Any:
    """The float Keras model of a classifier spec, from its train cache (trained first if absent).

    Used to judge what another model makes (a GAN's digits); runs only the spec, data and train stages.
    """
    import keras

    if not spec.model.layers:
        raise SpecError(f"{spec.path}: a judging classifier must be a spec that trains 'model.layers'.")
    check_layers(spec)
    data = load_dataset(DataSource.of_spec(spec), spec.dataset.input_shape, options.data_dir, options.allow_download)
    train_dir = train_stage(spec, data, Stages(ui, Path(options.work_dir) / "cache"), library_versions())
    return keras.models.load_model(train_dir / "model.keras")


def _train_into(spec: Spec, data: Dataset, ui: UI, folder: Path) -> None:
    result = train(spec, data, on_epoch=lambda e, logs: ui.epoch(e, spec.training.epochs, logs), on_batch=ui.batch)
    result.model.save(folder / "model.keras")
    save_history(folder / "history.json", result.history)
    weights = sha256_bytes(b"".join(w.tobytes() for w in result.model.get_weights()))
    write_atomic(folder / "meta.json", json.dumps({"parameters": int(result.model.count_params()),
                                                   "weights_sha256": weights}))
