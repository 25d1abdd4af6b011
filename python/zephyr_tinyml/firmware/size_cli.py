"""``tinyml size <model> [--board B ...] [--format table|markdown|json]``: region report per board.

Reads the linked image of each board's firmware build (``<work>/<board>/zephyr/zephyr.elf``, the
folder ``tinyml build --board B`` uses), building it first if it is missing.  Exit status 1 when any
board is over its budget, so the command can gate CI as well as feed a pull-request description.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..cli import DEFAULT_BOARD


def cmd_size(args: argparse.Namespace) -> int:
    from rich.console import Console

    from .build import SAMPLE_APP, build_app
    from .size import check_budget, region_report, to_json, to_markdown, to_table
    from ..model.spec import load_spec, resolve_spec_path

    spec = load_spec(resolve_spec_path(args.model))
    work = Path(args.work_dir) if args.work_dir else Path.cwd() / "build" / "tinyml" / spec.name
    console = Console()
    status, documents = 0, []
    for board in args.board or [DEFAULT_BOARD]:
        build_dir = work / board
        elf = build_dir / "zephyr" / "zephyr.elf"
        if not elf.is_file():
            console.print(f"no firmware for {board} in {build_dir}; building it", style="dim")
            elf = build_app(spec.app_dir or SAMPLE_APP, board, build_dir, spec.output_dir)
        report = region_report(elf, build_dir / "zephyr" / "zephyr.map", model_dir=spec.output_dir)
        budget = spec.budgets.get(board)
        problems = check_budget(report, budget) if budget else []
        status |= 1 if problems else 0
        title = f"{spec.name} on {board}"
        if args.format == "markdown":
            print(to_markdown(report, budget, title))
        elif args.format == "json":
            documents.append({"board": board, "over_budget": problems, **json.loads(to_json(report, budget))})
        else:
            console.print(to_table(report, title, budget))
            for problem in problems:
                console.print(f"[red]over budget on {board}:[/red] {problem}")
    if args.format == "json":
        print(json.dumps(documents, indent=2))
    return status


def add_command(sub: argparse._SubParsersAction) -> None:
    """Register ``size`` with the shared parser (see cli.add_commands)."""
    parser = sub.add_parser("size", help="flash/RAM report of the firmware against the spec's budgets",
                            description="Print the memory regions of each board's linked image, the model's "
                                        "share (weights, arena, TFLM code) and the spec's budget; exit 1 "
                                        "when over budget. Markdown is the form for pull requests.")
    parser.add_argument("model", help="model name in models/ or path to a spec .yaml")
    parser.add_argument("--board", "-b", action="append",
                        help=f"board (repeat for several; default {DEFAULT_BOARD})")
    parser.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    parser.add_argument("--work-dir", metavar="DIR", help="as for build (default ./build/tinyml/<model>)")
    parser.set_defaults(func=cmd_size)
