"""Verify stage: float Keras vs int8 TFLite vs int8 TFLM on the whole test set, and arena size.

The device runs TFLM, so TFLM on the host is the model's ground truth (the device must equal it
bit for bit: see the evaluation stage).  TFLite's *reference* kernels (``BUILTIN_REF``) are the
independent check of TFLM's kernels: every image whose int8 output differs is traced layer by layer
to the first op where the two part; a 1-LSB difference in a requantizing op is the two runtimes'
documented rounding difference, anything else fails the build, except in the ops whose TFLM
kernel is another integer algorithm than TFLite's by design (:data:`KERNELS_DIFFER_BY_DESIGN`):
there the build measures what the difference costs (accuracy of each, argmax agreement, the output
difference in real units) and the acceptance bars judge those figures.  TFLite's optimized kernels
round differently again, so for them only argmax agreement is reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .data import Dataset, normalize
from ..errors import ModelError
from ..fileio import captured_fd
from .spec import Spec
from .tflite_model import ModelInfo, tf_lite_interpreter

Progress = Callable[[int, int], None]
ARENA_TOTAL_RE = re.compile(r"Arena allocation total (\d+) bytes")

# Part of the verify stage's cache key: a change to what verification measures (v2: the arena a model
# needs, found by binary search, instead of TFLM's used total; v3: kernels that differ by design and
# what their difference costs; v4: every input from the model's initial state) must not be served
# from an old cache.
METHOD = "verify-v4-fresh-state-per-input"

# Ops whose TFLM kernel is not TFLite's reference algorithm in integer arithmetic, so the two can
# differ by more than a 1-LSB rounding on the same int8 model: op -> why, for the report. The
# device runs TFLM's (it is what the firmware links); the build measures the difference.
KERNELS_DIFFER_BY_DESIGN = {
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "TFLM's integer LSTM (kernels/lstm_eval.cc) is its own implementation of the "
                                    "8x8->16-bit LSTM, not TFLite's reference kernel: the gate arithmetic "
                                    "(fixed-point sigmoid/tanh, the cell-state update) rounds in other steps",
}


@dataclass
class Verification:
    """Accuracies in percent on the same images, and the TFLM/TFLite agreement counts."""

    images: int                     # test images, or test inputs of a model verified without data
    float_accuracy: float | None    # None: no float model (an int8 .tflite) or no labelled data
    tflite_accuracy: float | None   # TFLite default (optimized) kernels
    tflite_ref_accuracy: float | None  # TFLite reference kernels
    tflm_accuracy: float | None
    ref_mismatches: int             # images whose int8 output differs TFLM vs TFLite-ref
    ref_mismatch_indices: list[int]
    # Of those: first divergence a 1-LSB requantization rounding difference / anything else.
    ref_rounding_mismatches: int
    ref_unexplained_mismatches: int
    ref_divergence_ops: dict[str, int]  # op of the first divergence -> images
    optimized_argmax_agreement: int  # images where TFLM and optimized TFLite pick the same class
    optimized_vector_differences: int
    arena_host_bytes: int
    tflm_predictions: list[int] = field(repr=False)
    # The first unexplained mismatch's divergence, else the first mismatch's (see LayerStepper).
    first_divergence: dict[str, Any] | None = None
    # Of the mismatches: first divergence in an op of KERNELS_DIFFER_BY_DESIGN (not a fault by itself).
    ref_by_design_mismatches: int = 0
    # TFLM against the TFLite reference kernels on every input: argmax agreement, and the output
    # difference in real units (dequantized), over all output values.
    kernel_argmax_agreement: int = 0
    kernel_max_abs_error: float = 0.0
    kernel_mean_abs_error: float = 0.0

    @property
    def kernel_accuracy_gap(self) -> float:
        """TFLite reference kernels' accuracy minus TFLM's, percentage points (0 without labels)."""
        if self.tflite_ref_accuracy is None or self.tflm_accuracy is None:
            return 0.0
        return self.tflite_ref_accuracy - self.tflm_accuracy

    @property
    def kernel_argmax_agreement_percent(self) -> float:
        return 100.0 * self.kernel_argmax_agreement / self.images if self.images else 100.0

    @property
    def accuracy_drop(self) -> float:
        """Float Keras -> int8 TFLM, percentage points (0 when either is unknown)."""
        if self.float_accuracy is None or self.tflm_accuracy is None:
            return 0.0
        return self.float_accuracy - self.tflm_accuracy

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def quantize_input(images: np.ndarray, spec: Spec, info: ModelInfo) -> np.ndarray:
    """Raw uint8 images -> the model's int8 (or int16) input, exactly as the firmware must do it."""
    return quantize_real(normalize(images, spec.dataset.norm_scale, spec.dataset.norm_offset), info.input.scale,
                         info.input.zero_point, info.input.dtype)


