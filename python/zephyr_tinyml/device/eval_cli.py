"""``tinyml eval``: build the evaluation app, stream test images to it, report against host TFLM.

Thin front door (see cli.py): argument parsing, a progress bar and printing; the work is in
:mod:`evaluate`, :mod:`session` and :mod:`link`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ..errors import TinymlError

EVAL_APP = Path(__file__).resolve().parents[3] / "samples" / "mnist_eval"
DEFAULT_IMAGES = 1000
DEFAULT_LATENTS = 100  # a generator's: each answer is a whole image (784 bytes over the UART)


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
    p.add_argument("model", help="model name in models/ (e.g. mnist) or path to a spec .yaml")
    p.add_argument("--board", "-b", default="qemu_cortex_m3", help="Zephyr board (default: qemu_cortex_m3)")
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
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    """Everything ``tinyml eval`` does, in order; returns the exit status."""
    from rich.console import Console

    from ..model.spec import load_spec, resolve_spec_path

    started = time.perf_counter()
    console = Console(stderr=True)
    spec = load_spec(resolve_spec_path(args.model))
    work, tflite_path, tflite = model_files(args, spec)
    if spec.gan is not None:
        return _eval_generator(args, spec, work, tflite, tflite_path, console, started)
    report = evaluate_classifier(args, spec, work, tflite, tflite_path, console)
    report.wall_seconds = time.perf_counter() - started
    _write_outputs(report, work, spec.name)
    if args.format == "json":
        print(json.dumps(report.to_json(), indent=1))
    else:
        from .evaluate import report_text

        print(report_text(report))
        console.print(f"report: {work / 'eval.json'}, confusion matrix: {work / 'eval-confusion.png'}")
    return 0 if report.passed else 1


def model_files(args: argparse.Namespace, spec: Any) -> tuple[Path, Path, bytes]:
    """The work folder ``tinyml build`` wrote (--work-dir, else ./build/tinyml/<model>), its
    ``.tflite`` and that model's bytes; an error saying what to run when it is not there."""
    work = Path(args.work_dir) if args.work_dir else Path.cwd() / "build" / "tinyml" / spec.name
    tflite_path = work / f"{spec.name}.tflite"
    if not tflite_path.is_file():
        raise TinymlError(f"no {tflite_path}: run `tinyml build {args.model}` first (it trains, quantizes and "
                          f"generates the sources the eval app compiles)")
    return work, tflite_path, tflite_path.read_bytes()


def eval_arguments(argv: list[str]) -> argparse.Namespace:
    """``tinyml eval``'s arguments for ``argv`` (after ``eval``), with the command's own defaults:
    for callers that run an evaluation as part of something else (``tinyml bench --eval``)."""
    parser = argparse.ArgumentParser(prog="tinyml")
    add_command(parser.add_subparsers())
    return parser.parse_args(["eval", *argv])


def evaluate_classifier(args: argparse.Namespace, spec: Any, work: Path, tflite: bytes, tflite_path: Path,
                        console: Any) -> Any:
    """Load the test images, open the link (building the app unless --no-build), stream and compare:
    the :class:`~zephyr_tinyml.device.evaluate.EvalReport`, nothing written."""
    from ..model.data import load_dataset

    data = load_dataset(spec.data_source(), spec.input_shape, Path(args.data_dir) if args.data_dir else None)
    total = len(data.x_test) if args.all else min(DEFAULT_IMAGES if args.images is None else args.images, len(data.x_test))
    if total <= 0:
        raise TinymlError("-n must be at least 1")
    link = _open_link(args, spec, work, console)
    try:
        return _run(args, spec, tflite, tflite_path, data, total, link, console, _device_kernels(args, work))
    finally:
        link.close()


