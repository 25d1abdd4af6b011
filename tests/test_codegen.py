"""Codegen stage: sizes, test-image choice, resolver names, and refusal of unsupported models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import spec_dict, write_spec
from zephyr_tinyml.model.arena import device_arena_size, host_arena_size, record_device_arena
from zephyr_tinyml import packbits
from zephyr_tinyml.model.codegen import TestVectors, generate, select_test_images
from zephyr_tinyml.errors import ModelError, TinymlError
from zephyr_tinyml.model.spec import load_spec
from zephyr_tinyml.model.tflite_model import inspect_model
from zephyr_tinyml.model.tflm_ops import resolver_method, unsupported_ops


def test_arena_size_adds_margin_and_aligns():
    assert host_arena_size(10480, 5, 16) == 11008      # 11004 rounded up to 16
    assert host_arena_size(1000, 0, 16) == 1008
    assert host_arena_size(1024, 0, 16) == 1024
    # On the device: 1 % over arena_used_bytes(), aligned; never more than 2 % over for real arenas.
    assert device_arena_size(8948) == 9040
    for used in (660, 6788, 8884, 38100, 47700):
        assert used < device_arena_size(used) <= 1.02 * used and device_arena_size(used) % 16 == 0


def test_test_inputs_pack_and_unpack_exactly():
    rng = np.random.default_rng(0)
    cases = [b"", b"\x00", b"\x00" * 784, bytes(range(256)) * 3, b"\x07\x07" + b"\x00" * 300 + b"\x01\x02",
             rng.integers(0, 256, 1000, dtype=np.uint8).tobytes()]
    sparse = np.zeros(784, np.uint8)
    sparse[rng.integers(0, 784, 150)] = rng.integers(1, 256, 150)
    cases.append(sparse.tobytes())
    for data in cases:
        assert packbits.unpack(packbits.pack(data), len(data)) == data
    assert len(packbits.pack(b"\x00" * 784)) == 14                   # runs of at most 128
    assert len(packbits.pack(cases[5])) <= 1000 + 8                   # random data: 1 byte per 128 more


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


def _int8_model_with(layer_factory, per_tensor_dense: bool = False) -> bytes:
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
    if per_tensor_dense:   # as the quantize stage converts, for the device's TFLM
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
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


def test_device_arena_is_recorded_per_kernel_build_and_regenerates_identically(tmp_path: Path):
    """A device measurement rewrites model_arena.h exactly as a fresh generate() with it would."""
    import keras

    tflite = _int8_model_with(lambda: keras.layers.ReLU(), per_tensor_dense=True)
    info = inspect_model(tflite)
    assert "FULLY_CONNECTED" in info.int8_ops
    spec = load_spec(write_spec(tmp_path, spec_dict()))
    out = tmp_path / "out"
    generate(spec, tflite, info, 1000, _vectors(), out, ("a", "b"))
    header = (out / "model_arena.h").read_text()
    assert "kTensorArenaSize = 1056;" in header and "Not measured on a device" in header   # 1000 + 5 %
    assert "TINYML_KERNELS ==" not in header
    resolver = (out / "op_resolver.h").read_text()
    assert "AddFullyConnected(tflite::Register_FULLY_CONNECTED_INT8())" in resolver

    assert record_device_arena(out, "cmsis-nn", 704, 690, "qemu_cortex_m3")
    assert not record_device_arena(out, "cmsis-nn", 704, 690, "qemu_cortex_m3")     # nothing new
    assert record_device_arena(out, "cmsis-nn-dsp", 720, 700, "mps2_an521")
    # Another board of the same kernel build: one needing no more keeps the recorded arena and its
    # board (the sources do not depend on the order boards ran in); one needing more replaces it;
    # the recorded board's own new figure replaces it.
    assert not record_device_arena(out, "cmsis-nn", 704, 690, "qemu_cortex_m0")
    assert not record_device_arena(out, "cmsis-nn-dsp", 688, 680, "mps3_an547")
    assert "on mps2_an521" in (out / "model_arena.h").read_text()
    assert record_device_arena(out, "cmsis-nn-dsp", 736, 720, "mps3_an547")
    assert "AllocateTensors() needs 736 bytes on mps3_an547" in (out / "model_arena.h").read_text()
    assert record_device_arena(out, "cmsis-nn-dsp", 720, 700, "mps3_an547")
    header = (out / "model_arena.h").read_text()
    assert "#if TINYML_POINTERS_32BIT && TINYML_KERNELS == TINYML_KERNELS_CMSIS_NN\n" in header
    assert "#elif TINYML_POINTERS_32BIT && TINYML_KERNELS == TINYML_KERNELS_CMSIS_NN_DSP\n" in header
    assert f"kTensorArenaSize = {device_arena_size(704)};" in header and "kTensorArenaSize = 1056;" in header
    assert "AllocateTensors() needs 704 bytes on qemu_cortex_m3 (arena_used_bytes() 690)" in header
    assert header.index("#else") < header.index("kTensorArenaSize = 1056;") < header.index("#endif")
    # Another TFLM revision (the pair a newer Zephyr release pins) is another configuration of the
    # same kernel build: one needing more replaces the record and names its revision; a later run
    # of the first revision, needing less, keeps it (the arena must hold for both releases).
    assert record_device_arena(out, "cmsis-nn", 752, 740, "qemu_cortex_m3", "48613f7ba1ff")
    assert "needs 752 bytes on qemu_cortex_m3 with tflite-micro 48613f7ba1ff" in (out / "model_arena.h").read_text()
    assert not record_device_arena(out, "cmsis-nn", 704, 690, "qemu_cortex_m3", "1a34dcab41e7")
    assert not record_device_arena(out, "cmsis-nn", 704, 690, "qemu_cortex_m3")
    assert f"kTensorArenaSize = {device_arena_size(752)};" in (out / "model_arena.h").read_text()

    # Regenerating the same model keeps the measurements, byte for byte; another model drops them.
    before = {name: (out / name).read_bytes() for name in ("model_arena.h", "tinyml_model.json")}
    generate(spec, tflite, info, 1000, _vectors(), out, ("a", "b"))
    assert {name: (out / name).read_bytes() for name in before} == before
    other = _int8_model_with(lambda: keras.layers.Dense(4), per_tensor_dense=True)
    generate(spec, other, inspect_model(other), 1000, _vectors(), out, ("a", "b"))
    assert "TINYML_KERNELS ==" not in (out / "model_arena.h").read_text()

    with pytest.raises(TinymlError, match="kernels='fast'"):
        record_device_arena(out, "fast", 704, 700, "qemu_cortex_m3")
    with pytest.raises(TinymlError, match="arena_needed=700 with arena_used=704"):
        record_device_arena(out, "cmsis-nn", 700, 704, "qemu_cortex_m3")    # needs less than it used: not ours