def quantize_real(real: np.ndarray, scale: float, zero_point: int, dtype: str = "int8") -> np.ndarray:
    """Real values -> ``dtype`` (int8, or int16 for a 16x8 model) with a tensor's scale and zero point
    (round half to even, clipped to the type's range)."""
    q = np.round(real / np.float32(scale)) + zero_point
    limits = np.iinfo(dtype)
    return np.clip(q, limits.min, limits.max).astype(dtype)


def run_tflite(tflite: bytes, inputs: np.ndarray, reference: bool) -> np.ndarray:
    """int8 outputs of TFLite for every input (one image per invoke: the model has batch 1)."""
    interpreter = tf_lite_interpreter(tflite, reference=reference)
    interpreter.allocate_tensors()
    in_index = interpreter.get_input_details()[0]["index"]
    out_index = interpreter.get_output_details()[0]["index"]
    outputs = []
    for image in inputs:
        interpreter.reset_all_variables()      # every input from the initial state (see run_tflm)
        interpreter.set_tensor(in_index, image[np.newaxis])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(out_index)[0].copy())
    return np.stack(outputs)


def default_host_arena(tflite: bytes) -> int:
    """The arena host TFLM gets unless told otherwise: ample for any model we accept (16-byte multiple)."""
    return -(-max(64 * 1024, 10 * len(tflite)) // 16) * 16


def tflm_interpreter(tflite: bytes, arena_size: int | None = None) -> Any:
    """The host TFLM interpreter (same kernels as the device, 64-bit bookkeeping)."""
    from tflite_micro.python.tflite_micro import runtime

    try:
        return runtime.Interpreter.from_bytes(tflite, arena_size=arena_size or default_host_arena(tflite))
    except (RuntimeError, ValueError) as exc:
        raise ModelError(f"TFLM cannot load the model: {exc}. If an op is missing, change the layer "
                         f"that produces it (see the op list) or register a custom op.") from None


def run_tflm(tflite: bytes, inputs: np.ndarray, progress: Progress | None = None) -> np.ndarray:
    """int8 outputs of host TFLM for every input, each from the model's initial state.

    Why the reset: a model with variable tensors (an LSTM's hidden and cell state) carries them
    from one invoke to the next in TFLM and TFLite alike, so an input's output would depend on the
    inputs run before it; a stateless Keras layer means every input starts from zero state, and the
    device's apps reset before every inference too (``tinyml::StartFresh``).
    """
    interpreter = tflm_interpreter(tflite)
    outputs = []
    for i, image in enumerate(inputs):
        interpreter.reset()
        interpreter.set_input(image[np.newaxis], 0)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_output(0))[0])
        if progress and (i + 1) % 250 == 0 or progress and i + 1 == len(inputs):
            progress(i + 1, len(inputs))
    return np.stack(outputs)


