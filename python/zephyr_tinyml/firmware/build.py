"""Firmware stage: build the Zephyr app around the generated sources, and run it in QEMU.

Why CMake and Ninja rather than ``west build``: ``west build`` exists only inside a west
workspace, while the pipeline also runs from a plain checkout with ``ZEPHYR_BASE`` set.  The
build is the one ``west build`` would run (same CMake entry point, same cache variables), so a
build folder made here can be rebuilt with ``west build -d`` and the other way round.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import TinymlError
from .fit import check_fit
from .zephyr_env import ZephyrEnv, find_zephyr

# The generic app: runs any generated model (TINYML_MODEL_DIR) and checks it against host TFLM.
SAMPLE_APP = Path(__file__).resolve().parents[3] / "samples" / "run_model"

# Lines after which the app prints nothing more (see zephyr/lib/tinyml/self_test.cpp).
END_OF_RUN = re.compile(r"^SUMMARY |PROJECT EXECUTION FAILED|ZEPHYR FATAL ERROR")
SUMMARY = re.compile(r"^SUMMARY (?P<fields>.*)$", re.MULTILINE)


class FirmwareError(TinymlError):
    """The firmware did not configure, build or run."""


def require_zephyr() -> ZephyrEnv:
    """The Zephyr environment, or a :class:`FirmwareError` saying why there is none."""
    env, why = find_zephyr()
    if env is None:
        raise FirmwareError(why)
    return env


def build_app(app_dir: Path, board: str, build_dir: Path, generated_dir: Path,
              pristine: bool = False, zephyr: ZephyrEnv | None = None,
              extra_cmake_args: tuple[str, ...] = ()) -> Path:
    """Configure (if needed) and build ``app_dir`` for ``board``; returns ``zephyr/zephyr.elf``.

    ``pristine`` removes ``build_dir`` first; otherwise an existing build folder for another
    board or app is an error rather than a silent mix of two configurations.
    """
    zephyr = zephyr or require_zephyr()
    app_dir, build_dir, generated_dir = (Path(p).resolve() for p in (app_dir, build_dir, generated_dir))
    if not any(generated_dir.glob("*.cc")):
        raise FirmwareError(f"no generated sources (*.cc) in {generated_dir}: run `west tinyml build <model> --no-firmware` first")
    if pristine and build_dir.exists():
        shutil.rmtree(build_dir)
    _check_build_dir(build_dir, app_dir, board)

    env = zephyr.env()
    configure = ["cmake", "-G", "Ninja", "-S", str(app_dir), "-B", str(build_dir),
                 f"-DBOARD={board}", f"-DTINYML_MODEL_DIR={generated_dir}",
                 f"-DPython3_EXECUTABLE={sys.executable}", *extra_cmake_args]
    if extra_cmake_args or _cached(build_dir, "TINYML_MODEL_DIR") != str(generated_dir):
        _run(configure, env, "configure")
    check_fit(build_dir, generated_dir, board)
    _run(["cmake", "--build", str(build_dir)], env, "build")

    elf = build_dir / "zephyr" / "zephyr.elf"
    if not elf.is_file():
        raise FirmwareError(f"build finished but {elf} is missing")
    return elf


def run_qemu(build_dir: Path, timeout: float = 120.0, zephyr: ZephyrEnv | None = None) -> str:
    """Run a QEMU board's build (its ``run`` target) until the app's last line; returns the output.

    QEMU never exits on its own, so the run stops at the summary (or failure) line, or after
    ``timeout`` seconds, which is an error.
    """
    zephyr = zephyr or require_zephyr()
    proc = subprocess.Popen(["cmake", "--build", str(build_dir), "--target", "run"],
                            env=zephyr.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    lines: list[str] = []
    finished = False
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    # Raw reads of the pipe, split into lines here: a buffered readline() would keep the lines after
    # the first of a chunk in Python's buffer, where select() cannot see them, and the summary that
    # arrived together with the last output line would wait for output that never comes.
    fd, pending, eof = proc.stdout.fileno(), b"", False
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while not finished and time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, min(1.0, deadline - time.monotonic()))):
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                eof = True
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                line = raw.decode(errors="replace").rstrip("\r")
                lines.append(line)
                if END_OF_RUN.search(line):
                    finished = True
                    break
    exit_status = proc.poll()   # None while QEMU still runs (it never exits by itself)
    if eof and exit_status is None:
        try:                    # the output ended: the process is on its way out
            exit_status = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            exit_status = None
    _stop(proc)
    if pending.strip() and not finished:
        lines.append(pending.decode(errors="replace").rstrip("\r"))   # a last line without its newline
    output = "\n".join(lines) + "\n"
    if not finished:
        why = (f"did not finish within {timeout:.0f} s" if exit_status is None
               else f"ended (exit status {exit_status}) before the app's SUMMARY line")
        raise FirmwareError(f"QEMU run of {build_dir} {why}; "
                            f"last output:\n{''.join(l + chr(10) for l in lines[-20:])}")
    return output


def build_config(build_dir: Path) -> dict[str, str]:
    """The Kconfig values of a build (``zephyr/.config``), e.g. ``CONFIG_QEMU_TARGET`` -> ``y``."""
    path = Path(build_dir) / "zephyr" / ".config"
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("CONFIG_"):
            values[key] = value.strip('"')
    return values


def is_qemu_build(build_dir: Path) -> bool:
    """Whether the board of this build runs in QEMU (``mps2_an521`` does too, not only ``qemu_*``)."""
    return build_config(build_dir).get("CONFIG_QEMU_TARGET") == "y"


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


def build_step(spec: Any, result: Any, args: Any, console: Any) -> int:
    """``tinyml build``'s firmware step: build, optionally run (measuring the arena), report sizes.

    A run on a QEMU board reports the arena the device used for its kernel build; when that is not
    what ``model_arena.h`` was generated with, the measurement is recorded, the header regenerated
    and the app rebuilt (only the files that include it) and run again, so the image that passed is
    the one with the exact arena.
    """
    from .size import check_budget, region_report, to_table

    board = args.board
    folder = Path(result.generated.folder)
    build_dir = Path(args.build_dir) if args.build_dir else Path(result.work_dir) / board
    app_dir = Path(spec.app_dir) if getattr(spec, "app_dir", None) else SAMPLE_APP
    # Pristine when the generated sources changed: a new model can change the op set and sizes.
    pristine = bool(result.generated.changed) and build_dir.exists()
    elf = build_app(app_dir, board, build_dir, folder, pristine=pristine, extra_cmake_args=kernels_args(args.kernels))
    require_kernels(build_dir, board, args.kernels)
    status = 0
    output = ""
    if args.run:
        output, summary = run_measuring_arena(app_dir, board, build_dir, folder, console)
        console.print(output, markup=False, highlight=False, soft_wrap=True)   # the app's lines, unbroken
        if summary.get("correct") != summary.get("images"):
            status = 1
            from .op_trace import describe, trace_difference

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
    budget = spec.budgets.get(board) if getattr(spec, "budgets", None) else None
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
    # A build folder keeps CONFIG_ values given on an earlier command line: drop the other choices'.
    others = sorted({symbol for symbols in KERNEL_CHOICES.values() for symbol in symbols} - set(chosen))
    return tuple(f"-U{symbol}" for symbol in others) + tuple(f"-D{symbol}=y" for symbol in chosen)


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


def run_measuring_arena(app_dir: Path, board: str, build_dir: Path, folder: Path,
                        console: Any = None) -> tuple[str, dict[str, Any]]:
    """Run a QEMU build; record the arena the device used and, if that changed the header, rebuild and rerun.

    Returns the last run's output and SUMMARY fields. The rebuild compiles only the files that
    include ``model_arena.h``.
    """
    from ..model.arena import device_arena_size, record_device_arena

    output = run_qemu(build_dir)
    summary = parse_summary(output)
    kernels, used, needed = summary.get("kernels"), summary.get("arena_used"), summary.get("arena_needed")
    if not (isinstance(kernels, str) and isinstance(used, int) and isinstance(needed, int) and needed):
        return output, summary      # an app without the arena probe: nothing to record
    if record_device_arena(folder, kernels, needed, used, board):
        if console is not None:
            console.print(f"arena: on {board} with the {kernels} kernels AllocateTensors() needs {needed:,} bytes "
                          f"({used:,} used afterwards); model_arena.h now allocates {device_arena_size(needed):,} "
                          f"for them (was {summary.get('arena_size', 0):,}); rebuilding and running again")
        build_app(app_dir, board, build_dir, folder)
        output = run_qemu(build_dir)
        summary = parse_summary(output)
    return output, summary


def _cached(build_dir: Path, name: str) -> str | None:
    """A variable's value in the build folder's CMake cache, None when absent."""
    cache = build_dir / "CMakeCache.txt"
    if not cache.is_file():
        return None
    match = re.search(rf"^{re.escape(name)}:\w+=(.*)$", cache.read_text(errors="replace"), re.MULTILINE)
    return match.group(1) if match else None


def _check_build_dir(build_dir: Path, app_dir: Path, board: str) -> None:
    source = _cached(build_dir, "CMAKE_HOME_DIRECTORY")
    cached_board = _cached(build_dir, "CACHED_BOARD") or _cached(build_dir, "BOARD")
    if source and Path(source).resolve() != app_dir:
        raise FirmwareError(f"{build_dir} holds a build of {source}; use another folder or pristine")
    if cached_board and cached_board.split("/")[0] != board:
        raise FirmwareError(f"{build_dir} holds a build for {cached_board}; use another folder or pristine")


def _run(cmd: list[str], env: dict[str, str], what: str) -> None:
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise FirmwareError(f"firmware {what} failed ({' '.join(cmd[:3])} ... exit {proc.returncode}):\n"
                            + proc.stdout[-4000:])


def _stop(proc: subprocess.Popen) -> None:
    """Stop ninja and the QEMU it started (same process group), and close its output pipe."""
    stop_process_group(proc)
    if proc.stdout is not None:
        proc.stdout.close()


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group ``proc`` leads (ninja and the QEMU under it), SIGKILL after 5 s."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
