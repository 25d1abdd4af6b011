"""Codegen stage: ``.tflite`` -> the C/C++ sources a Zephyr app compiles.

Names follow TFLM's own tooling (``g_<name>_model_data``, ``MicroMutableOpResolver<N>``) so TFLM
users feel at home; what TFLM's tools leave to guesswork (quantization, labels, arena size, test
vectors) goes in small headers beside them.  Output is a pure function of the model bytes, the spec
and the test data: no dates, no absolute paths, so reruns are byte-identical, and every file is
written atomically (and only when its content changed, so firmware builds stay incremental).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .errors import ModelError
from .fileio import sha256_bytes, write_if_changed
from .spec import Spec
from .tflite_model import ModelInfo, per_channel_ops
from .tflm_ops import advice, resolver_method, unsupported_ops
from .verify import quantize_input

GENERATED_FILES = ("model_data.h", "model_data.cc", "model_settings.h", "op_resolver.h",
                   "test_images.h", "test_images.cc")


@dataclass(frozen=True)
class Generated:
    """What the codegen wrote: folder, file names, and the numbers an app depends on."""

    folder: Path
    files: tuple[str, ...]
    changed: tuple[str, ...]
    arena_size: int
    test_labels: tuple[int, ...]


def arena_size(measured: int, margin_percent: float, alignment: int) -> int:
    """Arena to allocate: the measured bytes plus the margin, rounded up to ``alignment``."""
    with_margin = math.ceil(measured * (1.0 + margin_percent / 100.0))
    return -(-with_margin // alignment) * alignment


def select_test_images(labels: np.ndarray, count: int, classes: int,
                       predictions: np.ndarray | None = None) -> list[int]:
    """Indices of ``count`` test images: the first of each class in test-set order, then the next ones.

    With ``predictions`` (host TFLM's), only images the model classifies correctly are taken, so
    the on-target check "every embedded image prints CORRECT" tests the port, not the model's
    0.8 % error rate (the full test-set accuracy is reported separately).  Covers every class
    whenever ``count >= classes``; deterministic for the same test set and model.
    """
    eligible = np.ones(len(labels), dtype=bool) if predictions is None else (np.asarray(predictions) == labels)
    chosen: list[int] = []
    for cls in range(classes):
        hits = np.flatnonzero((labels == cls) & eligible)
        if hits.size and len(chosen) < count:
            chosen.append(int(hits[0]))
    taken = set(chosen)
    for index in np.flatnonzero(eligible):
        if len(chosen) >= count:
            break
        if int(index) not in taken:
            chosen.append(int(index))
            taken.add(int(index))
    return chosen


def check_ops(info: ModelInfo, origin: str) -> None:
    """Refuse a model with ops the device's TFLM cannot register (names them and what to do)."""
    missing = unsupported_ops(info.ops)
    if missing:
        hints = "; ".join(f"{op}: {advice(op)}" for op in missing)
        raise ModelError(f"{origin} uses ops that TFLM on the device cannot run: {', '.join(missing)}. "
                         f"{hints}. Supported ops are the Add*() methods of MicroMutableOpResolver.")


def check_quantization(tflite: bytes, origin: str) -> None:
    """Refuse per-channel FULLY_CONNECTED weights: the TFLM of Zephyr 3.x applies only the first scale.

    Such a model runs, but its outputs differ from host TFLM on nearly every input (seen here: 200 of
    200 images, 98.5 % on the device against 99.5 % on the host), so it is refused at generation time.
    """
    offenders = per_channel_ops(tflite)
    if offenders:
        raise ModelError(f"{origin} has per-channel quantized FULLY_CONNECTED weights ({', '.join(offenders)}); "
                         f"the device's TFLM supports only per-tensor scales there. Convert with "
                         f"_experimental_disable_per_channel_quantization_for_dense_layers (zephyr-tinyml's "
                         f"quantize stage does).")


def generate(spec: Spec, tflite: bytes, info: ModelInfo, arena_measured: int,
             test_images: np.ndarray, test_labels: np.ndarray, out_dir: Path | None = None) -> Generated:
    """Write the model, settings, resolver and test-image sources into ``out_dir``."""
    check_ops(info, f"the model of {spec.path.name}")
    check_quantization(tflite, f"the model of {spec.path.name}")
    if info.input.dtype != "int8" or info.output.dtype != "int8":
        raise ModelError(f"the model's input/output are {info.input.dtype}/{info.output.dtype}; the "
                         f"generated app expects int8 for both (quantization.input_type/output_type).")
    labels = info.labels or spec.labels
    if len(labels) != info.output.shape[-1]:
        raise ModelError(f"the model has {info.output.shape[-1]} outputs but {len(labels)} labels.")
    folder = Path(out_dir or spec.output_dir)
    arena = arena_size(arena_measured, spec.arena_margin_percent, spec.arena_alignment)
    stamp = (f"// Generated by zephyr-tinyml {__version__} from {spec.path.name} "
             f"(spec sha256 {spec.file_hash()[:16]}, model sha256 {sha256_bytes(tflite)[:16]}).\n"
             f"// Do not edit: rerun `west tinyml build {spec.name}`.\n")
    sources = {
        "model_data.h": _model_data_h(spec, stamp),
        "model_data.cc": _model_data_cc(spec, stamp, tflite),
        "model_settings.h": _settings_h(spec, stamp, info, labels, arena, arena_measured,
                                        input_quantization_table(spec, info)),
        "op_resolver.h": _resolver_h(stamp, info),
        "test_images.h": _test_images_h(stamp, len(test_labels)),
        "test_images.cc": _test_images_cc(stamp, test_images, test_labels, labels),
    }
    changed = tuple(name for name, text in sources.items() if write_if_changed(folder / name, text))
    return Generated(folder, tuple(sources), changed, arena, tuple(int(x) for x in test_labels))


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _c_float(value: float) -> str:
    """A C float literal that rounds to the same float32 as ``np.float32(value)``."""
    return f"{float(value)!r}f"


def _int_rows(values: np.ndarray, per_row: int) -> str:
    flat = [int(v) for v in np.asarray(values).reshape(-1)]
    return "\n".join("    " + ", ".join(str(v) for v in flat[i:i + per_row]) + ","
                     for i in range(0, len(flat), per_row))


def _hex_rows(data: bytes, per_row: int = 12) -> str:
    rows = []
    for start in range(0, len(data), per_row):
        rows.append("    " + ", ".join(f"0x{b:02x}" for b in data[start:start + per_row]) + ",")
    return "\n".join(rows)


def _model_data_h(spec: Spec, stamp: str) -> str:
    return f"""{stamp}
#ifndef TINYML_MODEL_DATA_H_
#define TINYML_MODEL_DATA_H_

// The int8 TFLite flatbuffer, 16-byte aligned as TFLM requires.
extern const unsigned char g_{spec.name}_model_data[];
extern const unsigned int g_{spec.name}_model_data_size;

#endif  // TINYML_MODEL_DATA_H_
"""


def _model_data_cc(spec: Spec, stamp: str, tflite: bytes) -> str:
    return f"""{stamp}
#include "model_data.h"

alignas(16) const unsigned char g_{spec.name}_model_data[] = {{
{_hex_rows(tflite)}
}};
const unsigned int g_{spec.name}_model_data_size = {len(tflite)};
"""


def input_quantization_table(spec: Spec, info: ModelInfo) -> np.ndarray:
    """The model input for every 8-bit pixel value, by the very function host verification uses."""
    return quantize_input(np.arange(256, dtype=np.uint8), spec, info).reshape(256)


def _settings_h(spec: Spec, stamp: str, info: ModelInfo, labels: tuple[str, ...], arena: int,
                measured: int, table: np.ndarray) -> str:
    in_shape = ", ".join(map(str, info.input.shape))
    out_shape = ", ".join(map(str, info.output.shape))
    label_lines = "\n".join(f"    {_c_string(label)}," for label in labels)
    return f"""{stamp}
#ifndef TINYML_MODEL_SETTINGS_H_
#define TINYML_MODEL_SETTINGS_H_

#include <cstddef>
#include <cstdint>

#include "model_data.h"

#define TINYML_MODEL_DATA g_{spec.name}_model_data

namespace tinyml {{

constexpr char kModelName[] = {_c_string(spec.name)};
constexpr size_t kModelDataSize = {info.size};

// Input: int8, from 8-bit pixels (every channel alike) by exactly the host pipeline's arithmetic:
//   real = pixel * kInputNormScale + kInputNormOffset       (float32; the spec's dataset.normalization)
//   q    = clamp(round_half_to_even(real / kInputScale) + kInputZeroPoint, -128, 127)
// QuantizeInput() looks q up in kInputQuantization, which the host computed with that formula for
// all 256 pixel values: the device cannot round differently (an FPU's fused multiply-add would).
constexpr int kInputDims = {len(info.input.shape)};
constexpr int kInputShape[kInputDims] = {{{in_shape}}};
constexpr int kInputSize = {int(np.prod(info.input.shape))};
constexpr float kInputNormScale = {_c_float(spec.norm_scale)};
constexpr float kInputNormOffset = {_c_float(spec.norm_offset)};
constexpr float kInputScale = {info.input.scale!r}f;
constexpr int32_t kInputZeroPoint = {info.input.zero_point};

constexpr int8_t kInputQuantization[256] = {{
{_int_rows(table, 16)}
}};

// One pixel value (0-255) -> the model's int8 input.
inline int8_t QuantizeInput(uint8_t pixel) {{ return kInputQuantization[pixel]; }}

// A whole image of raw pixels (HWC order, as the model's input) -> the input tensor's int8 data.
inline void QuantizeImage(const uint8_t* pixels, int8_t* input, size_t count = kInputSize) {{
  for (size_t i = 0; i < count; i++) {{
    input[i] = kInputQuantization[pixels[i]];
  }}
}}

// Output: int8 scores, real = (q - kOutputZeroPoint) * kOutputScale
constexpr int kOutputDims = {len(info.output.shape)};
constexpr int kOutputShape[kOutputDims] = {{{out_shape}}};
constexpr int kNumClasses = {info.output.shape[-1]};
constexpr float kOutputScale = {info.output.scale!r}f;
constexpr int32_t kOutputZeroPoint = {info.output.zero_point};

// Tensor arena: {measured} bytes measured by host TFLM (64-bit, larger than on a 32-bit MCU),
// plus {spec.arena_margin_percent:g} % margin, rounded up to {spec.arena_alignment} bytes.
constexpr size_t kTensorArenaSize = {arena};
constexpr size_t kArenaMeasuredHostBytes = {measured};

constexpr const char* const kCategoryLabels[kNumClasses] = {{
{label_lines}
}};

}}  // namespace tinyml

#endif  // TINYML_MODEL_SETTINGS_H_
"""


def _resolver_h(stamp: str, info: ModelInfo) -> str:
    ops = info.unique_ops
    adds = "\n".join(f"  TF_LITE_ENSURE_STATUS(resolver.Add{resolver_method(op)}());  // {op}" for op in ops)
    return f"""{stamp}
#ifndef TINYML_OP_RESOLVER_H_
#define TINYML_OP_RESOLVER_H_

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

namespace tinyml {{

// Exactly the ops the model uses: nothing else is linked in.
constexpr int kNumOps = {len(ops)};
using OpResolver = tflite::MicroMutableOpResolver<kNumOps>;

inline TfLiteStatus RegisterOps(OpResolver& resolver) {{
{adds}
  return kTfLiteOk;
}}

}}  // namespace tinyml

#endif  // TINYML_OP_RESOLVER_H_
"""


def _test_images_h(stamp: str, count: int) -> str:
    return f"""{stamp}
#ifndef TINYML_TEST_IMAGES_H_
#define TINYML_TEST_IMAGES_H_

#include <cstdint>

#include "model_settings.h"

namespace tinyml {{

// Images from the test set (never the training set) that host TFLM classifies correctly: the first
// of each class, then the next ones. Raw 8-bit pixels: the app quantizes them with QuantizeImage(),
// as it would a camera frame.
constexpr int kNumTestImages = {count};
extern const uint8_t kTestImages[kNumTestImages][kInputSize];
extern const uint8_t kTestLabels[kNumTestImages];

}}  // namespace tinyml

#endif  // TINYML_TEST_IMAGES_H_
"""


def _test_images_cc(stamp: str, images: np.ndarray, labels: np.ndarray, names: tuple[str, ...]) -> str:
    blocks = []
    for image, label in zip(images, labels):
        flat = image.reshape(-1).astype(np.uint8)
        rows = []
        for start in range(0, flat.size, 28):
            rows.append("        " + ", ".join(f"{int(v)}" for v in flat[start:start + 28]) + ",")
        blocks.append(f"    {{  // label {int(label)} ({names[int(label)]})\n" + "\n".join(rows) + "\n    },")
    label_list = ", ".join(str(int(x)) for x in labels)
    return f"""{stamp}
#include "test_images.h"

namespace tinyml {{

const uint8_t kTestImages[kNumTestImages][kInputSize] = {{
{chr(10).join(blocks)}
}};

const uint8_t kTestLabels[kNumTestImages] = {{{label_list}}};

}}  // namespace tinyml
"""