def measure_arena(tflite: bytes, sample: np.ndarray) -> int:
    """The smallest tensor arena (a multiple of 16 bytes) in which host TFLM allocates ``tflite``.

    TFLM's own report (its RecordingMicroAllocator's total, printed on the C++ stderr and captured
    here) is what the tensors use once planned; while it plans, TFLM also holds temporary buffers
    (allocation info, the planner's scratch), so the model needs more than that total: TFLM's
    hello_world uses 1,504 bytes on the host and needs more than 1,700. A binary search in 16-byte
    steps from that total finds the need; the device does the same (``CONFIG_TINYML_ARENA_PROBE``).
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
    used = int(match.group(1))
    step = 16
    fails = (used - 1) // step * step           # below the used total: cannot work
    works = default_host_arena(tflite)          # where the interpreter above allocated it
    while works - fails > step:
        middle = fails + (works - fails) // (2 * step) * step
        with captured_fd(2):                    # TFLM logs every failed allocation; expected here
            try:
                tflm_interpreter(tflite, middle)
                works = middle
            except ModelError:
                fails = middle
    return works


def verify(spec: Spec, data: Dataset, keras_model: Any, tflite: bytes, info: ModelInfo,
           progress: Progress | None = None) -> Verification:
    """Evaluate float (when there is a float model), TFLite and TFLM on the full test set and compare
    int8 outputs element by element."""
    labels = data.y_test.astype(np.int64)
    inputs = quantize_input(data.x_test, spec, info)
    float_accuracy = None
    if keras_model is not None:
        float_logits = keras_model.predict(normalize(data.x_test, spec.dataset.norm_scale, spec.dataset.norm_offset),
                                           batch_size=1000, verbose=0)
        float_accuracy = float(np.mean(float_logits.reshape(len(labels), -1).argmax(axis=1) == labels) * 100.0)
    return _compare(tflite, inputs, labels, float_accuracy, progress)


def verify_outputs(tflite: bytes, inputs: np.ndarray, progress: Progress | None = None) -> Verification:
    """TFLM against the TFLite reference kernels on ``inputs`` (a model given without data): no accuracies."""
    return _compare(tflite, inputs, None, None, progress)


def _compare(tflite: bytes, inputs: np.ndarray, labels: np.ndarray | None, float_accuracy: float | None,
             progress: Progress | None) -> Verification:
    optimized = run_tflite(tflite, inputs, reference=False).reshape(len(inputs), -1)
    reference = run_tflite(tflite, inputs, reference=True).reshape(len(inputs), -1)
    micro = run_tflm(tflite, inputs, progress).reshape(len(inputs), -1)
    output = tf_lite_interpreter(tflite).get_output_details()[0]["quantization"]
    error = np.abs(micro.astype(np.float64) - reference.astype(np.float64)) * float(output[0] or 1.0)

    def accuracy(predictions: np.ndarray) -> float | None:
        return None if labels is None else float(np.mean(predictions == labels) * 100.0)

    micro_pred = micro.argmax(axis=1)
    differs = np.flatnonzero(np.any(micro != reference, axis=1))
    divergences = []
    if differs.size:
        stepper = LayerStepper(tflite)
        divergences = [stepper.diverge(inputs[i], int(i)) for i in differs]
    for d in divergences:
        d["by_design"] = not d.get("rounding") and d.get("op") in KERNELS_DIFFER_BY_DESIGN
    unexplained = [d for d in divergences if not d.get("rounding") and not d["by_design"]]
    by_design = [d for d in divergences if d["by_design"]]
    ops: dict[str, int] = {}
    for d in divergences:
        ops[str(d.get("op"))] = ops.get(str(d.get("op")), 0) + 1
    return Verification(
        images=len(inputs),
        float_accuracy=float_accuracy,
        tflite_accuracy=accuracy(optimized.argmax(axis=1)),
        tflite_ref_accuracy=accuracy(reference.argmax(axis=1)),
        tflm_accuracy=accuracy(micro_pred),
        ref_mismatches=int(differs.size),
        ref_mismatch_indices=[int(i) for i in differs[:10]],
        ref_rounding_mismatches=len(divergences) - len(unexplained) - len(by_design),
        ref_unexplained_mismatches=len(unexplained),
        ref_divergence_ops=dict(sorted(ops.items())),
        optimized_argmax_agreement=int(np.sum(optimized.argmax(axis=1) == micro_pred)),
        optimized_vector_differences=int(np.sum(np.any(micro != optimized, axis=1))),
        arena_host_bytes=measure_arena(tflite, inputs[0]),
        tflm_predictions=[int(p) for p in micro_pred] if labels is not None else [],
        first_divergence=(unexplained or by_design or divergences or [None])[0],
        ref_by_design_mismatches=len(by_design),
        kernel_argmax_agreement=int(np.sum(reference.argmax(axis=1) == micro_pred)),
        kernel_max_abs_error=float(error.max()) if error.size else 0.0,
        kernel_mean_abs_error=float(error.mean()) if error.size else 0.0,
    )


def random_inputs(info: ModelInfo, count: int, seed: int = 0) -> np.ndarray:
    """``count`` seeded inputs spread over the model's whole input range, int8 (or int16 for a 16x8
    model), for models without data. int8 draws are the same as they always were (int16 then cast)."""
    rng = np.random.default_rng(seed)
    shape = (count,) + tuple(info.input.shape[1:])
    if info.input.dtype == "int16":
        return rng.integers(-32768, 32768, size=shape, dtype=np.int32).astype(np.int16)
    return rng.integers(-128, 128, size=shape, dtype=np.int16).astype(np.int8)


def all_tensors_model(tflite: bytes) -> tuple[bytes, list[dict[str, Any]]]:
    """A copy of ``tflite`` whose subgraph outputs are the outputs of every op, in execution order.

    TFLM's Python interpreter only exposes model outputs; making every intermediate tensor an output
    lets us read it, as TFLM's own layer_by_layer_debugger does.  Returns the new model and, per op,
    its index, name and output tensor (index and name).
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    graph = model.subgraphs[0]
    names = {code_index: _op_name(schema, code) for code_index, code in enumerate(model.operatorCodes)}
    ops, outputs = [], []
    for index, op in enumerate(graph.operators):
        for tensor in op.outputs:
            if tensor >= 0 and tensor not in outputs:
                outputs.append(int(tensor))
                name = graph.tensors[tensor].name
                ops.append({"op_index": index, "op": names[op.opcodeIndex], "tensor": int(tensor),
                            "tensor_name": name.decode() if isinstance(name, bytes) else str(name)})
    graph.outputs = np.array(outputs, dtype=np.int32)
    builder = flatbuffers.Builder(len(tflite) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), ops


