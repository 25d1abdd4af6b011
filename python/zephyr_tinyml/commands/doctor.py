"""``tinyml doctor``: what the tool needs, whether it is here, and how to get what is missing."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..doctor import NEEDS, failures, run_checks


def add_command(sub: argparse._SubParsersAction) -> None:
    """Add ``doctor`` to the shared parser (see cli.add_commands)."""
    p_doctor = sub.add_parser(
        "doctor", help="check Python packages, interpreters, Zephyr, toolchain, QEMU; say how to get what is missing",
        description="One table of what zephyr-tinyml needs and whether it is here: Python and package versions, the "
                    "host TFLM and LiteRT interpreters (each runs a model), Zephyr (how it was found, version, "
                    "modules), the toolchain and its picolibc, cmake, ninja, dtc and QEMU. Exit status 1 when a "
                    "piece needed for --for is missing.")
    p_doctor.add_argument("--for", dest="intent", choices=("host", "build", "run"), default="run",
                          help="what you are about to run: host = `tinyml build --no-firmware`; build = firmware "
                               "builds and `tinyml size`; run = also QEMU (`--run`, `tinyml eval`) (default: run)")
    p_doctor.set_defaults(func=cmd_doctor)



def cmd_doctor(args: argparse.Namespace) -> int:
    """Print what the tool needs and whether it is here; exit 1 if ``--for`` needs a missing piece."""
    checks = run_checks()
    table = Table(title="tinyml doctor", header_style="bold")
    for column in ("needed for", "item", "status", "found", "to get it"):
        table.add_column(column, overflow="fold")
    for check in checks:
        status = "[green]ok[/]" if check.ok else ("[red]MISSING[/]" if check.required else "[yellow]optional[/]")
        # Escaped: details and fixes hold brackets (pip's "zephyr-tinyml[torch]") that are not markup.
        table.add_row(check.group, escape(check.item), status, escape(check.detail), escape(check.fix))
    console = Console()
    console.print(table)
    missing = failures(checks, args.intent)
    needed = " + ".join(NEEDS[args.intent])
    if missing:
        console.print(f"[red]{len(missing)} piece(s) needed for '{args.intent}' ({needed}) missing:[/] "
                      + ", ".join(c.item for c in missing))
        return 1
    console.print(f"everything needed for '{args.intent}' ({needed}) is here")
    return 0


