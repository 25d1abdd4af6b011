"""Read what later stages need out of a ``.tflite`` file: ops, tensors, quantization, labels.

Uses TFLite's own Python interpreter to parse (it validates the flatbuffer) and tflite-support's
metadata reader for labels.  A file that is not a TFLite model is a :class:`ModelError` naming it.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from .errors import ModelError
from .fileio import captured_fd


@dataclass(frozen=True)
class TensorInfo:
    """Shape, dtype and int8 quantization of a model input or output."""

    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int


@dataclass(frozen=True)
class ModelInfo:
    """Facts about a ``.tflite`` the codegen and reports use."""

    ops: tuple[str, ...]          # builtin op names in execution order, e.g. CONV_2D
    input: TensorInfo
    output: TensorInfo
    labels: tuple[str, ...]
    size: int

    @property
    def unique_ops(self) -> tuple[str, ...]:
        """Distinct op names, sorted (the order of the generated resolver)."""
        return tuple(sorted(set(self.ops)))


def tf_lite_interpreter(tflite: bytes, reference: bool = False):  # -> tf.lite.Interpreter
    """A TFLite interpreter, optionally with the reference (non-optimized) kernels."""
    import tensorflow as tf

    resolver = (tf.lite.experimental.OpResolverType.BUILTIN_REF if reference
                else tf.lite.experimental.OpResolverType.AUTO)
    with warnings.catch_warnings(), captured_fd(2):
        warnings.simplefilter("ignore")  # the tf.lite.Interpreter deprecation notice, XNNPACK's hello
        return tf.lite.Interpreter(model_content=tflite, experimental_op_resolver_type=resolver,
                                   num_threads=1)


def read_labels(tflite: bytes) -> tuple[str, ...]:
    """Labels from the model's metadata (``labels.txt`` associated file); empty if none."""
    from tensorflow_lite_support.metadata.python import metadata

    try:
        displayer = metadata.MetadataDisplayer.with_model_buffer(tflite)
    except ValueError:
        return ()
    if "labels.txt" not in displayer.get_packed_associated_file_list():
        return ()
    text = displayer.get_associated_file_buffer("labels.txt").decode("utf-8")
    return tuple(line for line in text.splitlines() if line)


def inspect_model(tflite: bytes, origin: str | Path = "<bytes>") -> ModelInfo:
    """Parse ``tflite``; raise :class:`ModelError` if it is not a valid model."""
    if len(tflite) < 8 or tflite[4:8] != b"TFL3":
        raise ModelError(f"{origin} is not a TFLite model (no 'TFL3' identifier); regenerate it "
                         f"with `tinyml build` or check the file was not truncated.")
    try:
        interpreter = tf_lite_interpreter(tflite)
        ops = tuple(op["op_name"] for op in interpreter._get_ops_details())
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"{origin} is not a readable TFLite model: {exc}") from None
    return ModelInfo(ops=ops, input=_tensor(inp), output=_tensor(out), labels=read_labels(tflite),
                     size=len(tflite))


def _tensor(details: dict) -> TensorInfo:
    scale, zero_point = details["quantization"]
    return TensorInfo(tuple(int(d) for d in details["shape"]), details["dtype"].__name__,
                      float(scale), int(zero_point))


def count_macs(tflite: bytes) -> int:
    """Multiply-accumulates per inference of the conv, depthwise and fully connected layers."""
    interpreter = tf_lite_interpreter(tflite)
    shapes = {t["index"]: tuple(int(d) for d in t["shape"]) for t in interpreter.get_tensor_details()}
    total = 0
    for op in interpreter._get_ops_details():
        name, inputs, outputs = op["op_name"], list(op["inputs"]), list(op["outputs"])
        if len(inputs) < 2 or not outputs:
            continue
        out, weights = shapes.get(outputs[0], ()), shapes.get(inputs[1], ())
        if name == "CONV_2D" and len(out) == 4 and len(weights) == 4:
            total += out[0] * out[1] * out[2] * out[3] * weights[1] * weights[2] * weights[3]
        elif name == "DEPTHWISE_CONV_2D" and len(out) == 4 and len(weights) == 4:
            total += out[0] * out[1] * out[2] * out[3] * weights[1] * weights[2]
        elif name == "FULLY_CONNECTED" and len(weights) == 2:
            rows = 1
            for dim in out[:-1]:
                rows *= dim
            total += rows * weights[0] * weights[1]
    return total


def per_channel_ops(tflite: bytes, op_names: tuple[str, ...] = ("FULLY_CONNECTED",)) -> list[str]:
    """Ops (by name, with their index) whose weights carry more than one quantization scale."""
    interpreter = tf_lite_interpreter(tflite)
    scales = {t["index"]: len(t["quantization_parameters"]["scales"]) for t in interpreter.get_tensor_details()}
    found = []
    for op in interpreter._get_ops_details():
        inputs = list(op["inputs"])
        if op["op_name"] in op_names and len(inputs) > 1 and scales.get(inputs[1], 0) > 1:
            found.append(f"{op['op_name']} #{op['index']}")
    return found