def _op_name(schema: Any, code: Any) -> str:
    value = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    for name, number in vars(schema.BuiltinOperator).items():
        if number == value and not name.startswith("_"):
            return name
    return f"BUILTIN_{value}"


# Ops that only move or select values: TFLM and TFLite must agree on them exactly, so even a
# 1-LSB difference there is a real fault, never rounding.
DATA_MOVEMENT_OPS = frozenset({"RESHAPE", "MAX_POOL_2D", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "PACK", "UNPACK",
                               "SPLIT", "SPLIT_V", "SLICE", "STRIDED_SLICE", "GATHER", "PAD", "CONCATENATION"})


class LayerStepper:
    """TFLM and the TFLite reference kernels side by side, every op's output readable.

    Built once per model, then :meth:`diverge` per input: a few milliseconds an image, so every
    mismatching test image can be traced to the first op where the two runtimes part.
    """

    def __init__(self, tflite: bytes, reference_tflite: bytes | None = None):
        debug_model, self.ops = all_tensors_model(tflite)
        self.micro = tflm_interpreter(debug_model)
        self.ref = tf_lite_interpreter(reference_tflite or tflite, reference=True, preserve_all_tensors=True)
        self.ref.allocate_tensors()
        self.ref_input = self.ref.get_input_details()[0]["index"]

    def diverge(self, image: np.ndarray, index: int, limit: int = 8) -> dict[str, Any]:
        """The first op whose int8 output differs, its differing elements (flat index, TFLM value,
        reference value) and how many later ops differ; ``op`` None when every op agrees."""
        self.micro.reset()
        self.micro.set_input(image[np.newaxis], 0)
        self.micro.invoke()
        self.ref.reset_all_variables()
        self.ref.set_tensor(self.ref_input, image[np.newaxis])
        self.ref.invoke()
        first: dict[str, Any] | None = None
        later = 0
        for position, op in enumerate(self.ops):
            got = np.array(self.micro.get_output(position)).reshape(-1)
            want = self.ref.get_tensor(op["tensor"]).reshape(-1)
            differs = np.flatnonzero(got != want)
            if not differs.size:
                continue
            if first is None:
                gap = int(np.max(np.abs(got[differs].astype(np.int64) - want[differs].astype(np.int64))))
                first = dict(op, image=index, differing_elements=int(differs.size), elements=int(want.size),
                             max_abs_difference=gap,
                             first_elements=[[int(i), int(got[i]), int(want[i])] for i in differs[:limit]])
            else:
                later += 1
        if first is None:
            return {"image": index, "op": None, "note": "TFLM and the reference kernels agree on every op's output"}
        first["later_ops_differing"] = later
        first["rounding"] = is_rounding_difference(first)
        return first


def is_rounding_difference(divergence: dict[str, Any]) -> bool:
    """True when the first divergence is what the two runtimes' requantization rounding explains.

    Measured with LiteRT 2.x and TF 2.21: their reference kernels requantize with one rounding
    step, host TFLM (and the TFLM on the device) with gemmlowp's two (a rounding doubling high
    multiply, then a rounding shift).  The two disagree by exactly 1 LSB on rare products, in ops
    that requantize (CONV_2D, FULLY_CONNECTED, ...).  Anything else (2 LSB or more at the first
    differing op, or a difference in an op that only moves data) is a real kernel disagreement.
    """
    return (divergence.get("op") is not None and divergence["max_abs_difference"] <= 1
            and divergence["op"] not in DATA_MOVEMENT_OPS)


def first_divergence(tflite: bytes, image: np.ndarray, index: int, limit: int = 8,
                     reference_tflite: bytes | None = None) -> dict[str, Any]:
    """Layer-by-layer comparison for one input (see :class:`LayerStepper`); ``reference_tflite``
    (default: the same model) lets a test hold TFLM against a deliberately altered copy."""
    return LayerStepper(tflite, reference_tflite).diverge(image, index, limit)


def describe_divergence(d: dict[str, Any] | None) -> str:
    """One sentence for reports and errors."""
    if not d or d.get("op") is None:
        return ""
    elements = ", ".join(f"[{i}] TFLM {a} vs reference {b}" for i, a, b in d["first_elements"])
    return (f"image {d['image']}: first differing op is #{d['op_index']} {d['op']} (output '{d['tensor_name']}'), "
            f"{d['differing_elements']} of {d['elements']} elements differ ({elements}); "
            f"{d['later_ops_differing']} later ops differ as a consequence"
            + ("; a 1-LSB requantization rounding difference" if d.get("rounding") else
               f"; TFLM's kernel differs from TFLite's by design ({KERNELS_DIFFER_BY_DESIGN[d['op']]})"
               if d.get("by_design") else "; NOT explained by rounding"))


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: int) -> np.ndarray:
    """``classes``×``classes`` counts, rows = true label, columns = prediction."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    return matrix
