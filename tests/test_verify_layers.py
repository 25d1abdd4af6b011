"""Layer-by-layer comparison of TFLM with the TFLite reference kernels (the verify stage's drill-down
when an image's outputs differ), on a real model: identical models agree on every op; a copy with one
convolution weight changed is traced to that CONV_2D, with its differing elements."""

from __future__ import annotations

from pathlib import Path

import flatbuffers
import numpy as np

from zephyr_tinyml.model.verify import all_tensors_model, describe_divergence, first_divergence, is_rounding_difference

MODEL = (Path(__file__).parent / "fixtures" / "tflite_support_0_4_4_classifier.tflite").read_bytes()
IMAGE = ((np.arange(64) * 29) % 256 - 128).astype(np.int8).reshape(8, 8, 1)


def _with_conv_weight_changed(tflite: bytes, delta: int) -> bytes:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    graph = model.subgraphs[0]
    conv = next(op for op in graph.operators if model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.CONV_2D)
    buffer = model.buffers[graph.tensors[conv.inputs[1]].buffer]
    data = buffer.data.astype(np.int8).copy()
    data[:] = np.clip(data.astype(np.int16) + delta, -127, 127).astype(np.int8)
    buffer.data = data.view(np.uint8)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_every_op_output_is_exposed_in_execution_order():
    _, ops = all_tensors_model(MODEL)
    assert [op["op"] for op in ops] == ["CONV_2D", "RESHAPE", "FULLY_CONNECTED"]
    assert [op["op_index"] for op in ops] == [0, 1, 2]


def test_same_model_agrees_on_every_op():
    result = first_divergence(MODEL, IMAGE, 0)
    assert result["op"] is None and describe_divergence(result) == ""


def test_changed_weights_are_traced_to_the_first_differing_op():
    result = first_divergence(MODEL, IMAGE, 5, reference_tflite=_with_conv_weight_changed(MODEL, 20))
    assert result["op"] == "CONV_2D" and result["op_index"] == 0 and result["image"] == 5
    assert result["differing_elements"] > 0 and result["max_abs_difference"] > 1
    assert result["later_ops_differing"] == 2
    index, tflm, ref = result["first_elements"][0]
    assert tflm != ref
    assert not result["rounding"] and "NOT explained by rounding" in describe_divergence(result)


def test_rounding_rule():
    base = {"op": "CONV_2D", "max_abs_difference": 1}
    assert is_rounding_difference(base)
    assert not is_rounding_difference({**base, "max_abs_difference": 2})
    assert not is_rounding_difference({**base, "op": "MAX_POOL_2D"})
