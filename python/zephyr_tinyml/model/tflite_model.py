"""Read what later stages need out of a ``.tflite`` file: ops, tensors, quantization, labels.

Uses the LiteRT (TFLite) Python interpreter to parse (it validates the flatbuffer) and our
metadata reader (:mod:`tflite_metadata`) for labels.  A file that is not a TFLite model is a :class:`ModelError` naming it.
"""

from __future__ import annotations

import functools
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..fileio import captured_fd
from .tflite_metadata import read_metadata


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
    inputs: int = 1               # how many input / output tensors the model has
    outputs: int = 1
    dynamic: str = ""             # tensors with an unknown non-batch dimension, e.g. "input [1, -1, 40]"
    int8_ops: tuple[str, ...] = ()  # ops whose every instance reads and writes int8 only (see int8_only_ops)
    # int8 CONV_2D ops over one input channel: each one's kernel width at stride 1, else 0 (see one_channel_convs)
    one_channel_convs: tuple[int, ...] = ()

    @property
    def unique_ops(self) -> tuple[str, ...]:
        """Distinct op names, sorted (the order of the generated resolver)."""
        return tuple(sorted(set(self.ops)))


def tf_lite_interpreter(tflite: bytes, reference: bool = False, preserve_all_tensors: bool = False):
    """A LiteRT interpreter, optionally with TFLite's reference (non-optimized) kernels.

    LiteRT (``ai_edge_litert``) is the maintained home of the TFLite interpreter;
    ``tf.lite.Interpreter`` is deprecated and scheduled for deletion.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.BUILTIN_REF if reference else OpResolverType.AUTO
    with warnings.catch_warnings(), captured_fd(2):
        warnings.simplefilter("ignore")  # XNNPACK's start-up notice
        return Interpreter(model_content=litert_readable(tflite), experimental_op_resolver_type=resolver, num_threads=1,
                           experimental_preserve_all_tensors=preserve_all_tensors)


@functools.lru_cache(maxsize=8)
def litert_readable(tflite: bytes) -> bytes:
    """``tflite`` as LiteRT's interpreter accepts it: the same bytes, or a copy that differs only in
    a field without meaning.

    Older converters (TFLM's person_detect example, 2019) gave the per-channel biases of depthwise
    convolutions (rank 1, one scale per element) the weights' ``quantized_dimension``, 3. A rank-1
    tensor has one axis, so 3 can only mean 0 (and with a single scale the field means nothing);
    TFLM reads biases as int32 without it, but LiteRT's model check refuses the file
    ("quantized_dimension must be in range [0, 1)"). Only the host's TFLite interpreter gets the
    copy, with 0 there; the device and host TFLM run the file as given, with the same tensor indices.
    """
    from ai_edge_litert import schema_py_generated as schema

    if len(tflite) < 8 or tflite[4:8] != b"TFL3":
        return tflite
    try:
        stale = _stale_quantized_dimensions(schema.Model.GetRootAs(tflite, 0))
    except (struct.error, IndexError, ValueError):
        # A damaged flatbuffer: left as it is, so that LiteRT's interpreter (which validates the
        # whole file) refuses it with its own message, which inspect_model passes on.
        return tflite
    if not stale:
        return tflite
    import flatbuffers

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    for g, t in stale:
        model.subgraphs[g].tensors[t].quantization.quantizedDimension = 0
    builder = flatbuffers.Builder(len(tflite) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _stale_quantized_dimensions(root: Any) -> list[tuple[int, int]]:
    """(subgraph, tensor) of the tensors litert_readable() mends."""
    stale = []
    for g in range(root.SubgraphsLength()):
        graph = root.Subgraphs(g)
        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            q = tensor.Quantization()
            if q is None or q.QuantizedDimension() < max(tensor.ShapeLength(), 1):
                continue
            if q.ScaleLength() == 1 or (tensor.ShapeLength() == 1 and q.ScaleLength() == tensor.Shape(0)):
                stale.append((g, t))
    return stale


def read_labels(tflite: bytes) -> tuple[str, ...]:
    """Labels from the model's TFLite metadata (its TENSOR_AXIS_LABELS file); empty if none."""
    meta = read_metadata(tflite)
    return meta.labels if meta is not None else ()


def inspect_model(tflite: bytes, origin: str | Path = "<bytes>") -> ModelInfo:
    """Parse ``tflite``; raise :class:`ModelError` if it is not a valid model."""
    if len(tflite) < 8 or tflite[4:8] != b"TFL3":
        raise ModelError(f"{origin} is not a TFLite model (no 'TFL3' identifier); regenerate it "
                         f"with `tinyml build` or check the file was not truncated.")
    try:
        interpreter = tf_lite_interpreter(tflite)
        ops = tuple(op["op_name"] for op in interpreter._get_ops_details())
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"{origin} is not a readable TFLite model: {exc}") from None
    if not inputs or not outputs:
        raise ModelError(f"{origin} has no input or no output tensor.")
    # A -1 batch in the signature is harmless (TFLM plans with the concrete shape, batch 1, as TFLM's
    # own examples ship); any other unknown dimension means shapes known only at run time.
    dynamic = ", ".join(f"{t['name']} {[int(d) for d in t['shape_signature']]}" for t in inputs + outputs
                        if any(int(d) < 0 for d in list(t.get("shape_signature", ()))[1:]))
    return ModelInfo(ops=ops, input=_tensor(inputs[0]), output=_tensor(outputs[0]), labels=read_labels(tflite),
                     size=len(tflite), inputs=len(inputs), outputs=len(outputs), dynamic=dynamic,
                     int8_ops=int8_only_ops(tflite), one_channel_convs=one_channel_convs(tflite))


