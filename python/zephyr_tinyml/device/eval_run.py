"""An on-device evaluation, start to end: build the eval app, stream the test set, compare with host TFLM.

What ``tinyml eval`` and ``tinyml bench --eval`` run, with typed options (:class:`EvalOptions`);
the protocol work is in :mod:`evaluate`, :mod:`session` and :mod:`link`.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TinymlError
from ..fileio import write_atomic
from ..firmware.boards import canonical
from ..firmware.build import build_app, require_zephyr
from ..firmware.build_folder import build_config, cached, is_qemu_build
from ..firmware.secure import require_tfm
from ..layout import DEFAULT_BOARD, EVAL_APP, work_dir
from ..model.codegen import class_labels
from ..model.data import DataSource, load_dataset, normalize
from ..model.gan import grid_png, latent_vectors, to_pixels
from ..model.gan_pipeline import EVAL_SEED_OFFSET, dequantize, judge_pixels
from ..model.plots import confusion_plot
from ..model.spec import Spec
from ..model.tflite_model import inspect_model
from ..model.torch_model import TORCH_SUFFIXES, load_torch_model, torch_extra_missing
from ..model.verify import quantize_input, quantize_real, run_tflm
from ..ui import RichUI
from .evaluate import (check_device_model, compare, compare_outputs, host_references, name_differing_op, stream)
from .link import QemuLink, SerialLink
from .protocol import TENSOR_TYPES
from .session import Session

DEFAULT_IMAGES = 1000
DEFAULT_LATENTS = 100  # a generator's: each answer is a whole image (784 bytes over the UART)
# The secure partition keeps every intermediate tensor to itself, so a differing input is not traced.
NOT_TRACED_SECURE = ("not traced: the model runs in the TF-M secure partition, which shows no intermediate tensor; "
                     "evaluate the same model without --secure on the same core (e.g. --board mps2_an521) to find "
                     "the op")


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate, where, and how patiently (``tinyml eval``'s options)."""
    board: str = DEFAULT_BOARD
    images: int | None = None          # None: DEFAULT_IMAGES (DEFAULT_LATENTS for a generator)
    all: bool = False                  # the whole test set
    port: str | None = None            # a flashed board's serial port; None: build and run in QEMU
    baud: int = 115200
    build_dir: Path | None = None      # default: <work>/eval-<board>
    work_dir: Path | None = None       # where `tinyml build` wrote the model
    generated_dir: Path | None = None  # model sources to compile in (default: the spec's output_dir)
    data_dir: Path | None = None
    timeout: float | None = None       # per reply; None adapts to the model
    retries: int = 3
    boot_timeout: float = 30.0
    no_build: bool = False             # run the build in build_dir as it is
    secure: bool = False               # the model in the TF-M partition, frames through its PSA service


def run_eval(spec: Spec, options: EvalOptions, console: Any, started: float) -> tuple[Any, Path]:
    """Evaluate ``spec``'s model on the device: the report (an :class:`~.evaluate.EvalReport`, or an
    :class:`~.evaluate.OutputsReport` for a generator) with its outputs written to the work folder."""
    if options.secure and not options.port:
        require_tfm(options.board)      # before anything is loaded: the board and workspace can do it
    work, tflite_path, tflite = model_files(options, spec)
    model = inspect_model(tflite, tflite_path)
    if model.input.dtype not in TENSOR_TYPES or model.output.dtype not in TENSOR_TYPES:
        raise TinymlError(f"{tflite_path}: its input is {model.input.dtype} and its output {model.output.dtype}; "
                          f"`tinyml eval` streams {' and '.join(TENSOR_TYPES)} tensors (full-int8 models and "
                          f"TFLite's 16x8 mode, docs/protocol.md). `tinyml build` deploys only such models.")
    if spec.model.gan is not None:
        return _eval_generator(options, spec, work, tflite, tflite_path, console, started), work
    report = evaluate_classifier(options, spec, work, tflite, tflite_path, console)
    report.wall_seconds = time.perf_counter() - started
    _write_outputs(report, work, spec.name)
    return report, work


def model_files(options: EvalOptions, spec: Spec) -> tuple[Path, Path, bytes]:
    """The work folder ``tinyml build`` wrote (``work_dir``, else ./build/tinyml/<model>), its
    ``.tflite`` and that model's bytes; an error saying what to run when it is not there."""
    work = work_dir(spec.name, options.work_dir)
    tflite_path = work / f"{spec.name}.tflite"
    if not tflite_path.is_file():
        raise TinymlError(f"no {tflite_path}: run `tinyml build {spec.name}` first (it trains, quantizes and "
                          f"generates the sources the eval app compiles)")
    return work, tflite_path, tflite_path.read_bytes()


