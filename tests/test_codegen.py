"""Codegen stage: sizes, test-image choice, resolver names, and refusal of unsupported models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import spec_dict, write_spec
from zephyr_tinyml.model.codegen import TestVectors, arena_size, generate, select_test_images
from zephyr_tinyml.errors import ModelError
from zephyr_tinyml.model.spec import load_spec
from zephyr_tinyml.model.tflite_model import inspect_model
from zephyr_tinyml.model.tflm_ops import resolver_method, unsupported_ops


def test_arena_size_adds_margin_and_aligns():
    assert arena_size(10480, 5, 16) == 11008      # 11004 rounded up to 16
    assert arena_size(1000, 0, 16) == 1008
    assert arena_size(1024, 0, 16) == 1024


def test_resolver_method_names_match_tflm():
    assert [resolver_method(op) for op in ("CONV_2D", "MAX_POOL_2D", "FULLY_CONNECTED", "RESHAPE",
                                           "DEPTHWISE_CONV_2D", "BATCH_TO_SPACE_ND", "ADD_N", "RELU6",
                                           "L2_POOL_2D", "CUMSUM", "UNIDIRECTIONAL_SEQUENCE_LSTM")] == [
        "Conv2D", "MaxPool2D", "FullyConnected", "Reshape", "DepthwiseConv2D", "BatchToSpaceNd", "AddN",
        "Relu6", "L2Pool2D", "CumSum", "UnidirectionalSequenceLSTM"]
    assert unsupported_ops(["CONV_2D", "GELU", "REVERSE_V2", "GELU"]) == ["GELU", "REVERSE_V2"]


def test_test_images_cover_every_class_in_order():
    labels = np.array([7, 2, 1, 0, 4, 1, 4, 9, 5, 9, 0, 6, 9, 0, 1, 5, 9, 7, 3, 8])
    chosen = select_test_images(labels, 12, 10)
    assert sorted(set(labels[chosen[:10]].tolist())) == list(range(10))
    assert len(chosen) == len(set(chosen)) == 12
    assert chosen == select_test_images(labels, 12, 10)


def test_test_images_skip_ones_the_model_gets_wrong():
    labels = np.array([7, 2, 1, 0, 4, 1, 4, 9, 5, 9, 0, 6, 9, 0, 1, 5, 9, 7, 3, 8, 3])
    predictions = labels.copy()
    predictions[18] = 5                      # the first 3 is misclassified
    chosen = select_test_images(labels, 10, 10, predictions)
    assert 18 not in chosen and 20 in chosen
    assert sorted(labels[chosen].tolist()) == list(range(10))


def test_corrupt_tflite_is_refused(tmp_path: Path):
    with pytest.raises(ModelError, match="not a TFLite model"):
        inspect_model(b"\x00" * 64, tmp_path / "x.tflite")
    with pytest.raises(ModelError, match="not a readable TFLite model"):
        inspect_model(b"\x1c\x00\x00\x00TFL3" + b"\xff" * 200, tmp_path / "y.tflite")


def _int8_model_with(layer_factory) -> bytes:
    """A tiny real int8 model whose middle layer produces the op under test."""
    import keras
    import tensorflow as tf

    model = keras.Sequential([keras.Input((8,), batch_size=1), keras.layers.Dense(8), layer_factory(),
                              keras.layers.Dense(2)])

    def representative():
        for _ in range(10):
            yield [np.random.default_rng(0).random((1, 8), dtype=np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def _vectors() -> TestVectors:
    return TestVectors(np.zeros((1, 8), np.int8), np.zeros((1, 2), np.int8))


def test_op_tflm_lacks_is_refused_and_nothing_written(tmp_path: Path):
    import keras

    tflite = _int8_model_with(lambda: keras.layers.Lambda(lambda x: keras.ops.flip(x, axis=1)))
    info = inspect_model(tflite)
    assert "REVERSE_V2" in info.ops
    spec = load_spec(write_spec(tmp_path, spec_dict()))
    with pytest.raises(ModelError) as err:
        generate(spec, tflite, info, 1000, _vectors(), tmp_path / "out")
    assert "REVERSE_V2" in str(err.value) and "cannot run" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_per_channel_dense_is_refused(tmp_path: Path):
    import keras

    tflite = _int8_model_with(lambda: keras.layers.Dense(8))   # TF 2.19 default: per-channel Dense
    spec = load_spec(write_spec(tmp_path, spec_dict()))
    with pytest.raises(ModelError, match="per-channel quantized FULLY_CONNECTED"):
        generate(spec, tflite, inspect_model(tflite), 1000, _vectors(), tmp_path / "out")
    assert not (tmp_path / "out").exists()