def _tensor(details: dict) -> TensorInfo:
    scale, zero_point = details["quantization"]
    return TensorInfo(tuple(int(d) for d in details["shape"]), details["dtype"].__name__,
                      float(scale), int(zero_point))


# Ops whose bias (input 2) is int32 in an int8 model; every other input and output must be int8.
_BIAS_INPUT_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"})


def int8_only_ops(tflite: bytes) -> tuple[str, ...]:
    """Op names (sorted) whose every instance has only int8 inputs and outputs (an int32 bias allowed).

    Why: TFLM offers int8-only registrations of some kernels (``Register_CONV_2D_INT8()``; with
    CMSIS-NN they link no float, int16 or int4 paths, several KB of flash). They are right for an op
    only when no instance of it needs another type, which the tensor types in the flatbuffer tell
    exactly (the interpreter's dtypes do not: int4 weights read as int8 there).
    """
    from ai_edge_litert import schema_py_generated as schema

    int8, int32 = schema.TensorType.INT8, schema.TensorType.INT32
    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    verdict: dict[str, bool] = {}
    for subgraph in model.subgraphs or []:
        tensors = subgraph.tensors or []
        for op in subgraph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), "")
            ok = True
            for position, index in enumerate(list(op.inputs if op.inputs is not None else [])):
                if index < 0:
                    continue  # an absent optional input
                allowed = (int8, int32) if position == 2 and name in _BIAS_INPUT_OPS else (int8,)
                ok = ok and tensors[index].type in allowed
            for index in list(op.outputs if op.outputs is not None else []):
                ok = ok and tensors[index].type == int8
            verdict[name] = verdict.get(name, True) and ok
    return tuple(sorted(name for name, ok in verdict.items() if ok and name))


