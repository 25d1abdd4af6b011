"""``tinyml list`` and ``tinyml build``: the model specs, and the pipeline from spec to firmware."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..errors import FirmwareError, TinymlError
from ..firmware.boards import canonical, for_board, is_non_secure
from ..firmware.build import KERNEL_CHOICES, FirmwareOptions, build_step
from ..firmware.secure import WINDOW, build_secure, run_secure, secure_images
from ..layout import DEFAULT_BOARD, work_dir
from ..model.model_file import is_model_path, name_from_path, read_labels_file, spec_for_model_file
from ..model.pipeline import BuildOptions, build_model
from ..model.report import summary_table
from ..model.spec import Spec, list_specs, load_spec, resolve_spec_path
from ..ui import RichUI


def add_command(sub: argparse._SubParsersAction) -> None:
    """Add ``list`` and ``build`` to the shared parser (see cli.add_commands)."""
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
    files.add_argument("--max-kernel-accuracy-gap", type=float, metavar="POINTS",
                       help="where an op's TFLM kernel differs from TFLite's by design (an LSTM): TFLite reference "
                            "accuracy minus TFLM's, at most (default: 0.5)")
    files.add_argument("--min-kernel-agreement", type=float, metavar="PERCENT",
                       help="...and the share of inputs on which both pick the same argmax, at least (default: 99)")
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
    p_build.add_argument("--kernels", choices=tuple(KERNEL_CHOICES),
                         help="TFLM kernels (default: CMSIS-NN on Cortex-M when the workspace has the cmsis-nn "
                              "module, else the reference kernels; cmsis-nn-dsp: CMSIS-NN's DSP paths on a "
                              "Cortex-M33 (mps2_an521, the extension turned on in QEMU) or the Cortex-M55 of "
                              "mps3_an547, which measures their arena for DSP boards QEMU cannot run)")
    p_build.add_argument("--secure", action="store_true",
                         help="keep the model in the TrustZone secure world: build it into the zephyr-tinyml TF-M "
                              "partition with samples/secure_model as the non-secure app (board: a TF-M _ns "
                              "target such as mps2_an521_ns); --run requires the self test through the PSA "
                              "service, the refusal of a wrong-size input and a SecureFault on reading the model")
    p_build.add_argument("--no-firmware", action="store_true",
                         help="stop after generating sources (no Zephyr needed)")
    p_build.set_defaults(func=cmd_build)



def secure_build_step(spec: Spec, generated: Path, changed: bool, work: Path, board: str, build_dir: Path | None,
                      run: bool, console: Console) -> int:
    """``tinyml build --secure``: the model in the TF-M partition, the non-secure app around it,
    optionally run to its SecureFault, then the three images against their regions and the spec's
    budgets for the board (``flash``/``ram``: the non-secure image; ``secure_flash``/``secure_ram``:
    TF-M's, with the model) and the model-window check."""
    build_dir = build_dir or Path(work) / f"{canonical(board)}-secure"
    build_secure(board, build_dir, generated, pristine=changed and build_dir.exists())
    status = 0
    if run:
        try:
            output, _ = run_secure(build_dir)
        except FirmwareError as err:
            console.print(f"[red]{err}[/red]", markup=True, highlight=False)
            status = 1
        else:
            console.print(output, markup=False, highlight=False, soft_wrap=True)
    images = secure_images(build_dir, generated)
    budget = for_board(spec.budgets, board)
    limits = {"non-secure": (budget.flash, budget.ram) if budget else (None, None),
              "secure": (budget.secure_flash, budget.secure_ram) if budget else (None, None),
              "bootloader": (None, None)}
    table = Table(title=f"secure build on {board}: three images")
    for column in ("image", "flash B", "of", "budget", "RAM B", "of", "budget"):
        table.add_column(column, justify="left" if column == "image" else "right")
    problems = []
    for key, name, report in (("bootloader", "bootloader (TF-M BL2, MCUboot)", images.bootloader),
                              ("secure", "TF-M secure image (model, TFLM, kernels, arena)", images.secure),
                              ("non-secure", "non-secure Zephyr app", images.non_secure)):
        flash_limit, ram_limit = limits[key]
        if report is None:
            table.add_row(f"{name}: none (built without it)", "-", "-", "-", "-", "-", "-")
            continue
        table.add_row(name, f"{report.flash:,}", f"{report.flash_size:,}", f"{flash_limit:,}" if flash_limit else "-",
                      f"{report.ram:,}", f"{report.ram_size:,}", f"{ram_limit:,}" if ram_limit else "-")
        for region, used, limit in (("flash", report.flash, flash_limit), ("RAM", report.ram, ram_limit)):
            if limit is not None and used > limit:
                problems.append(f"the {key} image's {region} {used:,} B exceeds the budget of {limit:,} B by "
                                f"{used - limit:,} B")
    console.print(table)
    console.print(f"model bytes in the non-secure image: {images.model_windows_in_non_secure} of its "
                  f"{WINDOW}-byte windows")
    if budget is None:
        console.print(f"no budget for {board} in {spec.path} (budgets: {board}: {{flash, ram, secure_flash, "
                      f"secure_ram}} checks the non-secure and the secure image)")
    for problem in problems:
        console.print(f"[red]over budget:[/red] {problem} (budgets.{board} in {spec.path})")
        status = 1
    return status


def cmd_list(args: argparse.Namespace) -> int:
    """Print the shipped model specs with their descriptions."""
    table = Table(title="models", header_style="bold")
    for column in ("name", "data set", "model", "epochs", "boards with budgets", "description"):
        table.add_column(column)
    for path in list_specs():
        spec = load_spec(path)
        if spec.model.gan is not None:
            model = f"GAN: {len(spec.model.gan.generator)}-layer generator (deployed)"
        else:
            model = f"{len(spec.model.layers)} layers" if spec.model.layers else Path(spec.model.file or "").name
        trains = bool(spec.model.layers) or spec.model.gan is not None
        table.add_row(spec.name, spec.dataset.display, model, str(spec.training.epochs) if trains else "-",
                      ", ".join(spec.budgets) or "-", spec.description)
    Console().print(table)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    """Train (or reuse), quantize, verify, generate sources; then build the firmware unless told not to."""
    if is_model_path(args.model):
        name = args.name
        work = work_dir(name or name_from_path(Path(args.model)), args.work_dir)
        spec = spec_for_model_file(
            Path(args.model), name=name, dataset=args.dataset,
            data_dir=Path(args.data_dir) if args.data_dir else None,
            labels=read_labels_file(Path(args.labels)) if args.labels else (),
            input_scale=args.input_scale, input_offset=args.input_offset, test_inputs=args.test_inputs,
            output_dir=Path(args.out) if args.out else None, work_dir=work,
            acceptance={key: value for key, value in (
                ("max_kernel_accuracy_gap", args.max_kernel_accuracy_gap),
                ("min_kernel_argmax_agreement", args.min_kernel_agreement)) if value is not None})
    else:
        for option in ("dataset", "labels", "name", "max_kernel_accuracy_gap", "min_kernel_agreement"):
            if getattr(args, option):
                raise TinymlError(f"--{option} is for a model file (.tflite, .keras, .h5, SavedModel); for a spec, "
                                  f"set it in the spec's dataset section.")
        spec = load_spec(resolve_spec_path(args.model))
    console = Console()
    options = BuildOptions(work_dir=work_dir(spec.name, args.work_dir),
                           data_dir=Path(args.data_dir) if args.data_dir else None,
                           out_dir=Path(args.out) if args.out else None, retrain=args.retrain,
                           allow_download=not args.offline)
    result = build_model(spec, options, RichUI())
    console.print(summary_table(result))
    changed = ", ".join(result.generated.changed) or "none (unchanged)"
    console.print(f"generated sources in {result.generated.folder}; rewritten: {changed}")
    if args.no_firmware:
        return 0
    # --secure, or the spec's codegen.secure on a TF-M board target (elsewhere the spec key does not apply).
    if args.secure or (result.spec.codegen.secure and is_non_secure(args.board)):
        return secure_build_step(result.spec, result.generated.folder, bool(result.generated.changed),
                                 result.work_dir, args.board, Path(args.build_dir) if args.build_dir else None,
                                 args.run, console)
    firmware = FirmwareOptions(board=args.board, build_dir=Path(args.build_dir) if args.build_dir else None,
                               kernels=args.kernels, run=args.run)
    return build_step(result.spec, result.generated.folder, bool(result.generated.changed), result.work_dir,
                      firmware, console)


