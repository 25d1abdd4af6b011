"""``tinyml bench``: model x board x kernels -> flash, RAM, arena, instructions; a table, not a timed test.

Each configuration is built (one folder per app x board x kernels, so switching kernels never
mixes two configurations, while the models one app runs share it and only their own files are
recompiled) and, on a QEMU board, run once with the self test; the arena the device used is
recorded in the model's generated folder as ``tinyml build --run`` does (see ``model/arena.py``).

How instructions are counted: the samples run QEMU with icount (``CONFIG_QEMU_ICOUNT``, shift 6),
where every guest instruction advances the emulated clock by 2^6 = 64 ns, so the cycles the self
test counts around ``Invoke()`` are proportional to instructions executed: deterministic, the same
on every host. The ratio comes from the self test's calibration loop (a known number of
instructions timed with the same counter), not from the clock Zephyr assumes for the board, which
QEMU does not always use (qemu_cortex_m3: Zephyr 12 MHz, QEMU 12.5 MHz; mps2_an521: 25 vs 20 MHz;
mps3_an547: 25 vs 32 MHz; there µs / 0.064 is 4 % high, 20 % low and 28 % high). Instructions are
not a real pipeline's cycles (no wait states, no stalls, every instruction one "cycle"). The µs
column divides them by the board's configured clock (``CONFIG_SYS_CLOCK_HW_CYCLES_PER_SEC``, on
boards whose system timer is the Cortex-M SysTick, i.e. counts CPU cycles): one instruction per
cycle, a lower bound for a real part. A board QEMU cannot run (nucleo_f446re) gets sizes only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TinymlError
from ..firmware.build import build_app, kernels_args, kernels_problem, run_measuring_arena
from ..firmware.build_folder import build_config
from ..firmware.fit import DoesNotFit
from ..firmware.op_profile import OpCost, op_costs, to_instructions
from ..firmware.size import region_report
from ..firmware.size_compare import build_facts
from ..layout import EVAL_APP, SAMPLE_APP
from ..model.op_trace import cell, trace_difference
from ..model.sources import generated_model
from ..model.spec import Spec
from .eval_run import EvalOptions, evaluate_classifier, model_files

DEFAULT_BOARDS = ("qemu_cortex_m3", "mps2_an521", "mps3_an547", "qemu_cortex_m0", "qemu_cortex_a9", "nucleo_f446re")
DEFAULT_KERNELS = ("reference", "cmsis-nn")


@dataclass
class BenchRow:
    """One model x board x kernels configuration, measured."""

    model: str
    board: str
    kernels: str                 # the kernel build the image reports (e.g. cmsis-nn-dsp), or what was asked
    flash: int = 0
    ram: int = 0
    arena_size: int = 0
    arena_used: int = 0          # 0: not run
    arena_needed: int = 0        # smallest arena AllocateTensors() accepted; 0: not run or not probed
    instructions: int = 0        # per inference, from QEMU icount; 0: not run or no icount
    clock_hz: int = 0
    correct: str = ""            # "10/10" from the self test
    images_per_second: float = 0.0   # --eval: test images streamed over the UART and answered, per second
    note: str = ""
    ops: list[OpCost] = field(default_factory=list)   # the self test's op profile (CONFIG_TINYML_OP_PROFILE)

    def add_note(self, text: str) -> None:
        """Append to the note (a row can collect several: a difference, no calibration, the UART eval)."""
        self.note = "; ".join(filter(None, [self.note, text]))

    @property
    def us_at_clock(self) -> float:
        return self.instructions / self.clock_hz * 1e6 if self.clock_hz and self.instructions else 0.0


def bench(specs: list[Spec], boards: list[str], kernels_list: list[str], build_root: Path, eval_images: int,
          data_dir: Path | None, console: Any) -> tuple[list[BenchRow], dict[str, str]]:
    """Every spec x board x kernels, measured (and with ``eval_images``, the UART evaluation's rate);
    with the Zephyr version and toolchain of the first configuration that was built."""
    rows: list[BenchRow] = []
    facts: dict[str, str] = {}
    for spec in specs:
        app = Path(spec.codegen.app_dir) if spec.codegen.app_dir else SAMPLE_APP
        for board in boards:
            for kernels in kernels_list:
                # One folder per app x board x kernels, shared by the models that app runs: switching
                # models there recompiles the model's files, not TFLM (zephyr/CMakeLists.txt).
                build_dir = Path(build_root) / app.name / f"{board}-{kernels}"
                with console.status(f"{spec.name} on {board}, {kernels} kernels: building in {build_dir}"):
                    rows.append(bench_one(spec, app, board, kernels, build_dir, console))
                row = rows[-1]
                if not facts and row.flash:
                    facts = build_facts(build_dir)
                if eval_images and row.correct and spec.model.gan is None and spec.dataset.has_data:
                    eval_dir = Path(build_root) / EVAL_APP.name / f"{board}-{kernels}"
                    with console.status(f"{spec.name} on {board}, {kernels} kernels: UART evaluation in {eval_dir}"):
                        _uart_eval(row, spec, board, kernels, eval_dir, eval_images, data_dir, console)
                console.print(f"{spec.name} {board} {row.kernels}: flash {row.flash:,} RAM {row.ram:,} "
                              f"instructions {row.instructions:,} {row.note}".rstrip())
    return rows, facts


def all_correct(rows: list[BenchRow]) -> bool:
    """Whether every row that ran its self test got every output right."""
    return all(not r.correct or r.correct.split("/")[0] == r.correct.split("/")[1] for r in rows)


def bench_one(spec: Spec, app: Path, board: str, kernels: str, build_dir: Path, console: Any = None) -> BenchRow:
    """Build (and on QEMU run) one configuration; a configuration that cannot be built is a row with a note."""
    row = BenchRow(spec.name, board, kernels)
    folder = Path(spec.codegen.output_dir)
    try:
        elf = build_app(app, board, build_dir, folder, extra_cmake_args=kernels_args(kernels))
    except DoesNotFit as err:
        row.note = f"does not fit: tensor arena {err.arena:,} B > {err.ram:,} B of RAM (not compiled)"
        return row
    except TinymlError as err:
        row.note = "build failed: " + failure_reason(str(err))[:160]
        return row
    config = build_config(build_dir)
    problem = kernels_problem(config, board, kernels)
    if problem:
        row.note = "not measured: " + problem
        return row
    # The system timer's rate is the CPU clock only where it is the Cortex-M SysTick (qemu_cortex_m0's
    # nRF51 timer counts 1 MHz): elsewhere the µs column stays empty.
    if config.get("CONFIG_CORTEX_M_SYSTICK") == "y":
        row.clock_hz = int(config.get("CONFIG_SYS_CLOCK_HW_CYCLES_PER_SEC", "0") or 0)
    if config.get("CONFIG_QEMU_TARGET") != "y":   # as is_qemu_build(), from the config read above
        row.note = row.note or "not a QEMU board: sizes only"
    else:
        _run(row, app, board, build_dir, folder, console)
    # After the run, which may have rebuilt the image with the measured arena: that image's sizes.
    report = region_report(elf, build_dir / "zephyr" / "zephyr.map", model_dir=folder)
    row.flash, row.ram = report.flash, report.ram
    return row


def _run(row: BenchRow, app: Path, board: str, build_dir: Path, folder: Path, console: Any) -> None:
    """Run a QEMU build's self test (recording its arena) into ``row``; a failed run is a note, not the end."""
    try:
        output, summary = run_measuring_arena(app, board, build_dir, folder, console)
    except TinymlError as err:
        row.note = "run failed: " + failure_reason(str(err))[:160]
        return
    row.kernels = str(summary.get("kernels", row.kernels))
    row.arena_size, row.arena_used = int(summary.get("arena_size", 0)), int(summary.get("arena_used", 0))
    row.arena_needed = int(summary.get("arena_needed", 0))
    row.correct = f"{summary.get('correct', 0)}/{summary.get('images', 0)}"
    if summary.get("correct") != summary.get("images"):
        traced = trace_difference(folder, output)
        row.add_note(cell(traced[1]) if traced is not None else "differs from host TFLM (no op trace)")
    row.instructions = instructions_per_inference(summary)
    if not row.instructions:
        row.add_note("no QEMU icount calibration in this run: no instruction count")
    row.ops = op_costs(generated_model(folder), output, summary)


def _uart_eval(row: BenchRow, spec: Spec, board: str, kernels: str, eval_dir: Path, images: int,
               data_dir: Path | None, console: Any) -> None:
    """``tinyml eval <model> -n <images>`` on the eval app built with the same kernels: images/s into ``row``.

    The rate is what the whole exchange achieves (QEMU's UART, the host's framing and checks), at
    QEMU's speed on this host, not the board's: it shows the cost of the evaluation, not of inference.
    """
    folder = Path(spec.codegen.output_dir)
    try:
        build_app(EVAL_APP, board, eval_dir, folder, extra_cmake_args=kernels_args(kernels))
        options = EvalOptions(board=board, images=images, build_dir=eval_dir, generated_dir=folder, no_build=True,
                              data_dir=Path(data_dir) if data_dir else None)
        work, tflite_path, tflite = model_files(options, spec)
        report = evaluate_classifier(options, spec, work, tflite, tflite_path, console)
    except (TinymlError, OSError) as err:
        row.add_note("UART eval failed: " + failure_reason(str(err))[:160])
        return
    row.images_per_second = report.images_per_second
    if not report.passed:
        row.add_note(f"UART eval: {len(report.mismatches)} of {report.images} differ"
                     + (f" ({report.differing_op[:120]})" if report.differing_op else ""))


def failure_reason(message: str) -> str:
    """The line of a failed build's output that says why, for a table cell.

    The error's first line only says which step failed ("firmware configure failed ..."); the
    reason is a linker overflow, a compiler or Kconfig error, a missing program (qemu_cortex_a9
    needs the Zephyr SDK's Xilinx QEMU: "QEMU-NOTFOUND: not found"), or the Kconfig warning that
    aborted the configuration (qemu_cortex_m0 without the hal_nordic module).
    """
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for marker in ("overflowed", "error:", "not found", "warning:", "Error"):
        for line in lines[1:]:
            # The Kconfig warning is the why, not the abort line; QEMU's "nic ... has no peer" never is.
            if marker in line and "Aborting due to Kconfig warnings" not in line and "has no peer" not in line:
                return line
    return lines[0] if lines else message


def instructions_per_inference(summary: dict[str, Any]) -> int:
    """Instructions per inference from a QEMU icount run's SUMMARY fields; 0 without a calibration.

    Under icount the cycle counter advances in proportion to instructions executed, at the clock
    QEMU gives the board; the self test's calibration loop (a known number of instructions, timed
    with the same counter) gives the ratio, whatever clock Zephyr assumes for the board.
    """
    cycles = summary.get("cycles_per_inference")
    return to_instructions(cycles, summary) if isinstance(cycles, int) else 0


def render(rows: list[BenchRow], fmt: str) -> str:
    """The table as text, markdown or JSON."""
    if fmt == "json":
        return json.dumps([asdict(r) | {"us_at_clock": round(r.us_at_clock, 1)} for r in rows], indent=1)
    header = ["model", "board", "kernels", "flash B", "RAM B", "arena B (allocated / needed)",
              "instructions / inference", "µs at clock (MHz)", "self test", "UART eval images/s", "note"]
    lines = []
    for r in rows:
        arena = f"{r.arena_size:,} / {r.arena_needed or r.arena_used:,}" if r.arena_used else ""
        instr = f"{r.instructions / 1e6:.2f} M" if r.instructions else ""
        at_clock = f"{r.us_at_clock:,.0f} ({r.clock_hz / 1e6:g})" if r.us_at_clock else ""
        lines.append([r.model, r.board, r.kernels, f"{r.flash:,}" if r.flash else "", f"{r.ram:,}" if r.ram else "",
                      arena, instr, at_clock, r.correct, f"{r.images_per_second:.1f}" if r.images_per_second else "",
                      r.note])
    if fmt == "markdown":
        out = ["| " + " | ".join(header) + " |",
               "| " + " | ".join(["---"] * 3 + ["---:"] * 5 + ["---", "---:", "---"]) + " |"]
        out += ["| " + " | ".join(line) + " |" for line in lines]
        return "\n".join(out)
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    fmt_line = "  ".join("{:<%d}" % w for w in widths)
    return "\n".join([fmt_line.format(*header)] + [fmt_line.format(*line) for line in lines])
