"""``tinyml doctor``: what the tool needs, whether each piece is here, and how to get what is not.

Why: a missing toolchain piece otherwise surfaces deep inside a CMake run or as a vanished
command.  Every check does the real thing cheaply (imports and runs both interpreters on a model,
asks each program for its version) and every missing piece names the command that gets it.
The pieces are grouped by what needs them, so ``--for host`` can pass on a laptop without Zephyr.
"""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .firmware.boards import BOARDS, parse_version, target_for
from .firmware.secure import TFM_MODULES   # secure models: TF-M and what its build takes
from .firmware.zephyr_env import ZephyrEnv, find_zephyr, workspace_modules
from .model.tflite_model import tf_lite_interpreter

SUPPORTED_PYTHON = ((3, 10), (3, 13))
# What each intended command needs: `tinyml build --no-firmware` needs only the host pieces.
NEEDS = {
    "host": ("host",),
    "build": ("host", "firmware"),
    "run": ("host", "firmware", "qemu"),
}
APT = "sudo apt-get install"
# hal_stm32: nucleo_f446re, b_u585i_iot02a_ns; hal_nordic: qemu_cortex_m0, nrf5340dk_nrf5340_cpuapp_ns;
# hal_nxp: lpcxpresso55s69_ns.
MODULES = ("tflite-micro", "cmsis", "cmsis-nn", "hal_stm32", "hal_nordic", "hal_nxp")
# The optional extras: (extra, what the report calls it, who needs it).
EXTRAS = (("torch", "PyTorch extra (.pt2, .onnx models)", "only .pt2 and .onnx models need it"),
          ("tfm", "TF-M extra (secure models)", "only secure models, built with TF-M, need it"))


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    group: str        # host | firmware | qemu
    item: str
    ok: bool
    detail: str       # version or what was found
    fix: str = ""     # the command (or step) that gets it, when missing
    required: bool = True  # a missing optional piece is reported but never fails the doctor


def python_checks() -> list[Check]:
    """The interpreter and every declared dependency, with its version and requirement."""
    version = sys.version_info[:2]
    low, high = SUPPORTED_PYTHON
    checks = [Check("host", "Python", low <= version <= high, sys.version.split()[0],
                    "" if low <= version <= high else
                    f"use Python {low[0]}.{low[1]}-{high[0]}.{high[1]} for the virtual environment")]
    for requirement in _requirements():
        checks.append(_package_check(requirement))
    return checks


def _requirements() -> list[str]:
    try:
        declared = metadata.requires("zephyr-tinyml") or []
    except metadata.PackageNotFoundError:
        return []
    return [r for r in declared if "extra ==" not in r]


def _package_check(requirement: str) -> Check:
    from packaging.requirements import Requirement

    req = Requirement(requirement)
    fix = f"pip install '{req.name}{req.specifier}'  (or: pip install -e . in the checkout)"
    try:
        version = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        return Check("host", req.name, False, "not installed", fix)
    ok = not req.specifier or req.specifier.contains(version, prereleases=True)
    return Check("host", req.name, ok, version + ("" if ok else f" (need {req.specifier})"), "" if ok else fix)


def extra_checks() -> list[Check]:
    """The optional extras (``[torch]`` for PyTorch ``.pt2`` and ONNX models, ``[tfm]`` for TF-M's build
    tools): reported with the command that installs them, never failing the doctor, since only a
    build that uses them needs them."""
    from packaging.requirements import Requirement

    try:
        declared = metadata.requires("zephyr-tinyml") or []
    except metadata.PackageNotFoundError:
        return []
    checks = []
    for extra, label, who in EXTRAS:
        wanted = [Requirement(r) for r in declared if re.search(rf"""extra\s*==\s*['"]{extra}['"]""", r)]
        if not wanted:
            continue
        found, missing = [], []
        for req in wanted:
            try:
                version = metadata.version(req.name)
            except metadata.PackageNotFoundError:
                missing.append(f"{req.name} not installed")
                continue
            if req.specifier and not req.specifier.contains(version, prereleases=True):
                missing.append(f"{req.name} {version} (need {req.specifier})")
            else:
                found.append(f"{req.name} {version}")
        ok = not missing
        checks.append(Check("host", label, ok, ", ".join(found) if ok else "; ".join(missing),
                            "" if ok else f'pip install "zephyr-tinyml[{extra}]"  (optional: {who})',
                            required=False))
    return checks


