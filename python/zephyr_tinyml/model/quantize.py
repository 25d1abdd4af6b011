"""Quantize stage: Keras float model -> full-integer int8 ``.tflite`` with labels as metadata.

Exported with a fixed batch of 1: with a dynamic batch, Keras 3's Flatten lowers to SHAPE +
STRIDED_SLICE + PACK + RESHAPE, which costs flash and fails on devices whose resolver lacks SHAPE.
The representative set is drawn (seeded) from the training images only.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any, Iterator

import numpy as np

from .data import Dataset, image_shape, normalize
from ..errors import ModelError
from ..fileio import captured_fd
from .spec import Spec
from .model_file import SavedModelPredictor
from .tflite_metadata import ClassifierMetadata, write_metadata
from .torch_model import TorchPredictor, torch_to_int8_tflite


def representative_images(spec: Spec, data: Dataset) -> np.ndarray:
    """``quantization.representative_samples`` training images, normalized, seeded choice."""
    rng = np.random.default_rng(spec.training.seed + 1)
    count = min(spec.quantization.representative_samples, len(data.x_train))
    index = np.sort(rng.choice(len(data.x_train), size=count, replace=False))
    return normalize(data.x_train[index], spec.dataset.norm_scale, spec.dataset.norm_offset)


def fixed_batch_model(spec: Spec, model: Any) -> Any:
    """A copy of ``model`` whose input has batch size 1 (same layers, same weights).

    Sequential models (ours, and most notebooks') are rebuilt layer by layer; functional ones are
    cloned onto a batch-1 input.
    """
    import keras

    if isinstance(model, keras.Sequential):
        single = keras.Sequential(
            [keras.Input(shape=spec.dataset.input_shape, batch_size=1, name="input")]
            + [keras.layers.deserialize(keras.layers.serialize(layer)) for layer in model.layers],
            name=spec.name)
    else:
        single = keras.models.clone_model(model, input_tensors=keras.Input(shape=spec.dataset.input_shape, batch_size=1,
                                                                            name="input"))
    single.set_weights(model.get_weights())
    return single


def _converter(spec: Spec, model: Any) -> Any:
    """A TFLite converter for a Keras model or a SavedModel's serving function, at batch size 1."""
    import tensorflow as tf

    if not isinstance(model, SavedModelPredictor):
        return tf.lite.TFLiteConverter.from_keras_model(fixed_batch_model(spec, model))
    signature = tf.TensorSpec((1,) + tuple(spec.dataset.input_shape), model.input_spec.dtype, name=model.input_name)

    @tf.function(input_signature=[signature])
    def serve(x: Any) -> Any:
        return model.function(**{model.input_name: x})

    return tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], model.loaded)


def to_int8_tflite(spec: Spec, model: Any, data: Dataset) -> bytes:
    """Convert with int8 weights, activations, input and output (TFLITE_BUILTINS_INT8 only)."""
    return convert(spec, _converter(spec, model), representative_images(spec, data))


def convert(spec: Spec, converter: Any, samples: np.ndarray) -> bytes:
    """Run ``converter`` to full int8, calibrated on ``samples`` (one batch-1 input each)."""
    import tensorflow as tf

    def representative() -> Iterator[list[np.ndarray]]:
        for sample in samples:
            yield [sample[np.newaxis, ...]]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    # Per-tensor weight scales for FULLY_CONNECTED: the TFLM that Zephyr 3.x ships reads only the
    # first scale of a per-channel Dense, so its outputs would differ from host TFLM on every image.
    converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    # Keras prints its export endpoints and the converter logs from C++: keep the terminal clean,
    # but put what they said into the error if conversion fails.
    with captured_fd(2) as native, contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return bytes(converter.convert())
        except Exception as exc:  # the converter raises many types; all mean "cannot convert"
            failure = exc
    raise ModelError(f"the TFLite converter could not make a full-int8 model of '{spec.name}': {failure}\n"
                     f"{native.getvalue()[-2000:]}Layers that have no int8 kernel must be changed.")


def add_label_metadata(spec: Spec, tflite: bytes, labels: tuple[str, ...] = ()) -> bytes:
    """Embed the class labels and input normalization as standard TFLite metadata.

    The model is then self-describing for any TFLite tool; the codegen reads the labels back from
    here, not from the spec.  The schema's normalization is ``(pixel - mean) / std``; ours is
    ``pixel * scale + offset``, so ``mean = -offset / scale`` and ``std = 1 / scale``.
    """
    meta = ClassifierMetadata(name=spec.name, description=spec.description, labels=tuple(labels or spec.dataset.labels),
                              mean=(-spec.dataset.norm_offset / spec.dataset.norm_scale,), std=(1.0 / spec.dataset.norm_scale,),
                              channels=image_shape(tuple(spec.dataset.input_shape), None, spec.path.name)[2])
    return write_metadata(tflite, meta)


# Part of the quantize stage's cache key: bump when the conversion recipe changes.
RECIPE = "int8-batch1-per-tensor-dense-v2-own-metadata"


def quantize(spec: Spec, model: Any, data: Dataset, labels: tuple[str, ...] = ()) -> bytes:
    """The deployable model: int8 ``.tflite`` with label metadata."""
    return add_label_metadata(spec, to_int8_tflite(spec, model, data), labels)


def quantize_torch(spec: Spec, model: TorchPredictor, data: Dataset, labels: tuple[str, ...] = ()) -> bytes:
    """The deployable model of a PyTorch program (:mod:`.torch_model`): int8 ``.tflite`` with label
    metadata, calibrated on the same representative training images as a Keras model."""
    return add_label_metadata(spec, torch_to_int8_tflite(spec, model, representative_images(spec, data)), labels)
