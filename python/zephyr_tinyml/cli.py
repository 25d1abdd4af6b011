"""Command line: ``tinyml <command>`` and, with the same parser, ``west tinyml <command>``.

Both front doors call :func:`add_commands` to build the parser and :func:`run` to execute; nothing
here does pipeline work itself.  A :class:`~zephyr_tinyml.errors.TinymlError` becomes one message
on stderr and exit status 1 (no traceback): its text says what to fix.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from .errors import TinymlError

# TensorFlow's C++ logging (oneDNN notices, tf.data attribute complaints, converter chatter) is noise
# for our users; real failures still surface as Python exceptions with their messages. Set before
# the commands import anything that loads TensorFlow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# oneDNN stays on: training is about 3 times faster with it on two cores, and with TF's op
# determinism it gives the same weights run after run (its start-up notice is INFO, silenced above).

from .commands import bench, build, doctor, size, survey  # noqa: E402  (after the logging setting above)
from .commands import eval as evaluate  # noqa: E402


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Add every subcommand to ``parser`` (shared by the console script and the west command)."""
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True
    for command in (build, doctor, size, evaluate, bench, survey):
        command.add_command(sub)


def run(args: argparse.Namespace) -> int:
    """Execute parsed arguments; user errors become a message and exit status 1."""
    try:
        return int(args.func(args) or 0)
    except TinymlError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; nothing half-written was left behind", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point: ``tinyml ...``."""
    parser = argparse.ArgumentParser(
        prog="tinyml", description="Train, quantize, verify and deploy TinyML models to Zephyr boards.")
    add_commands(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
