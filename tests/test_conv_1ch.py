"""zephyr-tinyml's one-input-channel convolution (zephyr/lib/tinyml/conv_1ch.c), compiled for the host
and held against TFLM: real int8 CONV_2D models (Keras, converted by TFLite with per-channel weights)
over random shapes, strides, paddings and activations, run by host TFLM on random inputs; every output
byte of the C kernel must equal TFLM's. Each of its three variants is built (forced with
TINYML_CONV_1CH_FORCE_VARIANT; the loops unrolled for 3- and 5-wide kernels, as the Kconfig default
builds them, and the general loop for the other widths): one pixel per 32-bit sum (Armv6-M's), two pixels per 64-bit sum (the
Cortex-M3's SMLAL) and two taps per dual 16-bit multiply-accumulate (the DSP extension's SMLAD, here
in plain C). The device runs the same file through the generated op resolver; the Zephyr
tier's self tests and UART evaluations prove it there.

Needs a host C compiler (cc or $CC); skipped with the reason otherwise.
"""

from __future__ import annotations

import ctypes
import math
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from zephyr_tinyml.model.sources import generated_model
from zephyr_tinyml.model.tflite_model import inspect_model, tf_lite_interpreter
from zephyr_tinyml.model.verify import run_tflm

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "zephyr" / "lib" / "tinyml" / "conv_1ch.c"
INCLUDE = REPO / "zephyr" / "include"


class Conv(ctypes.Structure):
    """struct tinyml_conv_1ch (zephyr/include/tinyml/conv_1ch.h), field for field."""

    _fields_ = [(name, ctypes.c_int32) for name in (
        "batches", "input_h", "input_w", "filter_h", "filter_w", "out_ch", "output_h", "output_w",
        "stride_h", "stride_w", "pad_h", "pad_w", "input_offset", "output_offset", "act_min", "act_max")] + [
        ("weights", ctypes.c_void_p), ("bias", ctypes.POINTER(ctypes.c_int32)),
        ("multiplier", ctypes.POINTER(ctypes.c_int32)), ("shift", ctypes.POINTER(ctypes.c_int32)),
        ("row", ctypes.c_void_p)]


def _rows(kernel: ctypes.CDLL, filter_w: int, stride_w: int) -> dict[str, int]:
    """The copies of the inner loop that take a shape (tinyml_conv_1ch_row_takes()): the one for any
    shape, and the one unrolled for its width at stride 1 where there is one; by name, as addresses."""
    rows = {"any": ctypes.cast(kernel.tinyml_conv_1ch_row_any, ctypes.c_void_p).value}
    if stride_w == 1 and filter_w in (3, 5):
        rows[str(filter_w)] = ctypes.cast(getattr(kernel, f"tinyml_conv_1ch_row_{filter_w}"), ctypes.c_void_p).value
    return rows


# TINYML_CONV_1CH_VARIANT's values (zephyr/include/tinyml/conv_1ch.h)
VARIANTS = {"plain-sums": 0, "lane-sums": 1, "dual-macs": 2}


def _library(directory: Path, variant: int) -> ctypes.CDLL:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        pytest.skip("no host C compiler (cc or $CC) to build zephyr/lib/tinyml/conv_1ch.c")
    out = directory / f"conv_1ch_{variant}.so"
    subprocess.run([compiler, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-shared", "-fPIC", f"-I{INCLUDE}",
                    f"-DTINYML_CONV_1CH_FORCE_VARIANT={variant}", "-DCONFIG_TINYML_CONV_1CH_UNROLL=1", str(SOURCE), "-o", str(out)],
                   check=True, capture_output=True, text=True)
    return ctypes.CDLL(str(out))


@pytest.fixture(scope="module", params=list(VARIANTS.values()), ids=list(VARIANTS))
def kernel(request, tmp_path_factory) -> ctypes.CDLL:
    return _library(tmp_path_factory.mktemp("conv_1ch"), request.param)


