"""``west tinyml``: the west front door onto the zephyr-tinyml pipeline.

A thin ``WestCommand``: the parser and the work both come from ``zephyr_tinyml.cli``, so
``west tinyml build mnist`` and ``tinyml build mnist`` take the same arguments and do the same thing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from west.commands import WestCommand

# Run from the checkout even when the package is not pip-installed (its dependencies must be).
_PYTHON_DIR = Path(__file__).resolve().parents[1] / "python"
if str(_PYTHON_DIR) not in sys.path:
    sys.path.insert(0, str(_PYTHON_DIR))


class Tinyml(WestCommand):
    """west tinyml build|list|size|eval."""

    def __init__(self) -> None:
        super().__init__(
            "tinyml",
            "train, int8-quantize, verify and deploy TinyML models",
            "Takes a model spec (models/<name>.yaml), trains it with Keras, quantizes it to int8, "
            "verifies it under TFLM on the host, generates C sources for the Zephyr sample app and "
            "builds the firmware, checking the board's flash/RAM budgets.",
            accepts_unknown_args=False,
        )

    def do_add_parser(self, parser_adder: argparse._SubParsersAction) -> argparse.ArgumentParser:
        from zephyr_tinyml.cli import add_commands

        parser = parser_adder.add_parser(self.name, help=self.help, description=self.description)
        add_commands(parser)
        return parser

    def do_run(self, args: argparse.Namespace, unknown: list[str]) -> None:
        from zephyr_tinyml.cli import run

        status = run(args)
        if status:
            self.die(f"west tinyml {args.command} failed (exit status {status})")
