"""PyTorch models trained elsewhere: a ``torch.export`` program (``.pt2``) or an ONNX model
(``.onnx``, run as a PyTorch module by :mod:`.onnx_model`) -> full-int8 ``.tflite``.

``tinyml build digits.pt2 --data-dir DIR`` loads the ExportedProgram (``torch.export.save``), wraps it
so that it takes NHWC input (PyTorch convolutions are NCHW; the data, the generated app and every
other model here are NHWC, so the data set maps onto the input as for a Keras model), quantizes it
with litert-torch's PT2E quantizer calibrated on the spec's representative training images, and
converts it with litert-torch. The result is then verified, generated and built exactly like an
int8 ``.tflite`` the user gave.

Quantization recipe, and why:
* static int8 activations and weights, int8 input and output (the generated app feeds int8);
* per-tensor weight scales everywhere: the TFLM that Zephyr 3.x ships applies only the first scale
  of a per-channel FULLY_CONNECTED (see :func:`.codegen.check_quantization`), and the PT2E quantizer
  chooses the weight scheme per model, not per op type, without a filter of our own.

torch, torchao, litert-torch and onnx are an optional extra (``pip install "zephyr-tinyml[torch]"``, over
1 GB): they are imported inside functions, so that the base install, which has none of them, works
for everything else.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from ..fileio import captured_fd
from .onnx_model import ONNX_SUFFIXES, onnx_module
from .spec import Spec
from .tflite_model import inspect_model

TORCH_SUFFIXES = (".pt2",) + ONNX_SUFFIXES
EXTRA_HINT = 'pip install "zephyr-tinyml[torch]"'
# Part of the quantize stage's cache key for PyTorch models: bump when the conversion recipe changes.
RECIPE = "pt2e-static-int8-per-tensor-nhwc-v1"
# Ops that only move or re-scale int8 data; any other op with a float32 output was left in float.
_FLOAT_BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE")


def torch_extra_missing() -> str | None:
    """The first package of the torch extra that is not importable, or None when all are."""
    import importlib.util

    for module in ("torch", "torchao", "litert_torch", "onnx"):
        if importlib.util.find_spec(module) is None:
            return module
    return None


def converter_versions() -> str:
    """torch's and litert-torch's versions, for the quantize stage's cache key (their int8 output
    changes between releases); read from package metadata, without importing them."""
    from importlib import metadata

    found = []
    for name in ("torch", "torchao", "litert-torch", "onnx"):
        try:
            found.append(f"{name}{metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name}-none")
    return "-".join(found)


def _require_torch(path: Path) -> None:
    missing = torch_extra_missing()
    if missing:
        raise ModelError(f"{path} is a {'n ONNX' if Path(path).suffix in ONNX_SUFFIXES else ' PyTorch'} model; "
                         f"converting it needs '{missing}', which is not installed. "
                         f"Install the PyTorch extra: {EXTRA_HINT}")


class TorchPredictor:
    """A ``torch.export`` program or an ONNX model as a float model with Keras' interface (``input_shape``,
    ``output_shape``, ``count_params``, ``predict``) on NHWC input, so that the pipeline's float
    accuracy and shape logic treat it like a Keras model."""

    def __init__(self, path: Path):
        _require_torch(path)
        import torch  # optional extra: see the module docstring

        self.path = Path(path)
        if self.path.suffix in ONNX_SUFFIXES:
            module, shape, self.params = onnx_module(self.path)
        else:
            module, shape, self.params = _load_program(self.path)
        self.torch_shape = shape
        # NCHW images are fed as NHWC, like the data set's images; other ranks go in as they are. An
        # ONNX model converted from Keras (tf2onnx) already takes NHWC: channels last, 1 or 3 of them.
        self.channels_first = len(shape) == 4 and not (
            self.path.suffix in ONNX_SUFFIXES and shape[3] in (1, 3) and shape[1] not in (1, 3))
        dims = tuple(int(d) for d in shape[1:])
        self.input_shape = (None,) + ((*dims[1:], dims[0]) if self.channels_first else dims)
        self.static_batch = isinstance(shape[0], int)
        self._vmap_works: bool | None = None
        self.module = _nhwc(module, self.channels_first)
        with torch.no_grad():
            out = self.module(torch.zeros((1,) + self.input_shape[1:], dtype=torch.float32))
        if not isinstance(out, torch.Tensor):
            raise ModelError(f"{path} returns {type(out).__name__}, not one tensor; the runtime reads one output.")
        self.output_shape = (None,) + tuple(int(d) for d in out.shape[1:])

    def count_params(self) -> int:
        return self.params

    def predict(self, x: np.ndarray, batch_size: int = 1000, verbose: int = 0) -> np.ndarray:
        """Float outputs for NHWC float inputs, ``batch_size`` at a time."""
        import torch

        outputs = []
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size], np.float32))
                outputs.append(self._run(batch).numpy())
        return np.concatenate(outputs)

    def _run(self, batch: Any) -> Any:
        """A program exported with a static batch of 1 has its graph specialised to that batch
        (reshapes to [1, ...]): it is mapped over the batch with ``torch.func.vmap`` (10x faster than
        a Python loop on MNIST's 10,000 test images), or run one input at a time where an op has no
        batching rule."""
        import torch

        if not (self.static_batch and self.torch_shape[0] == 1):
            return self.module(batch)
        if self._vmap_works is not False:
            try:
                out = torch.func.vmap(lambda one: self.module(one[None])[0])(batch)
                self._vmap_works = True
                return out
            except Exception:  # any op without a batching rule: fall back, once and for all
                self._vmap_works = False
        return torch.cat([self.module(batch[i:i + 1]) for i in range(len(batch))])


def _load_program(path: Path) -> tuple[Any, tuple[Any, ...], int]:
    """A ``.pt2`` file's program as a module, its input shape (NCHW for images) and weight count."""
    import torch

    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # torch raises many types for a file that is not an ExportedProgram
        raise ModelError(f"{path}: torch.export.load cannot read it ({type(exc).__name__}: {exc}). Give a "
                         f"program saved with torch.export.save(torch.export.export(model, (example,)), "
                         f"'{Path(path).name}'); TorchScript (.pt from torch.jit.save) and state dicts "
                         f"(torch.save) are not ExportedPrograms.") from None
    signature = program.graph_signature
    if len(signature.user_inputs) != 1 or len(signature.user_outputs) != 1:
        raise ModelError(f"{path} takes {len(signature.user_inputs)} inputs and gives "
                         f"{len(signature.user_outputs)} outputs; the zephyr-tinyml runtime runs models with one "
                         f"of each.")
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == signature.user_inputs[0])
    value = node.meta.get("val")
    shape = tuple(value.shape) if value is not None else ()
    if not shape or any(not isinstance(d, int) for d in shape[1:]):
        raise ModelError(f"{path}: its input shape {list(shape)} has unknown dimensions besides the batch; "
                         f"export it with a fixed example input, e.g. torch.zeros(1, 1, 28, 28), and no "
                         f"dynamic_shapes other than the batch.")
    return program.module(), shape, int(sum(p.numel() for p in program.state_dict.values()))