def _eval_generator(args: argparse.Namespace, spec: Any, work: Path, tflite: bytes, tflite_path: Path,
                    console: Any, started: float) -> int:
    """A GAN's generator on the device: latent vectors in, images out, every pixel against host TFLM."""
    from .evaluate import compare_outputs, outputs_report_text, stream
    from ..fileio import write_atomic
    from ..model.gan import grid_png, latent_vectors, to_pixels
    from ..model.gan_pipeline import EVAL_SEED_OFFSET, dequantize, judge_pixels
    from ..model.tflite_model import inspect_model
    from ..model.verify import quantize_real, run_tflm
    from ..ui import RichUI

    if args.all:
        raise TinymlError("--all is for test images; a generator takes -n N latent vectors")
    total = DEFAULT_LATENTS if args.images is None else args.images
    if total <= 0:
        raise TinymlError("-n must be at least 1")
    model = inspect_model(tflite, tflite_path)
    latents = quantize_real(latent_vectors(total, spec.gan.latent_dim, spec.seed + EVAL_SEED_OFFSET),
                               model.input.scale, model.input.zero_point)
    link = _open_link(args, spec, work, console)
    try:
        session, info = _connect(args, link, console, tflite, tflite_path, latents.shape[1], model.output.shape[-1])
        outcome = stream(session, latents, lambda done, n, failed: None)
        report, device = compare_outputs(outcome, run_tflm(tflite, latents), info, args.board, link.description)
        if report.mismatches:
            first = report.mismatches[0]
            report.differing_op = _trace_mismatch(console, session, latents[first], tflite,
                                                  _device_kernels(args, work), f"input {first}")
    finally:
        link.close()
    pixels = to_pixels(dequantize(device, model.output.scale, model.output.zero_point), spec).reshape(
        (-1,) + tuple(spec.input_shape))
    judgement = judge_pixels(spec, pixels, work, args.data_dir, RichUI(console))
    captions = judgement.captions()
    grid = work / "eval-digits.png"
    grid_png(grid, pixels[:len(captions)], columns=10, captions=captions)
    report.extra = {"classifier": f"{judgement.confident_percent:.1f} % confident (>= {judgement.confidence:g}), "
                                  f"digits {judgement.histogram}", "grid": str(grid)}
    report.wall_seconds = time.perf_counter() - started
    write_atomic(work / "eval.json", json.dumps(report.to_json(), indent=1) + "\n")
    if args.format == "json":
        print(json.dumps(report.to_json(), indent=1))
    else:
        print(outputs_report_text(report))
        console.print(f"report: {work / 'eval.json'}, the device's digits: {grid}")
    return 0 if report.passed else 1


def _build_dir(args: argparse.Namespace, work: Path) -> Path:
    return Path(args.build_dir) if args.build_dir else work / f"eval-{args.board}"


def _device_kernels(args: argparse.Namespace, work: Path) -> str:
    """The kernels of the eval app this command built ("" for a board on --port: not known here)."""
    from ..firmware.build import build_config

    if args.port:
        return ""
    config = build_config(_build_dir(args, work))
    return "cmsis-nn" if config.get("CONFIG_TINYML_KERNELS_CMSIS_NN") == "y" else "reference"


def _open_link(args: argparse.Namespace, spec: Any, work: Path, console: Any) -> Any:
    from .link import QemuLink, SerialLink

    if args.port:
        return SerialLink(args.port, args.baud)
    from ..firmware.build import build_app, is_qemu_build, require_zephyr

    zephyr = require_zephyr()
    build_dir = _build_dir(args, work)
    if not args.no_build:
        with console.status(f"building samples/mnist_eval for {args.board} in {build_dir}"):
            generated = Path(args.generated_dir) if args.generated_dir else spec.output_dir
            build_app(EVAL_APP, args.board, build_dir, generated, zephyr=zephyr)
    if not is_qemu_build(build_dir):
        raise TinymlError(f"{args.board} is a real board: flash it (west flash -d {build_dir}) and run again "
                          f"with --port (e.g. --port /dev/ttyACM0)")
    return QemuLink(build_dir, zephyr.env())


def _connect(args: argparse.Namespace, link: Any, console: Any, tflite: bytes, tflite_path: Path,
             input_size: int, output_size: int) -> tuple[Any, Any]:
    """A session on ``link`` with the command's timeouts, after the device said it runs this model."""
    from .evaluate import check_device_model
    from .session import Session

    session = Session(link, timeout=args.timeout, retries=args.retries, first_timeout=args.boot_timeout)
    with console.status(f"waiting for the device on {link.description}"):
        info = session.handshake(args.boot_timeout)
    check_device_model(info, tflite, input_size, output_size, str(tflite_path))
    return session, info


