"""``tinyml size``: the flash/RAM report of each model x board build, and its comparison with a base.

Measure: ``tinyml size mnist -b qemu_cortex_m3 -b nucleo_f446re [--format table|markdown|json]``
reads each board's linked image (``<work>/<board>/zephyr/zephyr.elf``, the folder ``tinyml build
--board B`` uses), building it first if it is missing. ``--format json --out FILE`` writes the report
CI stores (see size_compare.py). Exit status 1 when a build is over its spec's budget.

Compare: ``tinyml size --compare base.json --head head.json`` (or measure the head now) prints the
pull-request comment, largest change first; exit status 1 only when a head build is over its budget
and nobody accepted it (``--accept WHY``, or ``--pr-body FILE`` with a ``Size-increase-accepted:``
line).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console

from ..errors import TinymlError
from ..firmware.boards import canonical, for_board
from ..firmware.build import build_app
from ..firmware.size import check_budget, region_report, to_markdown, to_table
from ..firmware.size_compare import (accepted_reason, build_entry, compare, comparison_json, load_report,
                                     render_markdown, report_document)
from ..layout import DEFAULT_BOARD, SAMPLE_APP, work_dir
from ..model.spec import load_spec, resolve_spec_path
from .common import commit_of


def measure(models: list[str], boards: list[str], given_work_dir: str | None, commit: str | None,
            console: Any) -> tuple[dict[str, Any], list[tuple[str, Any, Any, list[str]]]]:
    """Build (if missing) and measure every model x board; the JSON report and, per build, what to print."""
    if not models:
        raise TinymlError("name the model(s) to measure (e.g. `tinyml size mnist`), or give --head with --compare")
    builds, shown = [], []
    spec_dir = None
    for model in models:
        spec = load_spec(resolve_spec_path(model))
        spec_dir = spec_dir or Path(spec.path).parent
        work = work_dir(spec.name, given_work_dir)
        if given_work_dir and len(models) > 1:
            work /= spec.name
        app = Path(spec.codegen.app_dir) if spec.codegen.app_dir else SAMPLE_APP
        # Either name of a board (mps2/an521/cpu0, mps2_an521) is one build, filed under its key.
        for board in dict.fromkeys(canonical(b) for b in boards):
            build_dir = work / board
            elf = build_dir / "zephyr" / "zephyr.elf"
            if not elf.is_file():
                console.print(f"no firmware for {board} in {build_dir}; building it", style="dim")
                elf = build_app(app, board, build_dir, spec.codegen.output_dir)
            report = region_report(elf, build_dir / "zephyr" / "zephyr.map", model_dir=spec.codegen.output_dir)
            budget = for_board(spec.budgets, board)
            problems = check_budget(report, budget) if budget else []
            builds.append(build_entry(report, spec.name, _relative(app), board, budget, build_dir))
            shown.append((f"{spec.name} on {board}", report, budget, problems))
    commit = commit if commit is not None else commit_of(spec_dir or Path.cwd())
    return report_document(builds, commit), shown


def _relative(path: Path) -> str:
    """The app folder as the repository names it (samples/mnist), not this machine's absolute path."""
    path = Path(path).resolve()
    for parent in path.parents:
        if (parent / ".git").exists() or (parent / "west.yml").is_file():
            return path.relative_to(parent).as_posix()
    return path.name


def cmd_size(args: argparse.Namespace) -> int:
    console = Console(stderr=args.format != "table")
    if args.compare is None:
        document, shown = measure(args.models, args.board or [DEFAULT_BOARD], args.work_dir, args.commit, console)
        status = 1 if any(problems for *_, problems in shown) else 0
        if args.format == "json":
            text = json.dumps(document, indent=1) + "\n"
            print(text, end="")
        elif args.format == "markdown":
            text = "\n".join(to_markdown(report, budget, title) for title, report, budget, _ in shown)
            print(text)
        else:
            text = ""
            for title, report, budget, problems in shown:
                console.print(to_table(report, title, budget))
                for problem in problems:
                    console.print(f"[red]over budget ({title}):[/red] {problem}")
        if args.out:
            Path(args.out).write_text(text or json.dumps(document, indent=1) + "\n")
        return status

    base = load_report(Path(args.compare))
    if args.head:
        head = load_report(Path(args.head))
    else:
        head, _ = measure(args.models, args.board or [DEFAULT_BOARD], args.work_dir, args.commit, console)
    comparison = compare(base, head)
    pr_body = Path(args.pr_body).read_text(errors="replace") if args.pr_body else None
    breaches = comparison.breaches()
    accepted = accepted_reason(args.accept, pr_body) if breaches else None
    if args.format == "json":
        text = json.dumps(comparison_json(comparison, accepted), indent=1) + "\n"
    else:
        text = render_markdown(comparison, accepted, args.run_url)
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    for breach in breaches:
        console.print(f"{'over budget, accepted' if accepted else 'BUDGET EXCEEDED'}: {breach}", soft_wrap=True)
    return 1 if breaches and not accepted else 0


def add_command(sub: argparse._SubParsersAction) -> None:
    """Register ``size`` with the shared parser (see cli.add_commands)."""
    parser = sub.add_parser(
        "size", help="flash/RAM report of the firmware against the spec's budgets; --compare for pull requests",
        description="Print the memory regions of each model x board image, the model's share (weights, arena, "
                    "TFLM code) and the spec's budget; exit 1 when over budget. --format json --out FILE writes "
                    "the report CI stores; --compare BASE.json prints the pull-request comment comparing the head "
                    "(measured now, or --head FILE) with it.")
    parser.add_argument("models", nargs="*", metavar="model", help="model names in models/ or spec .yaml paths")
    parser.add_argument("--board", "-b", action="append",
                        help=f"board (repeat for several; default {DEFAULT_BOARD})")
    parser.add_argument("--format", choices=("table", "markdown", "json"), default=None,
                        help="default: table, or markdown with --compare")
    parser.add_argument("--out", metavar="FILE", help="also write what is printed (json: the report) to FILE")
    parser.add_argument("--work-dir", metavar="DIR", help="as for build (default ./build/tinyml/<model>; "
                                                          "with several models DIR/<model>)")
    parser.add_argument("--commit", help="commit id to record in the report (default: git's HEAD of the spec's "
                                         "repository, -dirty when changed)")
    group = parser.add_argument_group("comparing with a base (pull requests)")
    group.add_argument("--compare", metavar="BASE.json", help="the base commit's report")
    group.add_argument("--head", metavar="HEAD.json", help="the head's report (default: measure the models now)")
    group.add_argument("--accept", metavar="WHY", help="accept an over-budget head build (an intended increase)")
    group.add_argument("--pr-body", metavar="FILE", help="pull-request text; a line 'Size-increase-accepted: <why>' "
                                                         "accepts an over-budget build")
    group.add_argument("--run-url", metavar="URL", help="link to the CI run, shown in the comment")
    parser.set_defaults(func=_dispatch)


def _dispatch(args: argparse.Namespace) -> int:
    if args.format is None:
        args.format = "markdown" if args.compare else "table"
    if args.compare is None and (args.head or args.accept or args.pr_body or args.run_url):
        raise TinymlError("--head, --accept, --pr-body and --run-url go with --compare BASE.json")
    return cmd_size(args)