def evaluate_classifier(options: EvalOptions, spec: Spec, work: Path, tflite: bytes, tflite_path: Path,
                        console: Any) -> Any:
    """Load the test images, open the link (building the app unless --no-build), stream and compare:
    the :class:`~zephyr_tinyml.device.evaluate.EvalReport`, nothing written."""
    # A model file's spec names no input shape: the model's own (as `tinyml build` took it).
    shape = tuple(spec.dataset.input_shape) or tuple(inspect_model(tflite, tflite_path).input.shape[1:])
    data = load_dataset(DataSource.of_spec(spec), shape, Path(options.data_dir) if options.data_dir else None)
    total = len(data.x_test) if options.all else min(DEFAULT_IMAGES if options.images is None else options.images, len(data.x_test))
    if total <= 0:
        raise TinymlError("-n must be at least 1")
    link = _open_link(options, spec, work, console)
    try:
        return _run(options, spec, tflite, tflite_path, data, total, link, console, _device_kernels(options, work))
    finally:
        link.close()


def _eval_generator(options: EvalOptions, spec: Spec, work: Path, tflite: bytes, tflite_path: Path,
                    console: Any, started: float) -> Any:
    """A GAN's generator on the device: latent vectors in, images out, every pixel against host TFLM."""
    if options.all:
        raise TinymlError("--all is for test images; a generator takes -n N latent vectors")
    total = DEFAULT_LATENTS if options.images is None else options.images
    if total <= 0:
        raise TinymlError("-n must be at least 1")
    model = inspect_model(tflite, tflite_path)
    latents = quantize_real(latent_vectors(total, spec.model.gan.latent_dim, spec.training.seed + EVAL_SEED_OFFSET),
                               model.input.scale, model.input.zero_point)
    link = _open_link(options, spec, work, console)
    try:
        session, info = _connect(options, link, console, tflite, tflite_path, latents.shape[1], model.output.shape[-1],
                                 model.output.dtype)
        outcome = stream(session, latents, lambda done, n, failed: None)
        report, device = compare_outputs(outcome, run_tflm(tflite, latents), info, options.board, link.description)
        if report.mismatches and options.secure:
            report.differing_op = NOT_TRACED_SECURE
        elif report.mismatches:
            first = report.mismatches[0]
            report.differing_op = _trace_mismatch(console, session, latents[first], tflite,
                                                  _device_kernels(options, work), f"input {first}")
    finally:
        link.close()
    pixels = to_pixels(dequantize(device, model.output.scale, model.output.zero_point), spec).reshape(
        (-1,) + tuple(spec.dataset.input_shape))
    judgement = judge_pixels(spec, pixels, work, options.data_dir, RichUI(console))
    captions = judgement.captions()
    grid = work / "eval-digits.png"
    grid_png(grid, pixels[:len(captions)], columns=10, captions=captions)
    report.extra = {"classifier": f"{judgement.confident_percent:.1f} % confident (>= {judgement.confidence:g}), "
                                  f"digits {judgement.histogram}", "grid": str(grid)}
    report.wall_seconds = time.perf_counter() - started
    write_atomic(work / "eval.json", json.dumps(report.to_json(), indent=1) + "\n")
    return report


def _build_dir(options: EvalOptions, work: Path) -> Path:
    if options.build_dir:
        return Path(options.build_dir)
    return work / f"eval-{canonical(options.board)}{'-secure' if options.secure else ''}"


def _device_kernels(options: EvalOptions, work: Path) -> str:
    """The kernels of the eval app this command built ("" for a board on --port: not known here).
    The secure partition compiles CMSIS-NN's kernels where TFLM has them (zephyr/tfm/tinyml_partition)."""
    if options.port:
        return ""
    if options.secure:
        return "cmsis-nn"
    config = build_config(_build_dir(options, work))
    return "cmsis-nn" if config.get("CONFIG_TINYML_KERNELS_CMSIS_NN") == "y" else "reference"