def _nhwc(module: Any, channels_first: bool) -> Any:
    """``module`` taking NHWC input when it takes NCHW (a permute in front, which the converter folds
    into the layout it lowers to: no TRANSPOSE op is left at the input)."""
    import torch

    class ChannelsLastInput(torch.nn.Module):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            return self.inner(x.permute(0, 3, 1, 2) if channels_first else x)

    wrapper = ChannelsLastInput(module)
    # Evaluation mode for the converter (it warns otherwise); set on the wrapper only, since an
    # ExportedProgram's module refuses train()/eval() (its mode was fixed when it was exported).
    wrapper.training = False
    return wrapper


def load_torch_model(path: Path) -> TorchPredictor:
    """The float PyTorch model at ``path`` (a ``.pt2`` or ``.onnx``), with its NHWC input shape."""
    return TorchPredictor(path)


def torch_to_int8_tflite(spec: Spec, model: TorchPredictor, samples: np.ndarray) -> bytes:
    """Quantize (PT2E, static int8, per-tensor) calibrated on ``samples`` (normalized NHWC inputs,
    one batch-1 input each) and convert to a full-int8 ``.tflite``."""
    import torch

    example = (torch.zeros((1,) + tuple(model.input_shape[1:]), dtype=torch.float32),)
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    # litert-torch reports progress on stdout, torchao reports its absent CUDA kernels on import and
    # the MLIR converter logs from C++: keep the terminal clean, but put what they said into the
    # error when conversion fails.
    with captured_fd(2) as native, contextlib.redirect_stdout(io.StringIO()) as said, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        step = "import litert-torch"
        try:
            import litert_torch
            from litert_torch.quantize import pt2e_quantizer, quant_config
            from torchao.quantization.pt2e import quantize_pt2e

            step = "export"
            graph = torch.export.export(model.module, example).module()
            step = "quantize"
            quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
                pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=False))
            graph = quantize_pt2e.prepare_pt2e(graph, quantizer)
            with torch.no_grad():
                for sample in samples:
                    graph(torch.from_numpy(np.ascontiguousarray(sample[np.newaxis], np.float32)))
            graph = quantize_pt2e.convert_pt2e(graph, fold_quantize=False)
            step = "convert"
            edge = litert_torch.convert(graph, example, quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer))
            tflite = bytes(edge.model_content())
            failure = None
        except Exception as exc:  # torch and the converter raise many types; all mean "cannot convert"
            failure = exc
    if failure is not None:
        raise ModelError(f"{model.path}: litert-torch could not {step} it to int8 ({type(failure).__name__}: "
                         f"{failure})\n{(said.getvalue() + native.getvalue())[-2000:]}Ops that torch.export or "
                         f"the PT2E int8 quantizer do not support must be changed.")
    tflite = _int8_interface(tflite)
    floats = float_ops(tflite)
    if floats:
        after = f" (and, fed by it, {', '.join(floats[1:])})" if len(floats) > 1 else ""
        raise ModelError(f"{model.path}: the converter could not make it int8 end to end: {floats[0]} stays "
                         f"float{after}, and the device runs full-int8 models only. litert-torch's int8 quantizer "
                         f"covers convolutions, linear layers, pooling, add, mul, cat, ReLU, sigmoid and softmax: "
                         f"replace {floats[0]} with such ops, or quantize the model to an int8 .tflite yourself "
                         f"and give that.")
    return tflite


