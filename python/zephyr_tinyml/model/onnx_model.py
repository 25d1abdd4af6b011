"""ONNX models (``.onnx``) as PyTorch modules, so that they take the PyTorch path to int8.

``tinyml build digits.onnx --data-dir DIR`` reads the ONNX graph with the ``onnx`` package and
builds a ``torch.nn.Module`` that runs its nodes in order with torch's functional ops. From there it
is a float PyTorch model like a ``.pt2`` program (:mod:`.torch_model`): wrapped to NHWC input,
quantized by the PT2E int8 quantizer calibrated on the representative images, converted by
litert-torch, then verified, generated and built like any int8 ``.tflite``.

Why our own converter: onnx2tf, the usual ONNX -> TFLite route, pins a TensorFlow release other than
the one this project's int8 conversion is verified with, and onnx2torch needs torchvision, whose
wheels pin one torch build. The ops a microcontroller classifier exported from PyTorch or Keras is
made of are few; each is mapped here with ONNX's semantics (asymmetric pads, ``auto_pad``, Gemm's
transposes, Reshape's 0 = "copy this dimension"), and any other op is refused by name.

Values that depend only on shapes and constants (``Shape``, ``Gather``, ``Concat`` feeding a
``Reshape``: what ``x.view(x.size(0), -1)`` exports to) are computed with numpy while the module
runs, so the traced program has static shapes, as ``torch.export`` needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import ModelError

ONNX_SUFFIXES = (".onnx",)


class _Graph:
    """The parts of an ONNX graph the module runs: nodes in order, constants, one input and output."""

    def __init__(self, path: Path):
        import onnx   # part of the torch extra: see torch_model's docstring
        from onnx import numpy_helper

        try:
            model = onnx.load(str(path))
        except Exception as exc:  # protobuf raises DecodeError and friends for a file that is not ONNX
            raise ModelError(f"{path}: the onnx package cannot read it ({type(exc).__name__}: {exc}). Give a model "
                             f"saved by torch.onnx.export, tf2onnx or onnx.save.") from None
        self.path = path
        graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        self.constants: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        inputs = [i for i in graph.input if i.name not in self.constants]
        if len(inputs) != 1 or len(graph.output) != 1:
            raise ModelError(f"{path} takes {len(inputs)} inputs and gives {len(graph.output)} outputs; the "
                             f"zephyr-tinyml runtime runs models with one of each.")
        self.input, self.output = inputs[0].name, graph.output[0].name
        dims = inputs[0].type.tensor_type.shape.dim
        self.shape: tuple[int | None, ...] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
        if not self.shape or any(d is None for d in self.shape[1:]):
            raise ModelError(f"{path}: its input shape {list(self.shape)} has unknown dimensions besides the batch; "
                             f"export it with a fixed example input, e.g. torch.zeros(1, 1, 28, 28), and only the "
                             f"batch in dynamic_axes.")
        self.nodes = [(n.op_type, list(n.input), list(n.output), n.name or n.output[0],
                       {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute},
                       n.domain) for n in graph.node]
        for op, _, _, name, _, domain in self.nodes:
            if domain not in ("", "ai.onnx") or op not in _OPS:
                raise ModelError(f"{path}: node '{name}' is ONNX op {domain + '.' if domain else ''}{op}, which "
                                 f"zephyr-tinyml does not convert (it converts {', '.join(sorted(_OPS))}). Export "
                                 f"the model without it, or quantize it to an int8 .tflite yourself and give that.")


def onnx_module(path: Path) -> tuple[Any, tuple[int | None, ...], int]:
    """The ONNX model at ``path`` as a ``torch.nn.Module`` in evaluation mode, its input shape as the
    file gives it (NCHW for images; None for a dynamic batch) and its number of weights."""
    import torch

    graph = _Graph(Path(path))

    class OnnxModule(torch.nn.Module):
        """Runs ``graph``'s nodes in order; float constants are this module's parameters (so the
        quantizer sees convolution and matrix weights as weights)."""

        def __init__(self) -> None:
            super().__init__()
            self.weights = torch.nn.ParameterDict()
            self.names: dict[str, str] = {}
            for i, (name, value) in enumerate(sorted(graph.constants.items())):
                if value.dtype == np.float32 and value.ndim > 0:
                    key = f"w{i}"
                    self.names[name] = key
                    self.weights[key] = torch.nn.Parameter(torch.from_numpy(value.copy()), requires_grad=False)

        def forward(self, x: Any) -> Any:
            values: dict[str, Any] = dict(graph.constants)
            for name, key in self.names.items():
                values[name] = self.weights[key]
            values[graph.input] = x
            for op, inputs, outputs, name, attrs, _ in graph.nodes:
                args = [values[i] if i else None for i in inputs]
                try:
                    result = _OPS[op](args, attrs, graph.opset)
                except (ValueError, TypeError, RuntimeError, IndexError) as exc:
                    raise ModelError(f"{graph.path}: node '{name}' ({op}) cannot run on its inputs "
                                     f"({type(exc).__name__}: {exc}).") from None
                for out, value in zip(outputs, result if isinstance(result, tuple) else (result,)):
                    values[out] = value
            return _tensor(values[graph.output])

    module = OnnxModule().eval()
    count = int(sum(v.size for v in graph.constants.values() if v.dtype == np.float32))
    return module, graph.shape, count


# --------------------------------------------------------------------------------------------
# The ops: each takes the node's input values (numpy for constants, torch tensors otherwise), its
# attributes and the model's opset, and returns its output (a tuple where it has several).
# --------------------------------------------------------------------------------------------
def _is_const(*values: Any) -> bool:
    return all(v is None or isinstance(v, np.ndarray) for v in values)


def _tensor(value: Any) -> Any:
    import torch

    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    return value


def _ints(value: Any) -> list[int]:
    return [int(v) for v in np.asarray(value).reshape(-1)]


def _axes(args: list[Any], attrs: dict[str, Any], position: int = 1) -> list[int] | None:
    """``axes`` as an attribute (older opsets) or as an input (opset 13+ for Squeeze/Unsqueeze/ReduceMean)."""
    if "axes" in attrs:
        return list(attrs["axes"])
    if len(args) > position and args[position] is not None:
        return _ints(args[position])
    return None


def _binary(numpy_op: Callable[[Any, Any], Any], torch_name: str) -> Callable[..., Any]:
    def run(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
        a, b = args
        if _is_const(a, b):
            return numpy_op(a, b)
        import torch

        return getattr(torch, torch_name)(_tensor(a), _tensor(b))
    return run


def _unary(torch_name: str) -> Callable[..., Any]:
    def run(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
        import torch

        return getattr(torch, torch_name)(_tensor(args[0]))
    return run


def _pads(x: Any, attrs: dict[str, Any], kernel: list[int], strides: list[int], dilations: list[int],
          fill: float) -> tuple[Any, list[int]]:
    """ONNX pads ([begin..., end...] or auto_pad) as symmetric padding for torch, padding ``x``
    itself (with ``fill``) where begin and end differ."""
    import torch.nn.functional as F

    spatial = list(x.shape[2:])
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads_begin, pads_end = [], []
        for size, k, s, d in zip(spatial, kernel, strides, dilations):
            total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            pads_begin.append(small if auto == "SAME_UPPER" else big)
            pads_end.append(big if auto == "SAME_UPPER" else small)
    elif auto == "VALID":
        pads_begin = pads_end = [0] * len(spatial)
    else:
        pads = list(attrs.get("pads", [0] * (2 * len(spatial))))
        pads_begin, pads_end = pads[:len(spatial)], pads[len(spatial):]
    if pads_begin == pads_end:
        return x, pads_begin
    torch_pads: list[int] = []
    for begin, end in reversed(list(zip(pads_begin, pads_end))):
        torch_pads += [begin, end]
    return F.pad(x, torch_pads, value=fill), [0] * len(spatial)


def _conv(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
    import torch.nn.functional as F

    x, w = _tensor(args[0]), _tensor(args[1])
    b = _tensor(args[2]) if len(args) > 2 and args[2] is not None else None
    n = w.dim() - 2
    kernel = list(attrs.get("kernel_shape", w.shape[2:]))
    strides, dilations = list(attrs.get("strides", [1] * n)), list(attrs.get("dilations", [1] * n))
    x, padding = _pads(x, attrs, kernel, strides, dilations, 0.0)
    conv = {1: F.conv1d, 2: F.conv2d}.get(n)
    if conv is None:
        raise ValueError(f"a {n}-d convolution; 1-d and 2-d are converted")
    return conv(x, w, b, strides, padding, dilations, int(attrs.get("group", 1)))


def _pool(kind: str) -> Callable[..., Any]:
    def run(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
        import torch.nn.functional as F

        x = _tensor(args[0])
        kernel = list(attrs["kernel_shape"])
        n = len(kernel)
        strides, dilations = list(attrs.get("strides", [1] * n)), list(attrs.get("dilations", [1] * n))
        ceil = bool(attrs.get("ceil_mode", 0))
        if kind == "max":
            x, padding = _pads(x, attrs, kernel, strides, dilations, float("-inf"))
            pool = {1: F.max_pool1d, 2: F.max_pool2d}[n]
            return pool(x, kernel, strides, padding, dilations, ceil_mode=ceil)
        include = bool(attrs.get("count_include_pad", 0))
        x, padding = _pads(x, attrs, kernel, strides, dilations, 0.0)
        pool = {1: F.avg_pool1d, 2: F.avg_pool2d}[n]
        return pool(x, kernel, strides, padding, ceil_mode=ceil, count_include_pad=include)
    return run


def _global_pool(kind: str) -> Callable[..., Any]:
    def run(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
        x = _tensor(args[0])
        dims = tuple(range(2, x.dim()))
        return x.mean(dim=dims, keepdim=True) if kind == "avg" else x.amax(dim=dims, keepdim=True)
    return run


def _gemm(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
    import torch.nn.functional as F

    a, b = _tensor(args[0]), _tensor(args[1])
    c = _tensor(args[2]) if len(args) > 2 and args[2] is not None else None
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    if attrs.get("transA", 0):
        a = a.t()
    weight = b if attrs.get("transB", 0) else b.t()      # F.linear takes [out, in]
    if alpha != 1.0:
        weight = weight * alpha
    if c is not None and beta != 1.0:
        c = c * beta
    if c is not None and c.dim() == 1:
        return F.linear(a, weight, c)
    out = F.linear(a, weight)
    return out if c is None else out + c


def _reshape(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
    x, shape = args[0], _ints(args[1])
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _flatten(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
    x = args[0]
    axis = int(attrs.get("axis", 1)) % max(len(x.shape), 1)
    return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)


def _transpose(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
    x = args[0]
    perm = list(attrs.get("perm", reversed(range(len(x.shape)))))
    return np.transpose(x, perm) if _is_const(x) else x.permute(*perm)


def _unsqueeze(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
    x, axes = args[0], _axes(args, attrs) or []
    rank = len(x.shape) + len(axes)
    for axis in sorted(a % rank for a in axes):
        x = np.expand_dims(x, axis) if _is_const(x) else x.unsqueeze(axis)
    return x


def _squeeze(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
    x, axes = args[0], _axes(args, attrs)
    if axes is None:
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    for axis in sorted((a % len(x.shape) for a in axes), reverse=True):
        x = np.squeeze(x, axis) if _is_const(x) else x.squeeze(axis)
    return x


def _concat(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
    axis = int(attrs["axis"])
    if _is_const(*args):
        return np.concatenate(args, axis=axis)
    import torch

    return torch.cat([_tensor(a) for a in args], dim=axis)


def _gather(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
    data, indices = args
    axis = int(attrs.get("axis", 0))
    if _is_const(data, indices):
        return np.take(data, indices, axis=axis)
    if not _is_const(indices):
        raise ValueError("indices computed from the input; only constant indices are converted")
    index = np.asarray(indices)
    picked = data.index_select(axis, _tensor(index.reshape(-1).astype(np.int64)))
    return picked.reshape(list(data.shape[:axis]) + list(index.shape) + list(data.shape[axis + 1:]))


def _slice(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
    x = args[0]
    if opset < 10:
        starts, ends = list(attrs["starts"]), list(attrs["ends"])
        axes, steps = list(attrs.get("axes", range(len(starts)))), [1] * len(starts)
    else:
        starts, ends = _ints(args[1]), _ints(args[2])
        axes = _ints(args[3]) if len(args) > 3 and args[3] is not None else list(range(len(starts)))
        steps = _ints(args[4]) if len(args) > 4 and args[4] is not None else [1] * len(starts)
    index: list[Any] = [slice(None)] * len(x.shape)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        if step < 1:
            raise ValueError("a negative slice step")
        size = x.shape[axis]
        index[axis] = slice(max(min(start, size), -size), max(min(end, size), -size - 1), step)
    return x[tuple(index)]


def _cast(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
    from onnx import helper

    dtype = helper.tensor_dtype_to_np_dtype(int(attrs["to"]))
    x = args[0]
    if _is_const(x):
        return x.astype(dtype)
    if dtype != np.float32:
        raise ValueError(f"a cast of the model's data to {dtype}; the device runs int8 models of float sources")
    return x.float()


def _constant(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
    from onnx import numpy_helper

    if "value" in attrs:
        return numpy_helper.to_array(attrs["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                       ("value_ints", np.int64)):
        if key in attrs:
            return np.asarray(attrs[key], dtype)
    raise ValueError(f"a Constant with {', '.join(attrs)}; tensors, floats and ints are converted")


def _shape(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
    shape = np.asarray([int(d) for d in args[0].shape], np.int64)
    start, end = attrs.get("start"), attrs.get("end")
    return shape[start:end]


def _constant_of_shape(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
    from onnx import numpy_helper

    fill = numpy_helper.to_array(attrs["value"]) if "value" in attrs else np.zeros(1, np.float32)
    return np.full(_ints(args[0]), fill.reshape(-1)[0], fill.dtype)


def _clip(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
    import torch

    x = _tensor(args[0])
    if opset < 11:
        low, high = attrs.get("min"), attrs.get("max")
    else:
        low = float(np.asarray(args[1])) if len(args) > 1 and args[1] is not None else None
        high = float(np.asarray(args[2])) if len(args) > 2 and args[2] is not None else None
    if low == 0.0 and high == 6.0:
        return torch.nn.functional.relu6(x)
    return torch.clamp(x, low, high)


def _softmax(log: bool) -> Callable[..., Any]:
    def run(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
        import torch.nn.functional as F

        x = _tensor(args[0])
        axis = int(attrs.get("axis", -1 if opset >= 13 else 1))
        if opset < 13 and axis % x.dim() != x.dim() - 1:
            x2 = x.reshape(int(np.prod(x.shape[:axis])), -1)    # opset < 13 flattens from axis
            return (F.log_softmax if log else F.softmax)(x2, dim=1).reshape(x.shape)
        return (F.log_softmax if log else F.softmax)(x, dim=axis)
    return run


def _batch_norm(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
    import torch.nn.functional as F

    x, scale, bias, mean, var = (_tensor(a) for a in args[:5])
    return F.batch_norm(x, mean, var, scale, bias, False, 0.0, float(attrs.get("epsilon", 1e-5)))


def _leaky_relu(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
    import torch.nn.functional as F

    return F.leaky_relu(_tensor(args[0]), float(attrs.get("alpha", 0.01)))


def _pad(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
    import torch.nn.functional as F

    x = _tensor(args[0])
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        raise ValueError(f"Pad mode '{mode}'; constant padding is converted")
    pads = list(attrs["pads"]) if opset < 11 else _ints(args[1])
    value = float(attrs.get("value", 0.0)) if opset < 11 else (
        float(np.asarray(args[2]).reshape(-1)[0]) if len(args) > 2 and args[2] is not None else 0.0)
    half = len(pads) // 2
    torch_pads: list[int] = []
    for begin, end in reversed(list(zip(pads[:half], pads[half:]))):
        torch_pads += [begin, end]
    return F.pad(x, torch_pads, value=value)


def _reduce_mean(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
    x = _tensor(args[0])
    axes = _axes(args, attrs) or list(range(x.dim()))
    return x.mean(dim=tuple(axes), keepdim=bool(attrs.get("keepdims", 1)))


def _identity(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
    return args[0]


def _matmul(args: list[Any], attrs: dict[str, Any], opset: int) -> Any:
    import torch

    return torch.matmul(_tensor(args[0]), _tensor(args[1]))


_OPS: dict[str, Callable[[list[Any], dict[str, Any], int], Any]] = {
    "Add": _binary(np.add, "add"), "Sub": _binary(np.subtract, "sub"), "Mul": _binary(np.multiply, "mul"),
    "Div": _binary(lambda a, b: a // b if a.dtype.kind == "i" else a / b, "div"),
    "AveragePool": _pool("avg"), "BatchNormalization": _batch_norm, "Cast": _cast, "Clip": _clip,
    "Concat": _concat, "Constant": _constant, "ConstantOfShape": _constant_of_shape, "Conv": _conv,
    "Dropout": _identity, "Flatten": _flatten, "Gather": _gather, "Gemm": _gemm,
    "GlobalAveragePool": _global_pool("avg"), "GlobalMaxPool": _global_pool("max"), "Identity": _identity,
    "LeakyRelu": _leaky_relu, "LogSoftmax": _softmax(True), "MatMul": _matmul, "MaxPool": _pool("max"),
    "Pad": _pad, "ReduceMean": _reduce_mean, "Relu": _unary("relu"), "Reshape": _reshape, "Shape": _shape,
    "Sigmoid": _unary("sigmoid"), "Slice": _slice, "Softmax": _softmax(False), "Squeeze": _squeeze,
    "Tanh": _unary("tanh"), "Transpose": _transpose, "Unsqueeze": _unsqueeze,
}
