"""Models trained elsewhere, tried end to end as a new user would: one row per file.

``tinyml survey DIR_OR_FILES --data-dir DIR`` takes each ``.tflite`` (or other model file) through
what ``tinyml build FILE --run`` does (verification against host TFLM, generated sources, the
firmware on the first board it fits, the self test in QEMU) and keeps going when one is refused:
the row then carries the refusal's own first sentence, which names the op or property and what
to do. The data set is used where it can fill the model's input; other models are checked on
seeded random inputs, which proves bit-exactness but says nothing of accuracy.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import FirmwareError, TinymlError
from ..layout import SAMPLE_APP
from ..model.model_file import MODEL_SUFFIXES, is_model_path, name_from_path, spec_for_model_file
from ..model.pipeline import BuildOptions, build_model
from ..model.stages import BuildResult
from ..ui import SilentUI
from .boards import canonical
from .build import build_app, run_measuring_arena
from .op_profile import to_instructions
from .size import region_report


@dataclass
class SurveyRow:
    """What happened to one model file."""

    model: str                 # the file's name
    size: int                  # bytes of the file
    io: str                    # "int8 [1, 28, 28] -> int8 [1, 10]"
    ops: str                   # the model's op kinds
    data: str                  # what the inputs were
    outcome: str               # "bit-exact 10/10", "refused: ...", "failed: ..."
    status: str                # "ran", "refused" (before the device), "failed" (on or for the device)
    board: str = ""
    accuracy: str = ""         # int8 TFLM accuracy on the test set, where it has labels
    arena: int = 0
    flash: int = 0
    ram: int = 0
    instructions: int = 0


def model_files(paths: list[Path]) -> list[Path]:
    """The model files named, with every model file directly in a named folder (sorted)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir() and not is_model_path(str(path)):
            found += sorted(p for p in path.iterdir() if p.suffix in MODEL_SUFFIXES)
        else:
            found.append(path)
    return found


def first_sentence(message: str) -> str:
    """An error's first line, up to its first full stop that ends a sentence (long reasons follow)."""
    line = message.strip().splitlines()[0] if message.strip() else ""
    end = line.find(". ")
    return line[:end + 1] if 0 < end < len(line) - 2 else line


def _build(path: Path, data_dir: Path | None, work: Path) -> tuple[BuildResult, str]:
    """The host stages, with the data set where it fits the model, else without data.

    The data does not fit when its images cannot fill the model's input or its labels are not the
    model's outputs (a denoiser's 257 values are no 10 classes): whatever the build refused with the
    data, the model is tried again on random inputs, and a refusal then is the model's own.
    """
    note = ""
    if data_dir is not None:
        spec = spec_for_model_file(path, data_dir=data_dir, work_dir=work)
        try:
            return build_model(spec, BuildOptions(work_dir=work, data_dir=data_dir), SilentUI()), ""
        except TinymlError:
            note = " (the data set does not fit the model)"
    spec = spec_for_model_file(path, work_dir=work)
    return build_model(spec, BuildOptions(work_dir=work), SilentUI()), note


def survey_one(path: Path, boards: list[str], data_dir: Path | None, root: Path) -> SurveyRow:
    """One model file through the host stages and the firmware on the first of ``boards`` it fits."""
    path = Path(path)
    work = root / name_from_path(path)
    row = SurveyRow(model=path.name, size=path.stat().st_size if path.is_file() else 0, io="", ops="", data="",
                    outcome="", status="refused")
    try:
        result, note = _build(path, data_dir, work)
    except TinymlError as err:
        row.outcome = f"refused: {first_sentence(str(err))}"
        return row
    info, v = result.info, result.verification
    row.io = f"{info.input.dtype} {list(info.input.shape)} -> {info.output.dtype} {list(info.output.shape)}"
    row.ops = ", ".join(info.unique_ops)
    labelled = v.tflm_accuracy is not None
    row.data = (f"{result.spec.dataset.display}, {v.images:,} test images" if labelled
                else f"{v.images:,} seeded random inputs") + note
    row.accuracy = f"{v.tflm_accuracy:.2f} %" if labelled else ""
    problems = []
    for board in boards:
        build_dir = work / canonical(board)
        if build_dir.exists():
            shutil.rmtree(build_dir)
        try:
            elf = build_app(SAMPLE_APP, board, build_dir, result.generated.folder)
            output, summary = run_measuring_arena(SAMPLE_APP, board, build_dir, result.generated.folder)
        except FirmwareError as err:
            problems.append(f"{board}: {first_sentence(str(err))}")
            continue
        report = region_report(elf, build_dir / "zephyr" / "zephyr.map", model_dir=result.generated.folder)
        row.board, row.flash, row.ram = canonical(board), report.flash, report.ram
        row.arena = int(summary.get("arena_size", 0) or 0)
        cycles = summary.get("cycles_per_inference")
        row.instructions = to_instructions(cycles, summary) if isinstance(cycles, int) else 0
        correct, images = summary.get("correct"), summary.get("images")
        row.status = "ran" if correct == images else "failed"
        row.outcome = (f"bit-exact {correct}/{images}" if correct == images
                       else f"failed: {correct}/{images} outputs equal host TFLM's")
        return row
    row.status = "failed"
    row.outcome = "failed: " + "; ".join(problems)
    return row


def survey(paths: list[Path], boards: list[str], data_dir: Path | None, root: Path,
           console: Any = None) -> list[SurveyRow]:
    """Every model file of ``paths`` (:func:`survey_one`), in order."""
    rows = []
    for path in model_files(paths):
        if console is not None:
            console.print(f"survey: {path}")
        rows.append(survey_one(path, boards, data_dir, root))
        if console is not None:
            console.print(f"  {rows[-1].outcome}")
    return rows


def render(rows: list[SurveyRow], fmt: str) -> str:
    """The rows as a markdown or plain-text table (``json``: a list of objects)."""
    if fmt == "json":
        return json.dumps([asdict(r) for r in rows], indent=1)
    header = ("model", "bytes", "input -> output", "ops", "inputs", "outcome", "board", "int8 TFLM accuracy",
              "arena B", "flash B", "RAM B", "instructions")
    lines = []
    for r in rows:
        lines.append((r.model, f"{r.size:,}", r.io, r.ops, r.data, r.outcome, r.board, r.accuracy,
                      f"{r.arena:,}" if r.arena else "", f"{r.flash:,}" if r.flash else "",
                      f"{r.ram:,}" if r.ram else "", f"{r.instructions:,}" if r.instructions else ""))
    if fmt == "markdown":
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(cell.replace("|", "\\|") for cell in line) + " |" for line in lines]
        return "\n".join(out)
    if fmt != "text":
        raise ValueError(f"unknown format {fmt!r}: text, markdown or json")
    return "\n".join("  ".join(line) for line in [header, *lines])