def float_ops(tflite: bytes) -> list[str]:
    """The kinds of op that compute in float32 (besides QUANTIZE/DEQUANTIZE), in graph order: the
    first is the one the quantizer did not cover, the others are fed by it."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    found = []
    for graph in model.subgraphs:
        for op in graph.operators:
            code = model.operatorCodes[op.opcodeIndex]
            name = names.get(max(code.builtinCode, code.deprecatedBuiltinCode), str(code.builtinCode))
            if name in _FLOAT_BOUNDARY_OPS:
                continue
            if name not in found and any(graph.tensors[i].type == schema.TensorType.FLOAT32 for i in op.outputs):
                found.append(name)
    return found


def _int8_interface(tflite: bytes) -> bytes:
    """Int8 input and output: drop a float QUANTIZE at the input and DEQUANTIZE at the output when
    the converter left them (TFLite's own modify_model_interface tool, shipped in ai-edge-litert)."""
    info = inspect_model(tflite)
    if info.input.dtype == "int8" and info.output.dtype == "int8":
        return tflite
    try:
        from ai_edge_litert import _pywrap_modify_model_interface as interface
    except ImportError:
        return tflite                     # check_io then names the float input or output
    with tempfile.TemporaryDirectory() as folder:
        src, dst = Path(folder) / "in.tflite", Path(folder) / "out.tflite"
        src.write_bytes(tflite)
        int8 = 9                          # TensorType.INT8 of the TFLite schema
        if interface.modify_model_interface(str(src), str(dst), int8, int8) != 0 or not dst.is_file():
            return tflite
        return dst.read_bytes()