def _run(args: argparse.Namespace, spec: Any, tflite: bytes, tflite_path: Path, data: Any, total: int,
         link: Any, console: Any, kernels: str) -> Any:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    from .evaluate import compare, stream
    from ..model.tflite_model import inspect_model
    from ..model.verify import quantize_input

    info_model = inspect_model(tflite, tflite_path)
    indices = np.arange(total)
    inputs = quantize_input(data.x_test[:total], spec, info_model).reshape(total, -1)
    # The host's side (host TFLM, TFLite and the float model on the same images; TensorFlow's import
    # alone takes seconds) runs in a process of its own while the device answers, so the whole run
    # takes about as long as the streaming. A fresh interpreter ("spawn"): forking one that runs
    # threads (QEMU's reader, rich's refresh) is unsafe.
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        host = pool.submit(_host_side, tflite, inputs.reshape((total, *info_model.input.shape[1:])),
                           tflite_path.with_suffix(".keras"), spec.norm_scale, spec.norm_offset,
                           data.x_test[:total])
        session, info = _connect(args, link, console, tflite, tflite_path, inputs.shape[1],
                                 info_model.output.shape[-1])

        columns = (TextColumn("  device"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                   TimeElapsedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("device", total=total, info="")

            def advance(done: int, _total: int, failed: int) -> None:
                progress.update(task, completed=done, info=f"{failed} failed" if failed else "")
                if not console.is_terminal and (done % 1000 == 0 or done == total):
                    console.print(f"  device: {done:,}/{total:,} images, {failed} failed")  # logs and CI

            outcome = stream(session, inputs, advance)

        with console.status("host TFLM and TFLite on the same images"):
            tflm, tflite_out, float_pred = host.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    labels = data.y_test[:total]
    report = compare(outcome, indices, labels, tflm, tflite_out, float_pred, info, spec.labels, args.board,
                     link.description)
    if report.mismatches:
        first = report.mismatches[0].test_index
        report.differing_op = _trace_mismatch(console, session, inputs[first], tflite, kernels, f"test image {first}")
    return report


def _trace_mismatch(console: Any, session: Any, model_input: Any, tflite: bytes, kernels: str, input_name: str) -> str:
    """The first input that differed, traced op by op on the device: which op (``name_differing_op``)."""
    from .evaluate import name_differing_op

    with console.status(f"{input_name} differs from host TFLM: tracing it op by op on the device"):
        return name_differing_op(session, model_input, tflite, kernels, input_name)


def _host_side(tflite: bytes, inputs: Any, keras_path: Path, norm_scale: float, norm_offset: float,
               images: Any) -> tuple[Any, Any, Any]:
    """Host TFLM's and TFLite's int8 outputs and the float model's predictions (in the worker process)."""
    from .evaluate import host_references

    tflm, tflite_out = host_references(tflite, inputs)
    return tflm, tflite_out, _float_predictions(keras_path, norm_scale, norm_offset, images)


def _float_predictions(keras_path: Path, norm_scale: float, norm_offset: float, images: Any) -> Any:
    """Predictions of the float Keras model the pipeline saved next to the .tflite, if it did."""
    if not keras_path.is_file():
        return None
    import keras

    from ..model.data import normalize

    model = keras.models.load_model(keras_path)
    return model.predict(normalize(images, norm_scale, norm_offset), batch_size=1000, verbose=0).argmax(axis=1)


def _write_outputs(report: Any, work: Path, name: str) -> None:
    import numpy as np

    from ..fileio import write_atomic
    from ..model.plots import confusion_plot

    write_atomic(work / "eval.json", json.dumps(report.to_json(), indent=1) + "\n")
    confusion_plot(np.array(report.confusion), report.labels, work / "eval-confusion.png",
                   f"{name} on {report.board}: {report.device_accuracy:.2f} % of {report.answered:,}")