def one_channel_convs(tflite: bytes) -> tuple[int, ...]:
    """The CONV_2D ops that read one int8 input channel with int8 weights and dilation 1, in model
    order: each one's kernel width where its horizontal stride is 1, else 0.

    Why: with CMSIS-NN kernels the generated op resolver then registers zephyr-tinyml's CONV_2D
    (``tinyml/conv_op.h``), which runs those convolutions without CMSIS-NN's per-tap im2col copies
    and hands every other one to CMSIS-NN. The device decides per node again from the same facts;
    this list decides whether the registration is worth linking, and which copies of the kernel's
    inner loop (unrolled for a width at stride 1, or the one for any shape) the image links.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    widths: list[int] = []
    for subgraph in model.subgraphs or []:
        tensors = subgraph.tensors or []
        for op in subgraph.operators or []:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) != schema.BuiltinOperator.CONV_2D:
                continue
            inputs = list(op.inputs if op.inputs is not None else [])
            if len(inputs) < 2 or inputs[0] < 0 or inputs[1] < 0:
                continue
            data, weights = tensors[inputs[0]], tensors[inputs[1]]
            shape = list(data.shape if data.shape is not None else [])
            options = op.builtinOptions
            dilation = (getattr(options, "dilationHFactor", 1) or 1, getattr(options, "dilationWFactor", 1) or 1)
            if (shape and shape[-1] == 1 and data.type == schema.TensorType.INT8
                    and weights.type == schema.TensorType.INT8 and dilation == (1, 1)):
                filter_shape = list(weights.shape if weights.shape is not None else [])
                stride_w = getattr(options, "strideW", 1) or 1
                widths.append(int(filter_shape[2]) if stride_w == 1 and len(filter_shape) == 4 else 0)
    return tuple(widths)


@dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates per inference, and the ops that multiply but could not be counted.

    Why the second field: a sum that silently leaves out an LSTM's gates (or a custom op) reads as
    a small model; the reports show the ops left out next to the figure.
    """

    total: int
    not_counted: tuple[str, ...] = ()    # op names, sorted, that multiply but have no count

    def __str__(self) -> str:
        counted = f"{self.total:,}"
        return counted + (f" (not counted: {', '.join(self.not_counted)})" if self.not_counted else "")


def count_macs(tflite: bytes) -> MacCount:
    """Multiply-accumulates per inference of every op that multiplies by weights or by another tensor."""
    ops = macs_per_op(tflite)
    return MacCount(sum(macs for _, macs in ops if macs is not None),
                    tuple(sorted({name for name, macs in ops if macs is None})))


def macs_per_op(tflite: bytes) -> list[tuple[str, int | None]]:
    """Every op of the main subgraph in execution order: its name and multiply-accumulates per
    inference: 0 for ops that do none (pooling, reshape, softmax, element-wise arithmetic), None
    for an op that multiplies but has no count here (a custom op, a bidirectional RNN)."""
    interpreter = tf_lite_interpreter(tflite)
    shapes = {t["index"]: tuple(int(d) for d in t["shape"]) for t in interpreter.get_tensor_details()}
    result = []
    for op in interpreter._get_ops_details():
        name, inputs, outputs = op["op_name"], list(op["inputs"]), list(op["outputs"])
        result.append((name, _op_macs(name, inputs, outputs, shapes)))
    return result


# Ops that multiply (by weights, or one tensor by another along a shared dimension) with no formula
# here: the bidirectional RNNs, and control flow whose subgraphs run a number of times only known at
# run time (Keras 3's LSTM layers convert to a WHILE loop). Any op that is not a builtin (a custom
# op) is not counted either.
_UNCOUNTED_OPS = frozenset({"BIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_RNN", "CONV_3D_TRANSPOSE",
                            "WHILE", "IF"})
# Counted ops: a missing shape makes them "not counted" rather than 0.
_COUNTED_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED", "CONV_3D",
                          "BATCH_MATMUL", "LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM", "RNN",
                          "UNIDIRECTIONAL_SEQUENCE_RNN", "SVDF"})
# Input positions of the (input, recurrent, peephole, projection) weights of TFLite's LSTM ops
# (lite/kernels/lstm_shared.h): optional ones are -1 when absent (CIFG, no peephole, no projection).
_LSTM_MATRICES = (1, 2, 3, 4, 5, 6, 7, 8, 16)
_LSTM_PEEPHOLES = (9, 10, 11)


def _product(dims: tuple[int, ...]) -> int:
    result = 1
    for dim in dims:
        result *= dim
    return result


def _op_macs(name: str, inputs: list[int], outputs: list[int],
             shapes: dict[int, tuple[int, ...]]) -> int | None:
    counted = name in _COUNTED_OPS
    if name in _UNCOUNTED_OPS or not (counted or _is_builtin(name)):
        return None
    if not counted:
        return 0
    macs = _counted_op_macs(name, inputs, outputs, shapes) if len(inputs) >= 2 and outputs else None
    return macs


