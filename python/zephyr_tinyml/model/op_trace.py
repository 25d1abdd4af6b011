"""Which op made the device differ from host TFLM: the self test's op trace, op by op.

Bit-exactness is the contract: the self test compares every output byte with host TFLM's. When an
input differs, the device runs it again with every op wrapped and prints the input tensor and each
op's output tensor as it is produced (``OPTRACE`` lines of hex, ``zephyr/lib/tinyml/op_trace.cpp``).
Here host TFLM runs the same model (read back from the generated ``model_data.cc``) on the same
input with every intermediate tensor readable, and the first op whose output differs is named:
the ops before it produced equal tensors, so that op's kernel on the device is the one that is not
bit-exact for this model (with CMSIS-NN, its CMSIS-NN kernel: host TFLM runs the reference ones).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from .sources import generated_model
from .verify import all_tensors_model, tflm_interpreter

BEGIN = re.compile(r"^OPTRACE begin test=(\d+)\s*$")
DATA = re.compile(r"^OPTRACE (input|t\d+) ([0-9a-f]*)\s*$")


@dataclass
class DeviceTrace:
    """What the device printed for one traced inference."""

    test: int                                         # index of the embedded test input
    input: bytes = b""
    tensors: dict[int, bytes] = field(default_factory=dict)   # tensor index -> bytes, in print order
    complete: bool = False                            # "OPTRACE end" seen


def parse_trace(output: str) -> DeviceTrace | None:
    """The first ``OPTRACE begin`` ... ``OPTRACE end`` block of a run's output; None without one."""
    trace: DeviceTrace | None = None
    parts: dict[str, list[str]] = {}
    for line in output.splitlines():
        line = line.strip()
        if trace is None:
            match = BEGIN.match(line)
            if match:
                trace = DeviceTrace(int(match.group(1)))
            continue
        if line == "OPTRACE end":
            trace.complete = True
            break
        match = DATA.match(line)
        if match:
            parts.setdefault(match.group(1), []).append(match.group(2))
    if trace is None:
        return None
    trace.input = bytes.fromhex("".join(parts.pop("input", [])))
    trace.tensors = {int(name[1:]): bytes.fromhex("".join(chunks)) for name, chunks in parts.items()}
    return trace


def first_difference(tflite: bytes, trace: DeviceTrace, limit: int = 4) -> dict[str, Any] | None:
    """The first op (in execution order) whose output the device printed differently from host TFLM's.

    Returns the op (index, name, output tensor) with how many elements differ, the largest gap and
    the first few (element, device, host TFLM); ``missing`` when the device printed no output for
    it (the trace stopped); None when every op's output is equal.
    """
    debug_model, ops = all_tensors_model(tflite)
    interpreter = tflm_interpreter(debug_model)
    details = interpreter.get_input_details(0)
    image = np.frombuffer(trace.input, dtype=details["dtype"])
    if image.size != int(np.prod(details["shape"])):
        raise ModelError(f"the device's op trace holds {len(trace.input)} input bytes, the model's input "
                            f"{tuple(details['shape'])} needs {int(np.prod(details['shape'])) * image.itemsize}")
    interpreter.reset()                      # the device traces from the initial state too
    interpreter.set_input(image.reshape(details["shape"]), 0)
    interpreter.invoke()
    for position, op in enumerate(ops):
        base = dict(op, ops=len(ops))
        host = np.asarray(interpreter.get_output(position)).reshape(-1)
        printed = trace.tensors.get(op["tensor"])
        if printed is None:
            return base | {"missing": True}
        device = np.frombuffer(printed, dtype=host.dtype) if len(printed) % host.itemsize == 0 else None
        if device is None or device.size != host.size:
            return base | {"elements": int(host.size), "differing": int(host.size), "size_mismatch": len(printed)}
        differs = np.flatnonzero(device != host)
        if differs.size:
            gaps = np.abs(device[differs].astype(np.int64) - host[differs].astype(np.int64))
            return base | {"elements": int(host.size), "differing": int(differs.size), "max_gap": int(gaps.max()),
                           "first": [(int(i), int(device[i]), int(host[i])) for i in differs[:limit]]}
    return None


def describe(difference: dict[str, Any] | None, kernels: str, input_name: str) -> str:
    """One paragraph for the user: which op, by how much, what to do.

    ``kernels``: the device's kernel build (``cmsis-nn``, ``reference``, ...; empty when unknown);
    ``input_name``: which input was traced ("test input 3", "test image 1234").
    """
    if difference is None:
        return (f"every op's output on {input_name} equals host TFLM's in the device's op trace, yet its output "
                f"differed: the expected bytes are not host TFLM's for this model (regenerate the sources with "
                f"`west tinyml build`), or the device does not compute the same twice")
    where = (f"op {difference['op_index']} of {difference['ops']}, {difference['op']} (output tensor "
             f"{difference['tensor']} '{difference['tensor_name']}')")
    if difference.get("missing"):
        return (f"the device's op trace stops before {where}: the run was cut short or that op's output was not "
                f"printed; the ops before it equal host TFLM's")
    if "size_mismatch" in difference:
        amount = f"the device printed {difference['size_mismatch']} bytes for its {difference['elements']} elements"
    else:
        element, device, host = difference["first"][0]
        amount = (f"{difference['differing']:,} of {difference['elements']:,} elements differ, by up to "
                  f"{difference['max_gap']} (element {element}: device {device}, host TFLM {host})")
    if kernels.startswith("cmsis-nn"):
        advice = (f"so the {kernels} kernel of {difference['op']} is not bit-exact with host TFLM for this model. "
                  f"Build with --kernels reference (the kernels host TFLM runs) and report the op and model")
    elif kernels == "reference":
        advice = (f"so TFLM's {difference['op']} kernel computes differently on this 32-bit device than on the "
                  f"host: report the op and model")
    else:
        advice = (f"so the device's {difference['op']} kernel is not bit-exact with host TFLM for this model "
                  f"(with CMSIS-NN, --kernels reference runs the kernels host TFLM runs)")
    return (f"{where} is the first op whose output differs from host TFLM's on {input_name}: "
            f"{amount}. Every op before it gave equal tensors, {advice}.")


def cell(difference: dict[str, Any] | None) -> str:
    """The same, short, for a benchmark table's note."""
    if difference is None:
        return "every op equals host TFLM's: test_data.cc is stale"
    where = f"op {difference['op_index']} {difference['op']}"
    if difference.get("missing"):
        return f"op trace stops before {where}"
    return f"{where} not bit-exact ({difference['differing']:,}/{difference['elements']:,} elements differ)"


def trace_difference(folder: Path, output: str) -> tuple[DeviceTrace, dict[str, Any] | None] | None:
    """For a self test run that differed from host TFLM: its op trace and :func:`first_difference`;
    None when the run printed no trace (an app without the self test's op trace)."""
    trace = parse_trace(output)
    if trace is None:
        return None
    return trace, first_difference(generated_model(folder), trace)
