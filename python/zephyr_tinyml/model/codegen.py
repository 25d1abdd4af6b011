"""Codegen stage: ``.tflite`` -> the C/C++ sources a Zephyr app compiles.

Names follow TFLM's own tooling (``g_<name>_model_data``, ``MicroMutableOpResolver<N>``) so TFLM
users feel at home; what TFLM's tools leave to guesswork (quantization, labels, arena size, test
vectors) goes in small headers beside them.  Output is a pure function of the model bytes, the spec
and the test data: no dates, no absolute paths, so reruns are byte-identical, and every file is
written atomically (and only when its content changed, so firmware builds stay incremental).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__, packbits
from ..errors import ModelError
from ..fileio import sha256_bytes, write_if_changed
from .spec import Spec
from .arena import ARENA_HEADER, FACTS, arena_facts, arena_h, previous_measurements
from .tflite_model import ModelInfo, per_channel_ops
from .tflm_ops import INT8_REGISTRATIONS, advice, resolver_method, unsupported_ops
from .verify import quantize_input

GENERATED_FILES = ("model_data.h", "model_data.cc", "model_settings.h", "model_arena.h", "op_resolver.h",
                   "test_data.h", "test_data.cc", "tinyml_model.json")
MODEL_FACTS = FACTS  # tinyml_model.json: one name, arena.py records device measurements in it


@dataclass(frozen=True)
class TestVectors:
    """What the device checks itself against: K inputs and the int8 outputs host TFLM gave for them.

    Image classifiers embed raw 8-bit ``pixels`` (the app quantizes them as it would a camera frame)
    and their ``labels``; other models embed the int8 ``inputs`` themselves.
    """

    __test__ = False  # not a pytest class, despite the name

    inputs: np.ndarray                 # int8, K × input size: exactly what the model is given
    outputs: np.ndarray                # int8, K × output size: host TFLM's outputs for them
    pixels: np.ndarray | None = None   # uint8, K × H × W × C (image models)
    labels: np.ndarray | None = None   # true classes (classifiers with labelled data)
    origin: str = ""                   # one line for the header: where the inputs came from


@dataclass(frozen=True)
class Generated:
    """What the codegen wrote: folder, file names, and the numbers an app depends on."""

    folder: Path
    files: tuple[str, ...]
    changed: tuple[str, ...]
    arena_size: int
    test_labels: tuple[int, ...]
    model_symbol: str = ""


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


# Element types of the input and output tensors the generated apps feed and read: full-int8 models,
# and 16-bit-activation models (TFLite's int16x8 mode: int16 activations, int8 weights), which TFLM
# and CMSIS-NN have kernels for. The C++ side gets them as tinyml::InputType / OutputType.
DEVICE_IO_TYPES = {"int8": "int8_t", "int16": "int16_t"}


def check_io(info: ModelInfo, origin: str) -> None:
    """Refuse what the generated app cannot feed or read: tensors other than int8/int16, several of
    them, dynamic shapes."""
    if info.inputs != 1 or info.outputs != 1:
        raise ModelError(f"{origin} has {info.inputs} inputs and {info.outputs} outputs; the zephyr-tinyml runtime "
                         f"runs models with one of each. Split the model, or concatenate its inputs into one "
                         f"tensor before converting.")
    if info.dynamic:
        raise ModelError(f"{origin} has dynamic tensor shapes ({info.dynamic}); TFLM plans a static arena and "
                         f"needs fixed shapes. Convert with a fixed batch size of 1 (e.g. keras.Input(shape=..., "
                         f"batch_size=1)).")
    for what, tensor in (("input", info.input), ("output", info.output)):
        if tensor.dtype not in DEVICE_IO_TYPES:
            raise ModelError(f"{origin}: the model's {what} is {tensor.dtype}; the generated app runs integer "
                             f"models with int8 or int16 input and output (full int8, or TFLite's int16x8 mode). "
                             f"{_IO_ADVICE.get(tensor.dtype, _IO_OTHER)}")


# What to do about a model whose input or output is neither int8 nor int16, by its type: never call a model float
# that is not (a 16-bit-activation model is integer, and has TFLM kernels of its own).
_IO_ADVICE = {
    "float32": "A float model would run TFLM's float kernels, several times slower and 4 times larger: "
               "quantize it from its source model instead: give the .keras, .h5 or SavedModel with "
               "--data-dir (zephyr-tinyml then quantizes it to full int8 and verifies it).",
}
_IO_OTHER = "Convert with inference_input_type/inference_output_type = tf.int8."


def class_labels(info: ModelInfo, *given: tuple[str, ...]) -> tuple[str, ...]:
    """A classifier's class names: the model's own TFLite metadata, else the first of ``given`` that
    has any (a labels file, the spec, the data's folders), else the output indices as numbers.

    One order for the generated sources and every report of the same model (``tinyml eval``)."""
    for labels in (info.labels, *given):
        if labels:
            return tuple(labels)
    return tuple(str(i) for i in range(int(info.output.shape[-1])))


def generate(spec: Spec, tflite: bytes, info: ModelInfo, arena_measured: int, tests: TestVectors,
             out_dir: Path | None = None, labels: tuple[str, ...] = ()) -> Generated:
    """Write the model, settings, resolver and test-data sources (and the facts file) into ``out_dir``."""
    origin = f"the model of {spec.path.name}"
    check_ops(info, origin)
    check_quantization(tflite, origin)
    check_io(info, origin)
    classes = info.output.shape[-1]
    labels = class_labels(info, labels, spec.dataset.labels)
    if len(labels) != classes:
        raise ModelError(f"{origin} has {classes} outputs but {len(labels)} labels ({', '.join(labels[:5])}...); "
                         f"give one label per output.")
    folder = Path(out_dir or spec.codegen.output_dir)
    model_sha = sha256_bytes(tflite)
    arena = arena_facts(arena_measured, spec.codegen.arena_margin_percent, spec.codegen.arena_alignment,
                        previous_measurements(folder, model_sha))
    symbol = f"g_{spec.name}_model_data"
    stamp = (f"// Generated by zephyr-tinyml {__version__} from {spec.path.name} "
             f"({'spec' if spec.path.suffix in ('.yaml', '.yml') else 'file'} sha256 {spec.file_hash()[:16]}, "
             f"model sha256 {model_sha[:16]}).\n"
             f"// Do not edit: rerun `west tinyml build {spec.name if spec.path.suffix in ('.yaml', '.yml') else spec.path.name}`.\n")
    table = input_quantization_table(spec, info) if tests.pixels is not None else None
    sources = {
        "model_data.h": _model_data_h(symbol, stamp),
        "model_data.cc": _model_data_cc(symbol, stamp, tflite),
        "model_settings.h": _settings_h(spec, stamp, info, labels, table, symbol),
        ARENA_HEADER: arena_h(stamp, arena),
        "op_resolver.h": _resolver_h(stamp, info),
        "test_data.h": _test_data_h(stamp, tests),
        "test_data.cc": _test_data_cc(stamp, tests, labels),
        MODEL_FACTS: _facts_json(spec, info, symbol, arena, model_sha, tests, stamp),
    }
    stale = [name for name in ("test_images.h", "test_images.cc") if (folder / name).is_file()]
    for name in stale:  # written by zephyr-tinyml before 0.3; test_data.* replace them
        (folder / name).unlink()
    changed = tuple(name for name, text in sources.items() if write_if_changed(folder / name, text))
    labels_out = tuple(int(x) for x in tests.labels) if tests.labels is not None else ()
    return Generated(folder, tuple(sources), changed + tuple(stale), arena["fallback_bytes"], labels_out, symbol)


def _facts_json(spec: Spec, info: ModelInfo, symbol: str, arena: dict, model_sha: str, tests: TestVectors,
                stamp: str) -> str:
    """What tools read about a generated model without parsing C: symbol, sizes, budgets (no paths, no dates)."""
    import json

    facts = {
        "generated_by": " ".join(line.removeprefix("// ") for line in stamp.splitlines()),
        "generated_by_lines": [line.removeprefix("// ") for line in stamp.splitlines()],
        "name": spec.name,
        # The spec sections the model was made from: a build of the same spec reuses this model.
        "trained_from": spec.model_hash(),
        "model_symbol": symbol,
        "model_bytes": info.size,
        "model_sha256": model_sha,
        "arena": arena,
        "input": {"shape": list(info.input.shape), "scale": info.input.scale, "zero_point": info.input.zero_point},
        "output": {"shape": list(info.output.shape), "scale": info.output.scale,
                   "zero_point": info.output.zero_point},
        "ops": list(info.unique_ops),
        "classifier": tests.labels is not None,
        "test_inputs": int(len(tests.inputs)),
        "budgets": {board: {"flash": b.flash, "ram": b.ram} for board, b in sorted(spec.budgets.items())},
    }
    return json.dumps(facts, indent=1, sort_keys=True) + "\n"


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


def _model_data_h(symbol: str, stamp: str) -> str:
    return f"""{stamp}
#ifndef TINYML_MODEL_DATA_H_
#define TINYML_MODEL_DATA_H_

// The int8 TFLite flatbuffer, 16-byte aligned as TFLM requires.
extern const unsigned char {symbol}[];
extern const unsigned int {symbol}_size;

#endif  // TINYML_MODEL_DATA_H_
"""


def _model_data_cc(symbol: str, stamp: str, tflite: bytes) -> str:
    return f"""{stamp}
#include "model_data.h"

alignas(16) const unsigned char {symbol}[] = {{
{_hex_rows(tflite)}
}};
const unsigned int {symbol}_size = {len(tflite)};
"""


def input_quantization_table(spec: Spec, info: ModelInfo) -> np.ndarray:
    """The model input for every 8-bit pixel value, by the very function host verification uses."""
    return quantize_input(np.arange(256, dtype=np.uint8), spec, info).reshape(256)


def _settings_h(spec: Spec, stamp: str, info: ModelInfo, labels: tuple[str, ...], table: np.ndarray | None,
                symbol: str) -> str:
    in_shape = ", ".join(map(str, info.input.shape))
    out_shape = ", ".join(map(str, info.output.shape))
    label_lines = "\n".join(f"    {_c_string(label)}," for label in labels)
    if table is not None:
        pixels = f"""
// From 8-bit pixels (every channel alike) by exactly the host pipeline's arithmetic:
//   real = pixel * kInputNormScale + kInputNormOffset       (float32; the spec's dataset.normalization)
//   q    = clamp(round_half_to_even(real / kInputScale) + kInputZeroPoint, -128, 127)
// QuantizeInput() looks q up in kInputQuantization, which the host computed with that formula for
// all 256 pixel values: the device cannot round differently (an FPU's fused multiply-add would).
constexpr float kInputNormScale = {_c_float(spec.dataset.norm_scale)};
constexpr float kInputNormOffset = {_c_float(spec.dataset.norm_offset)};

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
"""
    else:
        pixels = f"""
// The model takes {info.input.dtype} values directly: real = (q - kInputZeroPoint) * kInputScale.
"""
    return f"""{stamp}
#ifndef TINYML_MODEL_SETTINGS_H_
#define TINYML_MODEL_SETTINGS_H_

#include <cstddef>
#include <cstdint>

#include "model_arena.h"
#include "model_data.h"

#define TINYML_MODEL_DATA {symbol}

namespace tinyml {{

constexpr char kModelName[] = {_c_string(spec.name)};
constexpr size_t kModelDataSize = {info.size};

// Input: {info.input.dtype}, real = (q - kInputZeroPoint) * kInputScale; kInputSize elements of InputType
using InputType = {DEVICE_IO_TYPES[info.input.dtype]};
constexpr int kInputDims = {len(info.input.shape)};
constexpr int kInputShape[kInputDims] = {{{in_shape}}};
constexpr int kInputSize = {int(np.prod(info.input.shape))};
constexpr size_t kInputBytes = kInputSize * sizeof(InputType);
constexpr float kInputScale = {info.input.scale!r}f;
constexpr int32_t kInputZeroPoint = {info.input.zero_point};
{pixels}
// Output: {info.output.dtype}, real = (q - kOutputZeroPoint) * kOutputScale; the last dimension's entries are
// kCategoryLabels (class scores for a classifier).
using OutputType = {DEVICE_IO_TYPES[info.output.dtype]};
constexpr int kOutputDims = {len(info.output.shape)};
constexpr int kOutputShape[kOutputDims] = {{{out_shape}}};
constexpr int kOutputSize = {int(np.prod(info.output.shape))};
constexpr size_t kOutputBytes = kOutputSize * sizeof(OutputType);
constexpr int kNumClasses = {info.output.shape[-1]};
constexpr float kOutputScale = {info.output.scale!r}f;
constexpr int32_t kOutputZeroPoint = {info.output.zero_point};

// Tensor arena: kTensorArenaSize in model_arena.h (measured on a device per kernel build).

constexpr const char* const kCategoryLabels[kNumClasses] = {{
{label_lines}
}};

}}  // namespace tinyml

#endif  // TINYML_MODEL_SETTINGS_H_
"""


def _resolver_h(stamp: str, info: ModelInfo) -> str:
    ops = info.unique_ops

    one_channel = "CONV_2D" in info.int8_ops and len(info.one_channel_convs) > 0
    # The kernel widths (0: another stride) name the copies of its inner loop the image links.
    widths = ", ".join(str(w) for w in sorted(set(info.one_channel_convs)))

    def add(op: str) -> str:
        registration = f"tflite::Register_{op}_INT8()" if op in INT8_REGISTRATIONS and op in info.int8_ops else ""
        note = f"{op}, int8 only" if registration else op
        if op == "CONV_2D" and one_channel:
            registration = f"tinyml::Register_CONV_2D_INT8_ONE_CHANNEL<{widths}>()"
            note = (f"CONV_2D, int8 only; {len(info.one_channel_convs)} over one input channel: zephyr-tinyml's "
                    "kernel with CMSIS-NN (tinyml/conv_op.h)")
        return f"  TF_LITE_ENSURE_STATUS(resolver.Add{resolver_method(op)}({registration}));  // {note}"

    adds = "\n".join(add(op) for op in ops)
    include = '#include "tinyml/conv_op.h"\n' if one_channel else ""
    return f"""{stamp}
#ifndef TINYML_OP_RESOLVER_H_
#define TINYML_OP_RESOLVER_H_

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
{include}
namespace tinyml {{

// Exactly the ops the model uses: nothing else is linked in. An op whose every instance is int8
// registers TFLM's int8-only kernel: with CMSIS-NN (which defines CMSIS_NN) its float and int16
// paths are not linked; with the reference kernels Register_<OP>_INT8() is the full kernel.
constexpr int kNumOps = {len(ops)};
using OpResolver = tflite::MicroMutableOpResolver<kNumOps>;

inline TfLiteStatus RegisterOps(OpResolver& resolver) {{
{adds}
  return kTfLiteOk;
}}

}}  // namespace tinyml

#endif  // TINYML_OP_RESOLVER_H_
"""


def _test_data_h(stamp: str, tests: TestVectors) -> str:
    pixels = tests.pixels is not None
    in_type, out_type = tests.inputs.dtype.name, tests.outputs.dtype.name
    classifier = tests.labels is not None
    declarations = []
    what = ("raw 8-bit pixels (the app quantizes them with QuantizeImage(), as it would a camera frame)"
            if pixels else f"the model's {in_type} inputs, as they go into the input tensor"
            + (" (little-endian bytes)" if in_type != "int8" else ""))
    declarations.append(f"// The test inputs: {what}, PackBits-compressed one after\n"
                        "// the other; input n is kTestPacked[kTestPackedStart[n] .. kTestPackedStart[n + 1]).\n"
                        "// FillInput() (zephyr-tinyml's tinyml/test_report.h) expands one with tinyml::UnpackBits()\n"
                        "// (tinyml/packbits.h), the decoder of the evaluation protocol's packed frames too.\n"
                        "extern const uint8_t kTestPacked[];\n"
                        "extern const uint32_t kTestPackedStart[kNumTests + 1];")
    declarations.append(f"// Host TFLM's {out_type} output for each input: the device must give exactly these bytes.\n"
                        "extern const OutputType kTestOutputs[kNumTests][kOutputSize];")
    if classifier:
        declarations.append("// The true class of each input (host TFLM classifies every one correctly).\n"
                            "extern const uint8_t kTestLabels[kNumTests];")
    body = "\n\n".join(declarations)
    return f"""{stamp}
#ifndef TINYML_TEST_DATA_H_
#define TINYML_TEST_DATA_H_

#include <cstdint>

#include "model_settings.h"

// {tests.origin}
#define TINYML_TEST_PIXELS {int(pixels)}
#define TINYML_CLASSIFIER {int(classifier)}

namespace tinyml {{

constexpr int kNumTests = {len(tests.inputs)};

{body}

}}  // namespace tinyml

#endif  // TINYML_TEST_DATA_H_
"""


def _array_block(values: np.ndarray, per_row: int, comment: str) -> str:
    flat = [int(v) for v in np.asarray(values).reshape(-1)]
    rows = ["        " + ", ".join(str(v) for v in flat[i:i + per_row]) + "," for i in range(0, len(flat), per_row)]
    return f"    {{  // {comment}\n" + "\n".join(rows) + "\n    },"


def _test_data_cc(stamp: str, tests: TestVectors, names: tuple[str, ...]) -> str:
    count = len(tests.inputs)

    def comment(n: int) -> str:
        if tests.labels is not None:
            return f"test {n}: label {int(tests.labels[n])} ({names[int(tests.labels[n])]})"
        return f"test {n}"

    raw = tests.pixels if tests.pixels is not None else tests.inputs
    # PackBits, the codec of the evaluation protocol's frames too (zephyr_tinyml.packbits says why one):
    # test images are mostly background, so ten of them take about a quarter of the flash packed.
    # Little-endian bytes, as the device holds them (int16 inputs); int8 and pixels are one byte each.
    packed = [packbits.pack(np.ascontiguousarray(raw[n], dtype=raw.dtype.newbyteorder("<")).view(np.uint8).tobytes())
              for n in range(count)]
    starts = [0]
    for chunk in packed:
        starts.append(starts[-1] + len(chunk))
    rows = "\n".join(f"    // {comment(n)}: {raw[n].nbytes} bytes packed to {len(chunk)}\n"
                     + "\n".join("    " + ", ".join(str(b) for b in chunk[i:i + 24]) + "," for i in range(0, len(chunk), 24))
                     for n, chunk in enumerate(packed))
    parts = [f"// {sum(r.nbytes for r in raw[:count]):,} bytes of test inputs in {starts[-1]:,}.\n"
             f"const uint8_t kTestPacked[] = {{\n{rows}\n}};",
             f"const uint32_t kTestPackedStart[kNumTests + 1] = {{{', '.join(map(str, starts))}}};"]
    blocks = "\n".join(_array_block(tests.outputs[n], 16, comment(n)) for n in range(count))
    parts.append(f"const OutputType kTestOutputs[kNumTests][kOutputSize] = {{\n{blocks}\n}};")
    if tests.labels is not None:
        parts.append(f"const uint8_t kTestLabels[kNumTests] = {{{', '.join(str(int(x)) for x in tests.labels)}}};")
    body = "\n\n".join(parts)
    return f"""{stamp}
#include "test_data.h"

namespace tinyml {{

{body}

}}  // namespace tinyml
"""