def _counted_op_macs(name: str, inputs: list[int], outputs: list[int],
                     shapes: dict[int, tuple[int, ...]]) -> int | None:
    out, weights = shapes.get(outputs[0], ()), shapes.get(inputs[1], ())
    if name == "CONV_2D" and len(out) == 4 and len(weights) == 4:
        return _product(out) * weights[1] * weights[2] * weights[3]
    if name == "DEPTHWISE_CONV_2D" and len(out) == 4 and len(weights) == 4:
        return _product(out) * weights[1] * weights[2]
    if name == "CONV_3D" and len(out) == 5 and len(weights) == 5:
        # weights (depth, height, width, in channels, out channels)
        return _product(out) * _product(weights[:4])
    if name == "TRANSPOSE_CONV" and len(inputs) >= 3 and len(weights) == 4:
        # Inputs: output shape, weights (out channels, kh, kw, in channels), data. Every input value is
        # multiplied into a kh x kw x out-channels patch (cropped at the edges by 'same' padding).
        data = shapes.get(inputs[2], ())
        return _product(data) * weights[0] * weights[1] * weights[2] if len(data) == 4 else None
    if name == "FULLY_CONNECTED" and len(weights) == 2:
        return _product(out[:-1]) * weights[0] * weights[1]
    if name == "BATCH_MATMUL" and len(out) >= 2:
        # x is [..., M, K] (or [..., K, M] with adj_x): its last two dimensions hold M*K either way.
        x = shapes.get(inputs[0], ())
        if len(x) < 2 or out[-2] == 0:
            return None
        return _product(out) * (x[-1] * x[-2] // out[-2])
    if name in ("LSTM", "UNIDIRECTIONAL_SEQUENCE_LSTM", "RNN", "UNIDIRECTIONAL_SEQUENCE_RNN", "SVDF"):
        # Per step (each batch row x time step of the input), one matrix-vector product per weight
        # matrix (LSTM: four input and four recurrent gate matrices, the projection; RNN: input and
        # recurrent weights; SVDF: feature and time weights) and one product per peephole weight.
        data = shapes.get(inputs[0], ())
        if not data:
            return None
        if name.endswith("LSTM"):
            matrices = [shapes.get(inputs[i], ()) for i in _LSTM_MATRICES if i < len(inputs) and inputs[i] >= 0]
            vectors = [shapes.get(inputs[i], ()) for i in _LSTM_PEEPHOLES if i < len(inputs) and inputs[i] >= 0]
        else:
            matrices = [shapes.get(i, ()) for i in inputs[1:3] if i >= 0]
            vectors = []
        if any(len(m) != 2 for m in matrices) or any(len(v) != 1 for v in vectors) or not matrices:
            return None
        per_step = sum(m[0] * m[1] for m in matrices) + sum(v[0] for v in vectors)
        return _product(data[:-1]) * per_step
    return None


def _is_builtin(name: str) -> bool:
    """Whether ``name`` is one of TFLite's builtin ops (a custom op reports its custom code)."""
    from ai_edge_litert import schema_py_generated as schema

    return hasattr(schema.BuiltinOperator, name)


def count_parameters(tflite: bytes) -> int:
    """Elements of the model's constant tensors (weights and biases), read from the flatbuffer.

    Why not Keras' ``count_params``: a ``.tflite`` trained elsewhere has no Keras model; counting its
    constant tensors gives the same figure for every source (batch normalization is already folded).
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    total = 0
    for subgraph in model.subgraphs or []:
        for tensor in subgraph.tensors or []:
            buffer = model.buffers[tensor.buffer] if tensor.buffer < len(model.buffers) else None
            if buffer is None or (buffer.data is None or len(buffer.data) == 0) and not getattr(buffer, "offset", 0):
                continue
            count = 1
            for dim in tensor.shape if tensor.shape is not None else []:
                count *= int(dim)
            total += count
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
