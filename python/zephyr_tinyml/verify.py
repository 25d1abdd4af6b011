"""Verify stage: float Keras vs int8 TFLite vs int8 TFLM on the whole test set, and arena size.

The device runs TFLM, so TFLM on the host is the model's ground truth.  TFLite's *reference*
kernels (``BUILTIN_REF``) must give bit-identical int8 outputs; TFLite's default optimized kernels
may round differently (±1 on some images), so for them only argmax agreement is reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .data import Dataset, normalize
from .errors import ModelError
from .fileio import captured_fd
from .spec import Spec
from .tflite_model import ModelInfo, tf_lite_interpreter

Progress = Callable[[int, int], None]
ARENA_TOTAL_RE = re.compile(r"Arena allocation total (\d+) bytes")


@dataclass
class Verification:
    """Accuracies in percent on the same images, and the TFLM/TFLite agreement counts."""

    images: int
    float_accuracy: float
    tflite_accuracy: float          # TFLite default (optimized) kernels
    tflite_ref_accuracy: float      # TFLite reference kernels
    tflm_accuracy: float
    ref_mismatches: int             # images whose int8 output differs TFLM vs TFLite-ref
    ref_mismatch_indices: list[int]
    optimized_argmax_agreement: int  # images where TFLM and optimized TFLite pick the same class
    optimized_vector_differences: int
    arena_host_bytes: int
    tflm_predictions: list[int] = field(repr=False)

    @property
    def accuracy_drop(self) -> float:
        """Float Keras -> int8 TFLM, percentage points."""
        return self.float_accuracy - self.tflm_accuracy

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def quantize_input(images: np.ndarray, spec: Spec, info: ModelInfo) -> np.ndarray:
    """Raw uint8 images -> the model's int8 input, exactly as the firmware must do it."""
    real = normalize(images, spec.norm_scale, spec.norm_offset)
    q = np.round(real / np.float32(info.input.scale)) + info.input.zero_point
    return np.clip(q, -128, 127).astype(np.int8)


def run_tflite(tflite: bytes, inputs: np.ndarray, reference: bool) -> np.ndarray:
    """int8 outputs of TFLite for every input (one image per invoke: the model has batch 1)."""
    interpreter = tf_lite_interpreter(tflite, reference=reference)
    interpreter.allocate_tensors()
    in_index = interpreter.get_input_details()[0]["index"]
    out_index = interpreter.get_output_details()[0]["index"]
    outputs = []
    for image in inputs:
        interpreter.set_tensor(in_index, image[np.newaxis])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out_index)[0].copy())
    return np.stack(outputs)


def tflm_interpreter(tflite: bytes, arena_size: int | None = None) -> Any:
    """The host TFLM interpreter (same kernels as the device, 64-bit bookkeeping)."""
    from tflite_micro.python.tflite_micro import runtime

    try:
        return runtime.Interpreter.from_bytes(tflite, arena_size=arena_size or max(64 * 1024, 10 * len(tflite)))
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"TFLM cannot load the model: {exc}. If an op is missing, change the layer "
                         f"that produces it (see the op list) or register a custom op.") from None


def run_tflm(tflite: bytes, inputs: np.ndarray, progress: Progress | None = None) -> np.ndarray:
    """int8 outputs of host TFLM for every input."""
    interpreter = tflm_interpreter(tflite)
    outputs = []
    for i, image in enumerate(inputs):
        interpreter.set_input(image[np.newaxis], 0)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_output(0))[0])
        if progress and (i + 1) % 250 == 0 or progress and i + 1 == len(inputs):
            progress(i + 1, len(inputs))
    return np.stack(outputs)


def measure_arena(tflite: bytes, sample: np.ndarray) -> int:
    """Bytes of tensor arena host TFLM allocates for ``tflite`` (after one invoke).

    TFLM reports this through its RecordingMicroAllocator on the C++ stderr, captured here.
    """
    interpreter = tflm_interpreter(tflite)
    interpreter.set_input(sample[np.newaxis], 0)
    interpreter.invoke()
    with captured_fd(2) as report:
        interpreter.print_allocations()
    text = report.getvalue()
    match = ARENA_TOTAL_RE.search(text)
    if not match:
        raise ModelError(f"could not read the arena size from TFLM's allocation report:\n{text}")
    return int(match.group(1))


def verify(spec: Spec, data: Dataset, keras_model: Any, tflite: bytes, info: ModelInfo,
           progress: Progress | None = None) -> Verification:
    """Evaluate all three on the full test set and compare int8 outputs element by element."""
    labels = data.y_test.astype(np.int64)
    float_logits = keras_model.predict(normalize(data.x_test, spec.norm_scale, spec.norm_offset),
                                       batch_size=1000, verbose=0)
    inputs = quantize_input(data.x_test, spec, info)
    optimized = run_tflite(tflite, inputs, reference=False)
    reference = run_tflite(tflite, inputs, reference=True)
    micro = run_tflm(tflite, inputs, progress)

    def accuracy(predictions: np.ndarray) -> float:
        return float(np.mean(predictions == labels) * 100.0)

    micro_pred = micro.argmax(axis=1)
    differs = np.flatnonzero(np.any(micro != reference, axis=1))
    return Verification(
        images=len(labels),
        float_accuracy=accuracy(float_logits.argmax(axis=1)),
        tflite_accuracy=accuracy(optimized.argmax(axis=1)),
        tflite_ref_accuracy=accuracy(reference.argmax(axis=1)),
        tflm_accuracy=accuracy(micro_pred),
        ref_mismatches=int(differs.size),
        ref_mismatch_indices=[int(i) for i in differs[:10]],
        optimized_argmax_agreement=int(np.sum(optimized.argmax(axis=1) == micro_pred)),
        optimized_vector_differences=int(np.sum(np.any(micro != optimized, axis=1))),
        arena_host_bytes=measure_arena(tflite, inputs[0]),
        tflm_predictions=[int(p) for p in micro_pred],
    )


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: int) -> np.ndarray:
    """``classes``×``classes`` counts, rows = true label, columns = prediction."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    return matrix
