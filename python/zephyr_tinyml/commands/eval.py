"""``tinyml eval``: the parser and front door of the on-device evaluation (device/eval_run.py does it)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console

from ..device.eval_run import DEFAULT_IMAGES, DEFAULT_LATENTS, EvalOptions, run_eval
from ..device.evaluate import EvalReport, outputs_report_text, report_text
from ..layout import DEFAULT_BOARD, work_dir
from ..model.model_file import is_model_path, name_from_path, spec_for_model_file
from ..model.spec import load_spec, resolve_spec_path


def add_command(sub: argparse._SubParsersAction) -> None:
    """Add ``eval`` to the ``tinyml`` / ``west tinyml`` parser."""
    p = sub.add_parser(
        "eval", help="evaluate the model on the device over its UART, bit-exact against host TFLM",
        description="Stream the first N test images to samples/mnist_eval running on --board (in QEMU, or on a "
                    "board at --port), compare every int8 output vector with host TFLM, and report accuracy "
                    "(device, host TFLM, TFLite, float), a confusion matrix, cycles and throughput. Exit status "
                    "1 when any image fails or differs. For a GAN spec (models/dcgan.yaml) it streams seeded latent "
                    "vectors instead, compares every generated pixel with host TFLM and writes a PNG grid of the "
                    "digits the device drew, labelled by the spec's classifier. Protocol: docs/protocol.md.")
    p.add_argument("model", help="model name in models/ (e.g. mnist), path to a spec .yaml, or the model file "
                                 "`tinyml build` was given (.tflite, .keras, .h5, SavedModel; with the same "
                                 "--data-dir and --work-dir)")
    p.add_argument("--board", "-b", default=DEFAULT_BOARD, help=f"Zephyr board (default: {DEFAULT_BOARD})")
    count = p.add_mutually_exclusive_group()
    count.add_argument("-n", "--images", type=int, metavar="N",
                       help=f"evaluate the first N test images (default: {DEFAULT_IMAGES}), or N latent vectors "
                            f"for a generator (default: {DEFAULT_LATENTS})")
    count.add_argument("--all", action="store_true", help="evaluate the whole test set")
    p.add_argument("--port", help="serial port of a flashed board (e.g. /dev/ttyACM0); without it the app "
                                  "is built and run in QEMU")
    p.add_argument("--baud", type=int, default=115200, help="baud rate for --port (default: 115200)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="report format (default: text)")
    p.add_argument("--build-dir", "-d", metavar="DIR", help="eval app build folder (default: <work-dir>/eval-<board>)")
    p.add_argument("--work-dir", metavar="DIR", help="where `tinyml build` wrote the model (default: "
                                                     "./build/tinyml/<model>)")
    p.add_argument("--generated-dir", metavar="DIR", help="model sources to compile in (default: the spec's "
                                                          "codegen.output_dir, where `tinyml build` wrote them)")
    p.add_argument("--data-dir", metavar="DIR", help="folder with the MNIST files (as for `tinyml build`)")
    p.add_argument("--timeout", type=float, help="seconds to wait for each reply (default: adapt to the model: "
                                                 "the first inference waits --boot-timeout, later ones 4x the "
                                                 "slowest reply so far, at least 5 s)")
    p.add_argument("--retries", type=int, default=3, help="resends of a frame before it counts as failed "
                                                          "(default: 3)")
    p.add_argument("--boot-timeout", type=float, default=30.0,
                   help="seconds to wait for the device to answer at all (default: 30)")
    p.add_argument("--no-build", action="store_true", help="run the existing build in --build-dir as it is")
    p.add_argument("--secure", action="store_true",
                   help="run the model in the zephyr-tinyml TF-M secure partition, as `tinyml build --secure` "
                        "does: the eval app (non-secure) sends each image through the partition's PSA service "
                        "(board: a TF-M _ns target such as mps2_an521_ns; build folder <work-dir>/eval-<board>-secure)")
    p.set_defaults(func=cmd_eval)


def options_of(args: argparse.Namespace) -> EvalOptions:
    """The typed options an ``eval`` command line asks for."""
    def path(value: str | None) -> Path | None:
        return Path(value) if value else None

    return EvalOptions(board=args.board, images=args.images, all=args.all, port=args.port, baud=args.baud,
                       build_dir=path(args.build_dir), work_dir=path(args.work_dir),
                       generated_dir=path(args.generated_dir), data_dir=path(args.data_dir), timeout=args.timeout,
                       retries=args.retries, boot_timeout=args.boot_timeout, no_build=args.no_build,
                       secure=args.secure)


def cmd_eval(args: argparse.Namespace) -> int:
    """Everything ``tinyml eval`` does, in order; returns the exit status."""
    started = time.perf_counter()
    console = Console(stderr=True)
    if is_model_path(args.model):
        # What `tinyml build <file>` made: its spec, and its sources in <work-dir>/generated.
        path = Path(args.model)
        spec = spec_for_model_file(path, data_dir=Path(args.data_dir) if args.data_dir else None,
                                   work_dir=work_dir(name_from_path(path), args.work_dir))
    else:
        spec = load_spec(resolve_spec_path(args.model))
    report, work = run_eval(spec, options_of(args), console, started)
    if args.format == "json":
        print(json.dumps(report.to_json(), indent=1))
    elif isinstance(report, EvalReport):
        print(report_text(report))
        console.print(f"report: {work / 'eval.json'}, confusion matrix: {work / 'eval-confusion.png'}")
    else:
        print(outputs_report_text(report))
        console.print(f"report: {work / 'eval.json'}, the device's digits: {report.extra.get('grid', '')}")
    return 0 if report.passed else 1
