"""op_trace: name the op whose output on the device differs from host TFLM's.

The host tier feeds the parser the lines the device prints (built here from host TFLM's own
tensors for the committed mnist sources, one of them changed as a kernel that is not bit-exact
would); the Zephyr tier (test_firmware.py) runs a device image that corrupts a tensor on purpose.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from zephyr_tinyml.errors import ModelError
from zephyr_tinyml.model.op_trace import cell, describe, first_difference, parse_trace, trace_difference
from zephyr_tinyml.model.sources import generated_model
from zephyr_tinyml.model.verify import all_tensors_model, tflm_interpreter

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO / "samples" / "mnist" / "generated"


def _hex_lines(what: str, data: bytes) -> list[str]:
    """As zephyr/lib/tinyml/op_trace.cpp's PrintHex: 32 bytes a line."""
    return [f"OPTRACE {what} {data[i:i + 32].hex()}" for i in range(0, len(data), 32)]


def _device_output(change: int | None = None, stop_after: int | None = None) -> tuple[str, list[dict]]:
    """A self test's output with an op trace of host TFLM's tensors for one seeded input.

    ``change``: the position (in execution order) of the op whose output gets +1 in element 3,
    and every later op's output too, as a device whose kernel is off would print them.
    """
    tflite = generated_model(MNIST)
    debug_model, ops = all_tensors_model(tflite)
    interpreter = tflm_interpreter(debug_model)
    image = np.random.default_rng(3).integers(-128, 128, size=(1, 28, 28, 1)).astype(np.int8)
    interpreter.set_input(image, 0)
    interpreter.invoke()
    lines = ["*** Booting Zephyr OS build ***", "WRONG output: test 4 element 0 is 48, host TFLM gave 49",
             "OPTRACE begin test=4", *_hex_lines("input", image.tobytes())]
    for position, op in enumerate(ops):
        if stop_after is not None and position > stop_after:
            break
        tensor = np.array(interpreter.get_output(position)).reshape(-1)
        if change is not None and position >= change:
            tensor[3] = np.int8(int(tensor[3]) + 1 if tensor[3] < 127 else 126)
        lines += _hex_lines(f"t{op['tensor']}", tensor.tobytes())
    if stop_after is None:
        lines.append("OPTRACE end")
    lines.append("SUMMARY correct=9/10 arena_used=8948 arena_size=9056 kernels=cmsis-nn")
    return "\n".join(lines) + "\n", ops


def test_trace_is_parsed_back_to_the_bytes_printed() -> None:
    output, ops = _device_output()
    trace = parse_trace(output)
    assert trace is not None and trace.test == 4 and trace.complete
    assert len(trace.input) == 28 * 28
    assert list(trace.tensors) == [op["tensor"] for op in ops]
    assert parse_trace("SUMMARY correct=10/10\n") is None


def test_equal_tensors_name_no_op() -> None:
    output, _ = _device_output()
    trace, difference = trace_difference(MNIST, output)
    assert difference is None
    assert "regenerate the sources" in describe(difference, "cmsis-nn", f"test input {trace.test}")


def test_the_first_differing_op_is_named_with_its_numbers() -> None:
    output, ops = _device_output(change=2)
    trace, difference = trace_difference(MNIST, output)
    assert difference["op_index"] == ops[2]["op_index"] and difference["op"] == "CONV_2D"
    assert difference["tensor"] == ops[2]["tensor"] and trace.test == 4
    assert difference["differing"] == 1 and difference["max_gap"] == 1 and difference["first"][0][0] == 3
    text = describe(difference, "cmsis-nn", "test input 4")
    assert text.startswith(f"op 2 of {len(ops)}, CONV_2D (output tensor {ops[2]['tensor']} ")
    assert "on test input 4: 1 of " in text and "cmsis-nn kernel of CONV_2D is not bit-exact" in text
    assert "--kernels reference" in text
    assert cell(difference) == f"op 2 CONV_2D not bit-exact (1/{difference['elements']:,} elements differ)"
    # With the reference kernels there is no other kernel set to offer.
    assert "--kernels reference" not in describe(difference, "reference", "test input 4")


def test_a_trace_cut_short_says_where_it_stops() -> None:
    output, ops = _device_output(stop_after=1)
    trace, difference = trace_difference(MNIST, output)
    assert not trace.complete and difference["missing"] and difference["op_index"] == ops[2]["op_index"]
    assert "stops before op 2" in describe(difference, "cmsis-nn", "test input 4")


def test_a_trace_with_the_wrong_input_size_is_refused() -> None:
    output, _ = _device_output()
    output = output.replace("OPTRACE input ", "OPTRACE input 00", 1)
    with pytest.raises(ModelError, match="785 input bytes"):
        first_difference(generated_model(MNIST), parse_trace(output))


def test_model_data_that_does_not_match_the_facts_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "generated"
    shutil.copytree(MNIST, folder)
    source = folder / "model_data.cc"
    source.write_text(source.read_text().replace("0x54, 0x46", "0x54, 0x47", 1))
    with pytest.raises(ModelError, match="sha256 differs"):
        generated_model(folder)