def _open_link(options: EvalOptions, spec: Spec, work: Path, console: Any) -> Any:
    if options.port:
        return SerialLink(options.port, options.baud)
    zephyr = require_zephyr()
    build_dir = _build_dir(options, work)
    if not options.no_build:
        where = " with the model in the TF-M secure partition" if options.secure else ""
        with console.status(f"building samples/mnist_eval for {options.board}{where} in {build_dir}"):
            generated = Path(options.generated_dir) if options.generated_dir else spec.codegen.output_dir
            # Configured again only when the folder's cached choice is not this run's.
            secure = "ON" if options.secure else "OFF"
            args = () if (cached(build_dir, "TINYML_SECURE") or "OFF") == secure else (f"-DTINYML_SECURE={secure}",)
            build_app(EVAL_APP, options.board, build_dir, generated, zephyr=zephyr, extra_cmake_args=args,
                      arena_in_image=not options.secure)
    if not is_qemu_build(build_dir):
        raise TinymlError(f"{options.board} is a real board: flash it (west flash -d {build_dir}) and run again "
                          f"with --port (e.g. --port /dev/ttyACM0)")
    return QemuLink(build_dir, zephyr.env())


def _connect(options: EvalOptions, link: Any, console: Any, tflite: bytes, tflite_path: Path,
             input_size: int, output_size: int, output_type: str) -> tuple[Any, Any]:
    """A session on ``link`` with the command's timeouts, after the device said it runs this model
    (``output_type``: int8, or a 16x8 model's int16, which sizes the values in the replies)."""
    session = Session(link, timeout=options.timeout, retries=options.retries, first_timeout=options.boot_timeout,
                      output_type=output_type)
    with console.status(f"waiting for the device on {link.description}"):
        info = session.handshake(options.boot_timeout)
    check_device_model(info, tflite, input_size, output_size, str(tflite_path))
    return session, info


def _run(options: EvalOptions, spec: Spec, tflite: bytes, tflite_path: Path, data: Any, total: int,
         link: Any, console: Any, kernels: str) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

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
                           _float_model_path(spec, tflite_path), spec.dataset.norm_scale, spec.dataset.norm_offset,
                           data.x_test[:total])
        session, info = _connect(options, link, console, tflite, tflite_path, inputs.shape[1],
                                 info_model.output.shape[-1], info_model.output.dtype)

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
    names = class_labels(info_model, spec.dataset.labels, data.class_names)     # as the build chose them
    report = compare(outcome, indices, labels, tflm, tflite_out, float_pred, info, names, options.board,
                     link.description, info_model.output.dtype)
    if report.mismatches:
        first = report.mismatches[0].test_index
        report.differing_op = (NOT_TRACED_SECURE if options.secure else
                               _trace_mismatch(console, session, inputs[first], tflite, kernels, f"test image {first}"))
    return report


def _trace_mismatch(console: Any, session: Any, model_input: Any, tflite: bytes, kernels: str, input_name: str) -> str:
    """The first input that differed, traced op by op on the device: which op (``name_differing_op``)."""
    with console.status(f"{input_name} differs from host TFLM: tracing it op by op on the device"):
        return name_differing_op(session, model_input, tflite, kernels, input_name)


def _float_model_path(spec: Spec, tflite_path: Path) -> Path:
    """The float model: a PyTorch program or ONNX model the build was given, else the Keras model the
    pipeline saved next to the .tflite (a trained spec, a .keras/.h5/SavedModel file)."""
    if spec.model.file is not None and spec.model.file.suffix in TORCH_SUFFIXES:
        return spec.model.file
    return tflite_path.with_suffix(".keras")


def _host_side(tflite: bytes, inputs: Any, float_path: Path, norm_scale: float, norm_offset: float,
               images: Any) -> tuple[Any, Any, Any]:
    """Host TFLM's and TFLite's quantized outputs and the float model's predictions (in the worker process)."""
    tflm, tflite_out = host_references(tflite, inputs)
    return tflm, tflite_out, _float_predictions(float_path, norm_scale, norm_offset, images)


def _float_predictions(float_path: Path, norm_scale: float, norm_offset: float, images: Any) -> Any:
    """Predictions of the float model at ``float_path``; None where there is none (an int8 .tflite
    given as it is) or it cannot be run here (a .pt2/.onnx without the torch extra, which the report
    says)."""
    if not float_path.is_file():
        return None
    x = normalize(images, norm_scale, norm_offset)
    if float_path.suffix in TORCH_SUFFIXES:
        if torch_extra_missing():
            return None
        return load_torch_model(float_path).predict(x, batch_size=1000).argmax(axis=1)
    import keras

    model = keras.models.load_model(float_path)
    return model.predict(x, batch_size=1000, verbose=0).argmax(axis=1)


def _write_outputs(report: Any, work: Path, name: str) -> None:
    write_atomic(work / "eval.json", json.dumps(report.to_json(), indent=1) + "\n")
    confusion_plot(np.array(report.confusion), report.labels, work / "eval-confusion.png",
                   f"{name} on {report.board}: {report.device_accuracy:.2f} % of {report.answered:,}")
