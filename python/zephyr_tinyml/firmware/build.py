"""Firmware stage: build the Zephyr app around the generated sources, and run it in QEMU.

Why CMake and Ninja rather than ``west build``: ``west build`` exists only inside a west
workspace, while the pipeline also runs from a plain checkout with ``ZEPHYR_BASE`` set.  The
build is the one ``west build`` would run (same CMake entry point, same cache variables), so a
build folder made here can be rebuilt with ``west build -d`` and the other way round.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FirmwareError
from ..layout import SAMPLE_APP
from ..model.arena import device_arena_size, record_device_arena
from ..model.op_trace import describe, trace_difference
from ..model.spec import Spec
from .boards import canonical, for_board, same_board, target_for
from .build_folder import build_config, cached, module_revisions
from .fit import check_fit
from .qemu import run_until_end
from .size import check_budget, region_report, to_table
from .zephyr_env import ZephyrEnv, find_zephyr

SUMMARY = re.compile(r"^SUMMARY (?P<fields>.*)$", re.MULTILINE)


def require_zephyr() -> ZephyrEnv:
    """The Zephyr environment, or a :class:`FirmwareError` saying why there is none."""
    env, why = find_zephyr()
    if env is None:
        raise FirmwareError(why)
    return env


def build_app(app_dir: Path, board: str, build_dir: Path, generated_dir: Path,
              pristine: bool = False, zephyr: ZephyrEnv | None = None,
              extra_cmake_args: tuple[str, ...] = (), arena_in_image: bool = True) -> Path:
    """Configure (if needed) and build ``app_dir`` for ``board``; returns ``zephyr/zephyr.elf``.

    ``board`` may be given under either naming (``mps2_an521`` or ``mps2/an521/cpu0``); CMake gets
    the one the Zephyr found uses (:func:`.boards.target_for`). ``pristine`` removes ``build_dir``
    first; otherwise an existing build folder for another board or app is an error rather than a
    silent mix of two configurations. ``arena_in_image=False``: the tensor arena is not in this
    image (a secure build: TF-M's image holds it), so the board's RAM is not checked against it.
    """
    zephyr = zephyr or require_zephyr()
    app_dir, build_dir, generated_dir = (Path(p).resolve() for p in (app_dir, build_dir, generated_dir))
    if not any(generated_dir.glob("*.cc")):
        raise FirmwareError(f"no generated sources (*.cc) in {generated_dir}: run `west tinyml build <model> --no-firmware` first")
    if pristine and build_dir.exists():
        shutil.rmtree(build_dir)
    _check_build_dir(build_dir, app_dir, board)
    # A configured folder keeps the name it was configured with (another spelling of the same
    # board would only make Zephyr warn that the board changed).
    board_arg = _cached_board(build_dir) or target_for(board, zephyr.version, zephyr.base)

    env = zephyr.env()
    configure = ["cmake", "-G", "Ninja", "-S", str(app_dir), "-B", str(build_dir),
                 f"-DBOARD={board_arg}", f"-DTINYML_MODEL_DIR={generated_dir}",
                 f"-DPython3_EXECUTABLE={sys.executable}", *extra_cmake_args]
    if extra_cmake_args or cached(build_dir, "TINYML_MODEL_DIR") != str(generated_dir):
        _run(configure, env, "configure")
    if arena_in_image:
        check_fit(build_dir, generated_dir, board)
    _run(["cmake", "--build", str(build_dir)], env, "build")

    elf = build_dir / "zephyr" / "zephyr.elf"
    if not elf.is_file():
        raise FirmwareError(f"build finished but {elf} is missing")
    return elf


def run_qemu(build_dir: Path, timeout: float = 120.0, zephyr: ZephyrEnv | None = None) -> str:
    """Run a QEMU board's build until the app's last line (see :func:`.qemu.run_until_end`)."""
    return run_until_end(build_dir, (zephyr or require_zephyr()).env(), timeout)


def parse_summary(output: str) -> dict[str, Any]:
    """The app's ``SUMMARY key=value ...`` line as a dict; ``correct=9/10`` gives correct and images."""
    match = SUMMARY.search(output)
    if match is None:
        raise FirmwareError("the firmware printed no SUMMARY line:\n" + output[-2000:])
    result: dict[str, Any] = {}
    for item in match.group("fields").split():
        key, _, value = item.partition("=")
        if "/" in value:
            num, den = value.split("/", 1)
            result[key], result["images"] = int(num), int(den)
        else:
            result[key] = int(value) if value.isdigit() else value
    return result


@dataclass(frozen=True)
class FirmwareOptions:
    """What ``tinyml build`` asks of the firmware step."""

    board: str
    build_dir: Path | None = None   # default: <work>/<board>
    kernels: str | None = None      # a KERNEL_CHOICES key; None: the Kconfig default
    run: bool = False               # run in QEMU (measuring the arena) after building


def build_step(spec: Spec, generated_folder: Path, generated_changed: bool, work_dir: Path,
               options: FirmwareOptions, console: Any) -> int:
    """``tinyml build``'s firmware step: build, optionally run (measuring the arena), report sizes.

    A run on a QEMU board reports the arena the device used for its kernel build; when that is not
    what ``model_arena.h`` was generated with, the measurement is recorded, the header regenerated
    and the app rebuilt (only the files that include it) and run again, so the image that passed is
    the one with the exact arena.
    """
    board = canonical(options.board)   # mps2/an521/cpu0 is filed (folder, budget, arena) as mps2_an521
    folder = Path(generated_folder)
    build_dir = Path(options.build_dir) if options.build_dir else Path(work_dir) / board
    app_dir = Path(spec.codegen.app_dir) if spec.codegen.app_dir else SAMPLE_APP
    # Pristine when the generated sources changed: a new model can change the op set and sizes.
    pristine = generated_changed and build_dir.exists()
    elf = build_app(app_dir, board, build_dir, folder, pristine=pristine,
                    extra_cmake_args=kernels_args(options.kernels))
    require_kernels(build_dir, board, options.kernels)
    status = 0
    if options.run:
        output, summary = run_measuring_arena(app_dir, board, build_dir, folder, console)
        console.print(output, markup=False, highlight=False, soft_wrap=True)   # the app's lines, unbroken
        if summary.get("correct") != summary.get("images"):
            status = 1
            traced = trace_difference(folder, output)
            if traced is not None:
                text = describe(traced[1], str(summary.get("kernels", "")), f"test input {traced[0].test}")
                console.print(f"[red]not bit-exact:[/red] {text}")
        needed = summary.get("arena_needed")
        if isinstance(needed, int) and needed:
            console.print(f"arena: {summary['arena_size']:,} bytes allocated, AllocateTensors() needs {needed:,} on "
                          f"{board} ({summary.get('kernels', '?')} kernels; {summary.get('arena_used', 0):,} in use "
                          f"afterwards): {summary['arena_size'] / needed:.3f} x the need")
    report = region_report(elf, build_dir / "zephyr" / "zephyr.map", model_dir=folder)
    budget = for_board(spec.budgets, board)
    console.print(to_table(report, f"{spec.name} on {board}", budget))
    if budget is None:
        console.print(f"no budget for {board} in {spec.path}")
    else:
        for problem in check_budget(report, budget):
            console.print(f"[red]over budget:[/red] {problem}")
            status = 1
    return status


# --kernels -> the Kconfig symbols it sets (zephyr/Kconfig). "cmsis-nn-dsp" runs CMSIS-NN's DSP
# paths on a Cortex-M33 (mps2_an521: an image for an M33 with the extension, which the samples turn
# on in QEMU's CPU0) or a Cortex-M55 (mps3_an547, Helium off for TFLM, CMSIS-NN, runtime and app).
KERNEL_CHOICES = {
    "cmsis-nn": ("CONFIG_TINYML_KERNELS_CMSIS_NN",),
    "cmsis-nn-dsp": ("CONFIG_TINYML_KERNELS_CMSIS_NN", "CONFIG_TINYML_CMSIS_NN_DSP_PATHS"),
    "reference": ("CONFIG_TINYML_KERNELS_REFERENCE",),
}


def kernels_args(kernels: str | None) -> tuple[str, ...]:
    """CMake arguments choosing the kernels (Kconfig choice TINYML_KERNELS); none keeps the default.

    The default is CMSIS-NN on Cortex-M boards whose workspace has the cmsis-nn module, else the
    reference kernels (zephyr/Kconfig).
    """
    if kernels is None:
        return ()
    if kernels not in KERNEL_CHOICES:
        raise FirmwareError(f"unknown kernels {kernels!r}: choose one of {', '.join(KERNEL_CHOICES)}")
    chosen = KERNEL_CHOICES[kernels]
    # A build folder keeps CONFIG_ values given on an earlier command line, and Zephyr's kconfig.cmake
    # a copy of each as CLI_CONFIG_ (re-applied while the CONFIG_ one is undefined): drop both of the
    # other choices', or switching a folder from one kernel build to another keeps the first.
    others = sorted({symbol for symbols in KERNEL_CHOICES.values() for symbol in symbols} - set(chosen))
    return (tuple(f"-U{prefix}{symbol}" for symbol in others for prefix in ("", "CLI_"))
            + tuple(f"-D{symbol}=y" for symbol in chosen))


def kernels_problem(config: dict[str, str], board: str, kernels: str | None) -> str | None:
    """Why the configured build (its ``build_config``) lacks what ``--kernels`` asked for, or None.

    Zephyr 3.4 only warns when a CONFIG_ value given on the command line is not allowed for the
    board (CMSIS-NN on a Cortex-A, the DSP paths on anything but a Cortex-M33 or M55) and builds
    something else; a benchmark row or a measured arena must not be filed under the wrong kernels.
    """
    if kernels is None:
        return None
    missing = [symbol for symbol in KERNEL_CHOICES[kernels] if config.get(symbol) != "y"]
    if not missing:
        return None
    need = ("a Cortex-M33 or Cortex-M55 board (mps2_an521, mps3_an547)" if "CONFIG_TINYML_CMSIS_NN_DSP_PATHS" in missing
            else "a Cortex-M board and the cmsis-nn module in the workspace")
    return f"--kernels {kernels} on {board}: Kconfig refused {', '.join(missing)}; {kernels} needs {need}"


def require_kernels(build_dir: Path, board: str, kernels: str | None) -> None:
    """Raise :class:`FirmwareError` when :func:`kernels_problem` finds one."""
    problem = kernels_problem(build_config(build_dir), board, kernels)
    if problem:
        raise FirmwareError(problem + " (the configure output above shows Kconfig's warning)")


# runtime.cpp's line before its failure when AllocateTensors() failed in the whole arena.
ARENA_SHORT = re.compile(r"^arena_size=(\d+)\s*$", re.MULTILINE)
# The measuring runs' extra arena, in percent of the generated size: half as big again (another
# revision's extra scratch), then four times (a recorded figure far off); a model that needs more
# is refused, its arena size named.
ARENA_GROWTH = (50, 300)


def run_measuring_arena(app_dir: Path, board: str, build_dir: Path, folder: Path,
                        console: Any = None) -> tuple[str, dict[str, Any]]:
    """Run a QEMU build; record the arena the device used and, if that changed the header, rebuild and rerun.

    Returns the last run's output and SUMMARY fields. The rebuild compiles only the files that
    include ``model_arena.h``. When ``AllocateTensors()`` fails in the generated arena (another
    TFLM or CMSIS-NN revision than the one measured can ask for more scratch), a run in an arena
    half as big again, then if need be one four times as big, measures what this build needs
    (``TINYML_ARENA_EXTRA``, the runtime's files only); that figure is recorded like any other and
    the image is rebuilt without the extra.
    """
    output = run_qemu(build_dir)
    short = ARENA_SHORT.search(output)
    measuring = short is not None and SUMMARY.search(output) is None
    if measuring:
        size = int(short.group(1))
        tried = [size]
        for grow in ARENA_GROWTH:
            extra = device_arena_size(size * grow // 100)
            if console is not None:
                console.print(f"arena: AllocateTensors() failed on {board} in {tried[-1]:,} bytes (model_arena.h "
                              f"allocates {size:,} for this kernel build); measuring it in {size + extra:,}")
            tried.append(size + extra)
            build_app(app_dir, board, build_dir, folder, extra_cmake_args=(f"-DTINYML_ARENA_EXTRA={extra}",))
            output = run_qemu(build_dir)
            if SUMMARY.search(output) is not None:
                break
        else:
            _clear_arena_extra(app_dir, board, build_dir, folder)
            raise FirmwareError(f"AllocateTensors() failed on {board} in {size:,} bytes and again in "
                                f"{', '.join(f'{t:,}' for t in tried[1:])}: an op the resolver lacks, or a model too "
                                f"big for the board (CONFIG_TINYML_TFLM_ERROR_STRINGS=y prints TFLM's reason):\n"
                                + output[-2000:])
    summary = parse_summary(output)
    kernels, used, needed = summary.get("kernels"), summary.get("arena_used"), summary.get("arena_needed")
    if not (isinstance(kernels, str) and isinstance(used, int) and isinstance(needed, int) and needed):
        if measuring:
            _clear_arena_extra(app_dir, board, build_dir, folder)
            raise FirmwareError(f"AllocateTensors() failed on {board} in the generated arena and this app does "
                                f"not measure it (CONFIG_TINYML_ARENA_PROBE): raise 'arena_margin_percent'")
        return output, summary      # an app without the arena probe: nothing to record
    tflm = module_revisions(build_dir, ("tflite-micro",)).get("tflite-micro", "")
    if record_device_arena(folder, kernels, needed, used, canonical(board), tflm) or measuring:
        was = size if measuring else summary.get("arena_size", 0)
        if console is not None:
            console.print(f"arena: on {board} with the {kernels} kernels AllocateTensors() needs {needed:,} bytes "
                          f"({used:,} used afterwards); model_arena.h now allocates {device_arena_size(needed):,} "
                          f"for them (was {was:,}); rebuilding and running again")
        if measuring:
            _clear_arena_extra(app_dir, board, build_dir, folder)
        else:
            build_app(app_dir, board, build_dir, folder)
        output = run_qemu(build_dir)
        summary = parse_summary(output)
    return output, summary


def _clear_arena_extra(app_dir: Path, board: str, build_dir: Path, folder: Path) -> None:
    """Rebuild without the measuring run's extra arena bytes (the image users get never has them)."""
    build_app(app_dir, board, build_dir, folder, extra_cmake_args=("-DTINYML_ARENA_EXTRA=",))


def _cached_board(build_dir: Path) -> str | None:
    """The board a configured build folder was configured for, as it was given (None if none)."""
    return cached(build_dir, "CACHED_BOARD") or cached(build_dir, "BOARD")


def _check_build_dir(build_dir: Path, app_dir: Path, board: str) -> None:
    source = cached(build_dir, "CMAKE_HOME_DIRECTORY")
    cached_board = _cached_board(build_dir)
    if source and Path(source).resolve() != app_dir:
        raise FirmwareError(f"{build_dir} holds a build of {source}; use another folder or pristine")
    # Either naming: a folder configured for mps2/an521/cpu0 serves mps2_an521 (firmware/boards.py).
    if cached_board and not same_board(cached_board, board):
        raise FirmwareError(f"{build_dir} holds a build for {cached_board}; use another folder or pristine")


def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise FirmwareError(f"firmware {what} failed ({' '.join(cmd[:3])} ... exit {proc.returncode}):\n"
                            + proc.stdout[-4000:])
