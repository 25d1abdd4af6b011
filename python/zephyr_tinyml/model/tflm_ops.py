"""Which TFLite builtin ops the device's TFLM can register, and under which resolver method.

The list is the set of ``Add<Op>()`` methods of ``tflite::MicroMutableOpResolver`` in the
tflite-micro revision our west manifest pins for Zephyr 3.4 (a fact about that source, kept as data).
An op outside it would compile into a firmware that fails at ``AllocateTensors`` with "Didn't find
op for builtin opcode", so the codegen refuses it instead.
"""

from __future__ import annotations

RESOLVER_METHODS: frozenset[str] = frozenset("""
Abs Add AddN ArgMax ArgMin AssignVariable AveragePool2D BatchToSpaceNd BroadcastArgs BroadcastTo
CallOnce Cast Ceil CircularBuffer Concatenation Conv2D Cos CumSum DepthToSpace DepthwiseConv2D
Dequantize DetectionPostprocess Div Elu Equal EthosU Exp ExpandDims Fill Floor FloorDiv FloorMod
FullyConnected Gather GatherNd Greater GreaterEqual HardSwish If L2Normalization L2Pool2D LeakyRelu
Less LessEqual Log LogicalAnd LogicalNot LogicalOr Logistic LogSoftmax Maximum MaxPool2D MirrorPad
Mean Minimum Mul Neg NotEqual Pack Pad PadV2 Prelu Quantize ReadVariable ReduceMax Relu Relu6
Reshape ResizeBilinear ResizeNearestNeighbor Rfft Round Rsqrt SelectV2 Shape Sin Slice Softmax
SpaceToBatchNd SpaceToDepth Split SplitV Squeeze Sqrt Square SquaredDifference StridedSlice Sub Sum
Svdf Tanh TransposeConv Transpose Unpack UnidirectionalSequenceLSTM VarHandle While Window ZerosLike
""".split())

# Ops with an int8-only registration, ``Register_<OP>_INT8()``, accepted by their ``Add<Op>()``. With
# CMSIS_NN defined TFLM's headers declare them as CMSIS-NN's int8 kernels; otherwise they are inline
# aliases of the full kernel, so generated code that names them builds with either kernel set.
INT8_REGISTRATIONS: frozenset[str] = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "MUL", "SOFTMAX",
})

_SPECIAL = {"CUMSUM": "CumSum", "UNIDIRECTIONAL_SEQUENCE_LSTM": "UnidirectionalSequenceLSTM"}

# What to change when the converter produced an op the device cannot run.
_ADVICE = {
    "SHAPE": "export with a fixed batch size (zephyr-tinyml does) or avoid dynamic shapes",
    "REVERSE_V2": "drop the reverse (flip the data instead)",
    "TOPK_V2": "take the argmax on the device instead of top-k in the model",
}


def resolver_method(op_name: str) -> str:
    """``CONV_2D`` -> ``Conv2D``: the name TFLM's generated resolvers use (``AddConv2D``)."""
    if op_name in _SPECIAL:
        return _SPECIAL[op_name]
    return "".join(part.upper() if part[:1].isdigit() else part.capitalize() for part in op_name.split("_"))


def unsupported_ops(op_names: list[str] | tuple[str, ...]) -> list[str]:
    """Op names (sorted, unique) the pinned TFLM cannot register."""
    return sorted({name for name in op_names if resolver_method(name) not in RESOLVER_METHODS})


def advice(op_name: str) -> str:
    """A hint for replacing ``op_name``; generic where we have nothing specific."""
    return _ADVICE.get(op_name, "replace the layer that produces it with one TFLM supports")