def _model(height: int, width: int, filters: int, kernel: tuple[int, int], strides: tuple[int, int],
           padding: str, activation: str | None, use_bias: bool, seed: int) -> bytes:
    """A one-layer int8 CONV_2D model as the quantize stage converts (per-channel weights)."""
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((height, width, 1), batch_size=1),
                              keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding,
                                                  activation=activation, use_bias=use_bias,
                                                  bias_initializer="random_normal")])

    def representative():
        for _ in range(20):
            yield [rng.uniform(-1.0, 2.0, (1, height, width, 1)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def _quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLM's QuantizeMultiplier (tensorflow/lite/kernels/internal/quantization_util.cc)."""
    if real == 0.0:
        return 0, 0
    fraction, shift = math.frexp(real)
    fixed = int(math.floor(fraction * (1 << 31) + 0.5))   # TfLiteRound: half away from zero, fraction > 0
    if fixed == 1 << 31:
        fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return fixed, shift


def _padding(size: int, filter_size: int, stride: int, out: int) -> int:
    """TFLM's ComputePaddingHeightWidth, the offset before the first row or column."""
    return max((out - 1) * stride + filter_size - size, 0) // 2


def _run_kernel(kernel: ctypes.CDLL, tflite: bytes, image: np.ndarray, strides: tuple[int, int],
                row: int) -> np.ndarray:
    """The C kernel on one int8 input, with the model's weights and TFLM's quantization parameters,
    through the copy of its inner loop at address `row`."""
    interpreter = tf_lite_interpreter(tflite)
    interpreter.allocate_tensors()
    op = interpreter._get_ops_details()[0]
    assert op["op_name"] == "CONV_2D"
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    inp, filt, out = details[op["inputs"][0]], details[op["inputs"][1]], details[op["outputs"][0]]
    weights = interpreter.get_tensor(filt["index"]).astype(np.int8)              # [oc, kh, kw, 1]
    bias_index = op["inputs"][2] if len(op["inputs"]) > 2 else -1
    bias = interpreter.get_tensor(bias_index).astype(np.int32) if bias_index >= 0 else None
    in_scale, in_zp = (float(v) for v in inp["quantization"])
    out_scale, out_zp = out["quantization"]
    filter_scales = filt["quantization_parameters"]["scales"]
    oc, kh, kw, _ = weights.shape
    _, oh, ow, _ = out["shape"]
    _, ih, iw, _ = inp["shape"]
    pairs = [_quantize_multiplier(float(np.float64(np.float32(in_scale)) * np.float64(np.float32(s))
                                        / np.float64(np.float32(out_scale)))) for s in filter_scales]
    multiplier = np.array([m for m, _ in pairs], np.int32)
    shift = np.array([s for _, s in pairs], np.int32)
    # TFLM's CalculateActivationRangeQuantized for a fused RELU: from the output's zero point up.
    act_min, act_max = (max(-128, int(out_zp)), 127) if _has_relu(tflite) else (-128, 127)
    packed = np.zeros(oc * kh * (kw + 1) // 2 * 4, np.int8)    # the larger (16-bit pairs) layout
    conv = Conv(1, ih, iw, kh, kw, oc, oh, ow, strides[0], strides[1], _padding(ih, kh, strides[0], oh),
                _padding(iw, kw, strides[1], ow), -int(in_zp), int(out_zp), act_min, act_max)
    kernel.tinyml_conv_1ch_pack_weights(ctypes.byref(conv), weights.ctypes.data_as(ctypes.c_void_p),
                                        packed.ctypes.data_as(ctypes.c_void_p))
    conv.weights = packed.ctypes.data_as(ctypes.c_void_p)
    conv.bias = bias.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)) if bias is not None else None
    conv.multiplier = multiplier.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
    conv.shift = shift.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
    conv.row = row
    scratch = np.zeros(kh * (ow * strides[1] + kw + 2), np.int32)  # the larger of the variants' sizes
    result = np.zeros((oh, ow, oc), np.int8)
    kernel.tinyml_conv_1ch_s8(ctypes.byref(conv), np.ascontiguousarray(image).ctypes.data_as(ctypes.c_void_p),
                              result.ctypes.data_as(ctypes.c_void_p), scratch.ctypes.data_as(ctypes.c_void_p))
    return result


def _has_relu(tflite: bytes) -> bool:
    """Whether the model's CONV_2D has a fused RELU (read from the flatbuffer)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    op = model.subgraphs[0].operators[0]
    return op.builtinOptions.fusedActivationFunction == schema.ActivationFunctionType.RELU


# height, width, filters, kernel, strides, padding, activation, bias: the first layers of the zoo
# (5x5 same to 8 channels; 3x3 same to 16) and odd sizes, strides over the kernel, valid padding,
# one-row and one-column kernels, a 128-tap kernel (the largest two pixels per sum take).
SHAPES = [
    (28, 28, 8, (5, 5), (1, 1), "same", "relu", True),
    (28, 28, 16, (3, 3), (1, 1), "same", "relu", False),
    (13, 17, 4, (3, 3), (2, 2), "same", None, True),
    (15, 9, 12, (2, 4), (1, 3), "valid", None, True),
    (10, 11, 8, (1, 5), (3, 1), "same", "relu", True),
    (9, 12, 4, (7, 1), (1, 1), "valid", None, False),
    (20, 20, 4, (8, 16), (2, 2), "same", None, True),
    (6, 5, 4, (2, 2), (4, 4), "valid", "relu", True),
]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}-{s[2]}ch-k{s[3][0]}x{s[3][1]}"
                                                     f"-s{s[4][0]}{s[4][1]}-{s[5]}-{s[6] or 'linear'}")
def test_outputs_equal_host_tflm(kernel, shape):
    height, width, filters, size, strides, padding, activation, use_bias = shape
    tflite = _model(height, width, filters, size, strides, padding, activation, use_bias, seed=height * width)
    assert len(inspect_model(tflite).one_channel_convs) == 1
    rng = np.random.default_rng(filters)
    images = rng.integers(-128, 128, (6, height, width, 1), dtype=np.int8)
    images[0] = -128          # the input's extremes: (input + offset) at either end of its range
    images[1] = 127
    tflm = run_tflm(tflite, images)
    for name, row in _rows(kernel, size[1], strides[1]).items():
        for image, expected in zip(images, tflm):
            got = _run_kernel(kernel, tflite, image[:, :, 0], strides, row)
            assert np.array_equal(got, np.asarray(expected).reshape(got.shape)), (
                f"row function {name}: {int(np.sum(got != np.asarray(expected).reshape(got.shape)))} output "
                "bytes differ from TFLM's")


def _tflm_requantize(acc: int, multiplier: int, shift: int) -> int:
    """TFLM's MultiplyByQuantizedMultiplier (tensorflow/lite/kernels/internal/common.h, double
    rounding), transcribed: x * 2^left, SaturatingRoundingDoublingHighMul, RoundingDivideByPOT."""
    left, right = max(shift, 0), max(-shift, 0)
    a = ((acc << left) + 2**31) % 2**32 - 2**31                  # int32 wrap, as the C++ does
    ab = a * multiplier
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    high = _truncate(ab + nudge, 1 << 31)
    mask = (1 << right) - 1
    remainder, threshold = high & mask, (mask >> 1) + (1 if high < 0 else 0)
    return (high >> right) + (1 if remainder > threshold else 0)


def _truncate(numerator: int, denominator: int) -> int:
    """Integer division toward zero (C's), exact for any size."""
    quotient = abs(numerator) // denominator
    return quotient if numerator >= 0 else -quotient


def test_requantization_at_the_extremes(kernel):
    """The kernel's requantization against TFLM's formula where rounding and overflow bite: sums
    near +-2^31 (a large bias), every right shift 0..31, left shifts, ties. A 1x1 kernel with
    weight 1 and input offset 0 makes each sum input + bias; the activation range is the widest,
    so the clamp shows any wrapped value."""
    rng = np.random.default_rng(7)
    inputs = np.array([-128, -1, 0, 1, 127, -64, 63, 5], np.int8)
    for shift in [*range(-31, 1), 1, 2, 4]:
        for bias_value in (0, 2**30, -(2**30), 2**31 - 200, -(2**31) + 200, 12_345, -12_345):
            if shift > 0 and abs(bias_value) > 2**20:
                continue                     # TFLM's own x * 2^left overflows there (undefined)
            multiplier = int(rng.integers(2**30, 2**31))
            bias = np.full(4, bias_value, np.int32)
            mult = np.full(4, multiplier, np.int32)
            shifts = np.full(4, shift, np.int32)
            weights = np.ones(4 * 4, np.int8)    # room for either packed layout of [4, 1, 1, 1]
            conv = Conv(1, 1, len(inputs), 1, 1, 4, 1, len(inputs), 1, 1, 0, 0, 0, 0, -(2**31), 2**31 - 1)
            kernel.tinyml_conv_1ch_pack_weights(ctypes.byref(conv), np.ones(4, np.int8).ctypes.data_as(ctypes.c_void_p),
                                                weights.ctypes.data_as(ctypes.c_void_p))
            conv.weights = weights.ctypes.data_as(ctypes.c_void_p)
            conv.bias = bias.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
            conv.multiplier = mult.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
            conv.shift = shifts.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
            conv.row = _rows(kernel, 1, 1)["any"]
            out = np.zeros((len(inputs), 4), np.int8)
            scratch = np.zeros(4 * len(inputs) + 8, np.int32)
            kernel.tinyml_conv_1ch_s8(ctypes.byref(conv), inputs.ctypes.data_as(ctypes.c_void_p),
                                      out.ctypes.data_as(ctypes.c_void_p), scratch.ctypes.data_as(ctypes.c_void_p))
            expected = [np.int8(((_tflm_requantize(int(x) + bias_value, multiplier, shift) + 128) % 256) - 128)
                        for x in inputs]
            assert out[:, 0].tolist() == [int(v) for v in expected], (shift, bias_value, multiplier)


def test_the_generated_resolver_registers_it_only_for_such_a_layer():
    """mnist's first layer reads one channel: its committed op resolver registers the kernel (and
    the device picks it per node); a model without one (TFLM's micro_speech example, whose first
    layer is a DEPTHWISE_CONV_2D) keeps CMSIS-NN's registration."""
    mnist = REPO / "samples" / "mnist" / "generated"
    assert inspect_model(generated_model(mnist)).one_channel_convs == (5,)
    resolver = (mnist / "op_resolver.h").read_text()
    assert "resolver.AddConv2D(tinyml::Register_CONV_2D_INT8_ONE_CHANNEL<5>())" in resolver
    assert '#include "tinyml/conv_op.h"' in resolver
    speech = REPO.parent / "shared" / "foreign-models" / "micro_speech.tflite"
    if speech.exists():
        assert inspect_model(speech.read_bytes()).one_channel_convs == ()
