"""``tinyml survey``: the parser and front door of trying many model files at once (firmware/survey.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from ..firmware.survey import render, survey
from ..layout import DEFAULT_BOARD


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "survey", help="try model files trained elsewhere end to end, one row each: runs bit-exact, or why not",
        description="Take each model file (or every model file in a folder) through what `tinyml build FILE --run` "
                    "does: verification against host TFLM on the data set where it fills the model's input (else "
                    "on seeded random inputs), generated sources, the firmware on the first --board it builds "
                    "and fits on, and the self test in QEMU. A refused model does not stop the others: its row "
                    "quotes the refusal. Exit status 1 when any model failed on the device (a refusal is not a "
                    "failure: it names what the runtime does not do).")
    p.add_argument("models", nargs="+", type=Path, help="model files (.tflite, .keras, .h5, .pt2, .onnx) or folders of them")
    p.add_argument("--board", "-b", action="append", dest="boards",
                   help=f"QEMU board to run on; give several to fall back when a model does not fit the first "
                        f"(default: {DEFAULT_BOARD})")
    p.add_argument("--data-dir", metavar="DIR", type=Path, help="a data set for the models whose input it fills "
                                                               "(as for `tinyml build`)")
    p.add_argument("--work-root", metavar="DIR", type=Path, default=Path("build/survey"),
                   help="one work folder per model under it (default: %(default)s)")
    p.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    p.add_argument("--out", metavar="FILE", type=Path, help="also write the table (in --format) to FILE")
    p.set_defaults(func=cmd_survey)


def cmd_survey(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    rows = survey(args.models, args.boards or [DEFAULT_BOARD], args.data_dir, args.work_root, console)
    text = render(rows, args.format)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 1 if any(r.status == "failed" for r in rows) else 0