def interpreter_checks() -> list[Check]:
    """Load and run a model in host TFLM and in LiteRT's reference kernels (not just import them)."""
    checks = []
    for name, run in (("host TFLM interpreter", _run_tflm), ("LiteRT reference interpreter", _run_litert)):
        try:
            detail = run(_tflm_sample_model())
            checks.append(Check("host", name, True, detail))
        except Exception as exc:  # report any failure as this check's result, with its message
            checks.append(Check("host", name, False, f"{type(exc).__name__}: {exc}"[:160],
                                "pip install --force-reinstall tflite-micro ai-edge-litert"))
    return checks


def _tflm_sample_model() -> bytes:
    """The float sine model tflite-micro's wheel ships for its own post-install check."""
    import tflite_micro

    path = Path(tflite_micro.__file__).parent / "python" / "tflite_micro" / "sine_float.tflite"
    if not path.is_file():
        raise RuntimeError(f"tflite-micro's sample model {path} is missing from its package")
    return path.read_bytes()


def _run_tflm(model: bytes) -> str:
    import numpy as np
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model)
    interpreter.set_input(np.array([[1.5]], dtype=np.float32), 0)
    interpreter.invoke()
    value = float(np.array(interpreter.get_output(0)).reshape(-1)[0])
    return f"ran sine model: sin(1.5) ~ {value:.2f}"


def _run_litert(model: bytes) -> str:
    import numpy as np

    interpreter = tf_lite_interpreter(model, reference=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.array([[1.5]], dtype=np.float32))
    interpreter.invoke()
    value = float(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).reshape(-1)[0])
    return f"ran sine model: sin(1.5) ~ {value:.2f}"


def zephyr_checks(start: Path | None = None) -> tuple[list[Check], ZephyrEnv | None]:
    """Zephyr found (and how), its version, and the modules the apps use."""
    env, how = find_zephyr(start)
    if env is None:
        return [Check("firmware", "Zephyr", False, how,
                      "west init -l zephyr-tinyml && west update  (in the folder holding this checkout), "
                      "or set ZEPHYR_BASE")], None
    checks = [Check("firmware", "Zephyr", True, f"{env.version} at {env.base} ({how})"),
              zephyr_support(env.version, env.base)]
    found = workspace_modules(env)
    for name in MODULES + TFM_MODULES:
        # A module.yml without ``name:`` is named after its folder: west's hal_stm32 lives in hal/stm32.
        aliases = {"cmsis": ("cmsis", "cmsis_6"), "hal_stm32": ("hal_stm32", "stm32"),
                   "hal_nordic": ("hal_nordic", "nordic"), "hal_nxp": ("hal_nxp", "nxp")}.get(name, (name,))
        path = next((found[a] for a in aliases if a in found), None)
        required = name in ("tflite-micro", "cmsis")
        checks.append(Check("firmware", f"module {name}", path is not None, str(path) if path else "not found",
                            "" if path else "west update  (west.yml lists it)", required=required))
    return checks, env


# Run here: 3.4.99 (kernel, modules, samples, twister). Read upstream, not run: 3.7 and 4.x's board
# files, module glue and pinned module revisions (docs/zephyr.md, "Zephyr releases").
OLDEST_SUPPORTED = (3, 4, 0)
NEWEST_CHECKED = (4, 4, 99)


def zephyr_support(version: str, base: Path | None = None) -> Check:
    """Whether this project supports the Zephyr found, and the names our boards have there."""
    found = parse_version(version)
    boards = ", ".join(f"{key} = {target_for(key, version, base)}" if target_for(key, version, base) != key else key
                       for key in BOARDS)
    if found < OLDEST_SUPPORTED:
        return Check("firmware", "Zephyr support", False, f"{version} is older than 3.4, which this project "
                     f"needs", "use the release west.yml pins (west update), 3.7 LTS")
    if found > NEWEST_CHECKED:
        return Check("firmware", "Zephyr support", True, f"{version} is newer than the releases this project was "
                     f"checked against (3.4 to 4.4); board names here: {boards}", required=False)
    return Check("firmware", "Zephyr support", True, f"supported; board names here: {boards}")


