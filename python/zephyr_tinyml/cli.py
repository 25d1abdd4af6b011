"""Command line: ``tinyml <command>`` and, with the same parser, ``west tinyml <command>``.

Both front doors call :func:`add_commands` to build the parser and :func:`run` to execute; nothing
here does pipeline work itself.  A :class:`~zephyr_tinyml.errors.TinymlError` becomes one message
on stderr and exit status 1 (no traceback): its text says what to fix.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from .errors import TinymlError

# TensorFlow's C++ logging (oneDNN notices, tf.data attribute complaints, converter chatter) is noise
# for our users; real failures still surface as Python exceptions with their messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# oneDNN stays on: training is about 3 times faster with it on two cores, and with TF's op
# determinism it gives the same weights run after run (its start-up notice is INFO, silenced above).

DEFAULT_BOARD = "qemu_cortex_m3"


def work_dir_of(args: argparse.Namespace, name: str) -> Path:
    """``--work-dir``, else ./build/tinyml/<model>: where a model's cache, sources and builds go."""
    return Path(args.work_dir) if args.work_dir else Path.cwd() / "build" / "tinyml" / name


def cmd_list(args: argparse.Namespace) -> int:
    """Print the shipped model specs with their descriptions."""
    from rich.console import Console
    from rich.table import Table

    from .model.spec import list_specs, load_spec

    table = Table(title="models", header_style="bold")
    for column in ("name", "data set", "model", "epochs", "boards with budgets", "description"):
        table.add_column(column)
    for path in list_specs():
        spec = load_spec(path)
        if spec.gan is not None:
            model = f"GAN: {len(spec.gan.generator)}-layer generator (deployed)"
        else:
            model = f"{len(spec.layers)} layers" if spec.layers else Path(spec.model_file or "").name
        trains = bool(spec.layers) or spec.gan is not None
        table.add_row(spec.name, spec.dataset, model, str(spec.epochs) if trains else "-",
                      ", ".join(spec.budgets) or "-", spec.description)
    Console().print(table)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    """Train (or reuse), quantize, verify, generate sources; then build the firmware unless told not to."""
    from rich.console import Console

    from .model.model_file import is_model_path, name_from_path, read_labels_file, spec_for_model_file
    from .model.pipeline import BuildOptions, build_model
    from .model.report import summary_table
    from .model.spec import load_spec, resolve_spec_path
    from .ui import RichUI

    if is_model_path(args.model):
        name = args.name
        work = work_dir_of(args, name or name_from_path(Path(args.model)))
        spec = spec_for_model_file(
            Path(args.model), name=name, dataset=args.dataset,
            data_dir=Path(args.data_dir) if args.data_dir else None,
            labels=read_labels_file(Path(args.labels)) if args.labels else (),
            input_scale=args.input_scale, input_offset=args.input_offset, test_inputs=args.test_inputs,
            output_dir=Path(args.out) if args.out else None, work_dir=work)
    else:
        for option in ("dataset", "labels", "name"):
            if getattr(args, option):
                raise TinymlError(f"--{option} is for a model file (.tflite, .keras, .h5, SavedModel); for a spec, "
                                  f"set it in the spec's dataset section.")
        spec = load_spec(resolve_spec_path(args.model))
    console = Console()
    options = BuildOptions(work_dir=work_dir_of(args, spec.name),
                           data_dir=Path(args.data_dir) if args.data_dir else None,
                           out_dir=Path(args.out) if args.out else None, retrain=args.retrain,
                           allow_download=not args.offline)
    result = build_model(spec, options, RichUI())
    console.print(summary_table(result))
    changed = ", ".join(result.generated.changed) or "none (unchanged)"
    console.print(f"generated sources in {result.generated.folder}; rewritten: {changed}")
    if args.no_firmware:
        return 0
    from .firmware.build import build_step

    return build_step(spec, result, args, console)


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print what the tool needs and whether it is here; exit 1 if ``--for`` needs a missing piece."""
    from rich.console import Console
    from rich.table import Table

    from .doctor import NEEDS, failures, run_checks

    checks = run_checks()
    table = Table(title="tinyml doctor", header_style="bold")
    for column in ("needed for", "item", "status", "found", "to get it"):
        table.add_column(column, overflow="fold")
    for check in checks:
        status = "[green]ok[/]" if check.ok else ("[red]MISSING[/]" if check.required else "[yellow]optional[/]")
        table.add_row(check.group, check.item, status, check.detail, check.fix)
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


def add_commands(parser: argparse.ArgumentParser) -> None:
    """Add every subcommand to ``parser`` (shared by the console script and the west command)."""
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    sub.required = True

    p_list = sub.add_parser("list", help="list the model specs in models/",
                            description="List the model specs shipped in models/.")
    p_list.set_defaults(func=cmd_list)

    p_build = sub.add_parser(
        "build", help="train, int8-quantize, verify on host TFLM, generate C sources, build firmware",
        description="Run the model pipeline for a spec: train (cached), quantize to int8, verify float / "
                    "TFLite / TFLM on the full test set, check the acceptance bars, generate C/C++ sources, "
                    "then build the Zephyr app for --board and check its region budgets.")
    p_build.add_argument("model", help="model name in models/ (e.g. mnist), a spec .yaml, or a model trained "
                                       "elsewhere: .tflite (int8), .keras, .h5 or a SavedModel folder")
    p_build.add_argument("--data-dir", metavar="DIR",
                         help="local files of a built-in data set (MNIST IDX .gz, mnist.npz, cifar-10-batches-py/, "
                              "...; default: $TINYML_DATA_DIR, then Keras' download cache); for a model file also an "
                              "image folder or .npz, recognised by its contents")
    files = p_build.add_argument_group("models trained elsewhere (a .tflite, .keras, .h5 or SavedModel argument)")
    files.add_argument("--dataset", metavar="NAME|PATH",
                       help="test (and, for Keras models, representative) data: mnist, fashion_mnist, cifar10, "
                            "cifar100, an image folder (one subfolder per class) or an .npz; default: what --data-dir "
                            "holds; none: the device is checked on seeded random inputs")
    files.add_argument("--labels", metavar="FILE", help="labels.txt, one per line (default: the model's TFLite "
                                                        "metadata, then the folder names, else numbers)")
    files.add_argument("--input-scale", type=float, default=1 / 255, metavar="S",
                       help="model input = pixel * S + OFFSET, as the model was trained (default: 1/255)")
    files.add_argument("--input-offset", type=float, default=0.0, metavar="OFFSET", help="(default: 0)")
    files.add_argument("--test-inputs", type=int, default=10, metavar="K",
                       help="inputs embedded for the on-device check (default: 10)")
    files.add_argument("--name", help="model name for generated symbols and folders (default: from the file name)")
    p_build.add_argument("--work-dir", metavar="DIR",
                         help="outputs and cache (default: ./build/tinyml/<model>)")
    p_build.add_argument("--out", metavar="DIR",
                         help="where to write the generated sources (default: the spec's codegen.output_dir)")
    p_build.add_argument("--retrain", action="store_true", help="train again even if a cached model matches")
    p_build.add_argument("--offline", action="store_true", help="never download data")
    p_build.add_argument("--board", "-b", default=DEFAULT_BOARD,
                         help=f"Zephyr board for the firmware build (default: {DEFAULT_BOARD})")
    p_build.add_argument("--build-dir", "-d", metavar="DIR",
                         help="firmware build folder (default: <work-dir>/<board>)")
    p_build.add_argument("--run", action="store_true",
                         help="run the firmware after building (QEMU boards); the smallest arena the device could "
                              "allocate the model in is recorded and the app rebuilt with it (+1 %%)")
    from .firmware.build import KERNEL_CHOICES

    p_build.add_argument("--kernels", choices=tuple(KERNEL_CHOICES),
                         help="TFLM kernels (default: CMSIS-NN on Cortex-M when the workspace has the cmsis-nn "
                              "module, else the reference kernels; cmsis-nn-dsp: CMSIS-NN's DSP paths on a "
                              "Cortex-M33 (mps2_an521, the extension turned on in QEMU) or the Cortex-M55 of "
                              "mps3_an547, which measures their arena for DSP boards QEMU cannot run)")
    p_build.add_argument("--no-firmware", action="store_true",
                         help="stop after generating sources (no Zephyr needed)")
    p_build.set_defaults(func=cmd_build)

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

    # Later stages' commands live in their own modules (imported here, not at the top: they import
    # this module's DEFAULT_BOARD).
    from .device import eval_cli
    from .firmware import bench, size_cli

    size_cli.add_command(sub)
    eval_cli.add_command(sub)
    bench.add_command(sub)


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
