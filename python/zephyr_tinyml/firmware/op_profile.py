"""Where an inference's instructions go, op by op: the self test's ``OPPROFILE`` lines, named.

Why: the total per inference says whether a model is fast enough, not which layer to change or
which kernel is slow. After its measured inferences the self test runs test input 0 once more with
every op's invoke function wrapped and timed by the cycle counter (``CONFIG_TINYML_OP_PROFILE``,
``zephyr/lib/tinyml/op_trace.cpp``) and prints one line per op in execution order. Here each line
gets the op's name and multiply-accumulates from the ``.tflite`` compiled into the image, and, under
QEMU icount, its instructions through the self test's calibration, as the whole inference's are
(:func:`to_instructions`). On a board without icount the cycles are the figure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from ..model.tflite_model import macs_per_op

PROFILE = re.compile(r"^OPPROFILE op=(\d+) cycles=(\d+)\s*$")


@dataclass
class OpCost:
    """One op of one inference, measured on the device."""

    index: int              # position in the main subgraph (execution order)
    op: str                 # builtin name, e.g. CONV_2D; "?" when the model has fewer ops
    cycles: int
    instructions: int       # under QEMU icount, from the calibration; 0 without one
    macs: int | None        # multiply-accumulates of this op (0: pooling, reshape, ...; None: not counted)

    @property
    def per_mac(self) -> float:
        """Instructions (or, without icount, cycles) per multiply-accumulate; 0 for ops without MACs."""
        return (self.instructions or self.cycles) / self.macs if self.macs else 0.0


def to_instructions(cycles: int, summary: dict[str, Any]) -> int:
    """Cycles counted under QEMU icount as instructions, with the SUMMARY line's calibration (a known
    number of instructions timed with the same counter); 0 without a calibration."""
    calibration, instructions = summary.get("calibration_cycles"), summary.get("calibration_instructions")
    if not (isinstance(calibration, int) and isinstance(instructions, int) and calibration > 0):
        return 0
    return round(cycles * instructions / calibration)


def parse_profile(output: str) -> list[int]:
    """The cycles of each op, in order, from the first profile in a run's output ([] without one)."""
    cycles: list[int] = []
    for line in output.splitlines():
        match = PROFILE.match(line.strip())
        if not match:
            continue
        index, value = int(match.group(1)), int(match.group(2))
        if index != len(cycles):      # a second profile (index 0 again) or a lost line: stop there
            break
        cycles.append(value)
    return cycles


def op_costs(tflite: bytes, output: str, summary: dict[str, Any]) -> list[OpCost]:
    """The run's profile with each op's name, MACs and instructions ([] when it printed none)."""
    cycles = parse_profile(output)
    if not cycles:
        return []
    ops = macs_per_op(tflite)
    costs = []
    for index, value in enumerate(cycles):
        name, macs = ops[index] if index < len(ops) else ("?", 0)
        costs.append(OpCost(index, name, value, to_instructions(value, summary), macs))
    return costs


# The fewest instructions per int8 multiply-accumulate each kernel build's instruction set allows
# (the "bound" column): one per MUL/MLA without SIMD; two with the DSP extension's SMLAD (a dual
# 16-bit multiply-accumulate); eight with Helium's 16-bit lanes (VMLADAVA.S16 over a Q register).
# A kernel can only approach it: its operands must be loaded, its sums requantized.
MAC_BOUNDS = {"reference": 1.0, "cmsis-nn": 1.0, "cmsis-nn-dsp": 0.5, "cmsis-nn-mve": 0.125}


def render_ops(rows: list[tuple[str, str, str, list[OpCost]]], fmt: str) -> str:
    """One line per op of each (model, board, kernels) row: instructions (or cycles), share, per MAC,
    and the kernel build's bound per MAC (:data:`MAC_BOUNDS`) beside it."""
    header = ["model", "board", "kernels", "op", "instructions", "share", "MACs", "per MAC", "bound"]
    lines = []
    for model, board, kernels, costs in rows:
        total = sum(c.instructions or c.cycles for c in costs) or 1
        bound = MAC_BOUNDS.get(kernels)
        for c in costs:
            figure = c.instructions or c.cycles
            count = f"{figure:,}" if c.instructions else f"{figure:,} cycles"
            lines.append([model, board, kernels, f"{c.index} {c.op}", count, f"{100 * figure / total:.1f} %",
                          "not counted" if c.macs is None else f"{c.macs:,}" if c.macs else "",
                          f"{c.per_mac:.2f}" if c.macs else "",
                          f"{bound:g}" if c.macs and bound is not None else ""])
    if fmt == "markdown":
        out = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] * 4 + ["---:"] * 5) + " |"]
        return "\n".join(out + ["| " + " | ".join(line) + " |" for line in lines])
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    fmt_line = "  ".join("{:<%d}" % w for w in widths)
    return "\n".join([fmt_line.format(*header)] + [fmt_line.format(*line) for line in lines])