def toolchain_checks(env: ZephyrEnv | None) -> list[Check]:
    """The compiler Zephyr will use, its C library, and the build tools."""
    variables = dict(os.environ)
    if env is not None:
        variables = env.env()
    variant = variables.get("ZEPHYR_TOOLCHAIN_VARIANT", "")
    checks = []
    sdk = _zephyr_sdk(variables)
    if variant in ("", "zephyr") and sdk is not None:
        checks.append(Check("firmware", "toolchain", True, f"Zephyr SDK {sdk.name.removeprefix('zephyr-sdk-')} at {sdk}"))
    else:
        prefix = variables.get("GNUARMEMB_TOOLCHAIN_PATH")
        gcc = shutil.which("arm-none-eabi-gcc", path=f"{prefix}/bin" if prefix else None) or \
            shutil.which("arm-none-eabi-gcc")
        apt_gcc = f"{APT} gcc-arm-none-eabi picolibc-arm-none-eabi libstdc++-arm-none-eabi-picolibc, or install the Zephyr SDK"
        if gcc is None:
            checks.append(Check("firmware", "toolchain", False, "no Zephyr SDK, no arm-none-eabi-gcc", apt_gcc))
        else:
            checks.append(Check("firmware", "toolchain", True,
                                f"GNU Arm ({variant or 'gnuarmemb, chosen automatically'}): {_version([gcc, '--version'])}"))
            specs = _output([gcc, "-print-file-name=picolibc.specs"])
            has_picolibc = bool(specs) and Path(specs).is_absolute() and Path(specs).is_file()
            checks.append(Check("firmware", "picolibc for GNU Arm", has_picolibc,
                                specs if has_picolibc else "picolibc.specs not found",
                                "" if has_picolibc else f"{APT} picolibc-arm-none-eabi libstdc++-arm-none-eabi-picolibc"))
    for item, cmd, package, minimum in (("cmake", "cmake", "cmake", (3, 20)), ("ninja", "ninja", "ninja-build", None),
                                        ("dtc", "dtc", "device-tree-compiler", None)):
        path = shutil.which(cmd)
        version = _version([cmd, "--version"]) if path else "not found"
        ok = path is not None and (minimum is None or _tuple(version) >= minimum)
        checks.append(Check("firmware", item, ok, version + ("" if ok or not path else f" (need >= {minimum[0]}.{minimum[1]})"),
                            "" if ok else f"{APT} {package}"))
    qemu = shutil.which("qemu-system-arm")
    checks.append(Check("qemu", "QEMU (qemu-system-arm)", qemu is not None,
                        _version([qemu, "--version"]) if qemu else "not found",
                        "" if qemu else f"{APT} qemu-system-arm"))
    return checks


def _zephyr_sdk(variables: dict[str, str]) -> Path | None:
    if variables.get("ZEPHYR_SDK_INSTALL_DIR"):
        return Path(variables["ZEPHYR_SDK_INSTALL_DIR"])
    for root in (Path(variables.get("HOME", str(Path.home()))), Path("/opt")):
        found = sorted(root.glob("zephyr-sdk-*"))
        if found:
            return found[-1]
    return None


def _output(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        return f"cannot run {cmd[0]}: {exc}"
    return (done.stdout or done.stderr).strip()


def _version(cmd: list[str]) -> str:
    first = _output(cmd).splitlines()[:1]
    return first[0].strip() if first else "unknown version"


def _tuple(version: str) -> tuple[int, ...]:
    match = re.search(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def run_checks(start: Path | None = None) -> list[Check]:
    """Every check, host first."""
    checks = python_checks() + interpreter_checks() + extra_checks()
    zephyr, env = zephyr_checks(start)
    return checks + zephyr + toolchain_checks(env)


def failures(checks: list[Check], intent: str) -> list[Check]:
    """The required checks that failed among the groups ``intent`` needs."""
    groups = NEEDS[intent]
    return [c for c in checks if c.group in groups and c.required and not c.ok]
