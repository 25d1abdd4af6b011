"""Secure models: the generated model in the zephyr-tinyml TF-M partition, proved on the device.

``tinyml build <model> --board mps2_an521_ns --secure`` builds samples/secure_model: TF-M's secure
image holds the model, TFLM, the kernels and the arena (zephyr/tfm/tinyml_partition), the
non-secure Zephyr image only the test data, and the two talk through one PSA service. With
``--run`` the app's own evidence is required, line by line: every test input through the service
equal to host TFLM's bytes, a wrong-size input refused, and the non-secure read of the model's
secure address stopped by a SecureFault. Whatever runs, the images are checked: the non-secure one
must hold no 64-byte window of the model, the secure one the whole model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import FirmwareError
from ..layout import SECURE_APP
from ..model.sources import generated_model
from .boards import is_non_secure
from .build import build_app, parse_summary, require_zephyr
from .qemu import run_until_end
from .size import SizeReport, region_report
from .zephyr_env import workspace_modules

# What TF-M's build takes from the workspace (west.yml imports them).
TFM_MODULES = ("trusted-firmware-m", "tf-m-tests", "psa-arch-tests", "mbedtls", "mcuboot")
# The non-secure app's last words: TF-M's report of the fault, or a failure line.
SECURE_END = re.compile(r"SecureFault|PROJECT EXECUTION FAILED|ZEPHYR FATAL ERROR")
REFUSED = re.compile(r"an input of \d+ bytes for \d+ is REFUSED")
# TF-M's log writes a NUL between the two words.
SECURE_FAULT = re.compile(r"FATAL ERROR:.*SecureFault")
WINDOW = 64


@dataclass(frozen=True)
class SecureImages:
    """The three images of a secure build, each measured against its own regions (its map file)."""

    bootloader: SizeReport | None   # TF-M's BL2 (MCUboot); None in a build without it (CONFIG_TFM_BL2=n)
    secure: SizeReport      # TF-M with the partition: the model's share is in its split
    non_secure: SizeReport
    model_windows_in_non_secure: int


def windows_found(model: bytes, image: bytes, size: int = WINDOW) -> int:
    """How many of the model's ``size``-byte windows occur anywhere in ``image``.

    A window of one repeated byte (a flatbuffer's zero padding, zero biases) says nothing of the
    model and is found in any image, so it is not counted.
    """
    count = 0
    for start in range(len(model) - size + 1):
        window = model[start:start + size]
        if window.count(window[0]) != size and window in image:
            count += 1
    return count


def require_tfm(board: str) -> None:
    """A FirmwareError naming what is missing when this workspace cannot build ``board`` with TF-M."""
    if not is_non_secure(board):
        raise FirmwareError(f"--secure needs a non-secure board target built with TF-M, such as mps2_an521_ns "
                            f"(mps2/an521/cpu0/ns on Zephyr 3.7+), not {board}")
    zephyr = require_zephyr()
    missing = [m for m in TFM_MODULES if m not in workspace_modules(zephyr)]
    if missing:
        raise FirmwareError(f"the Zephyr workspace at {zephyr.workspace or zephyr.base} lacks TF-M's modules "
                            f"{', '.join(missing)}: west.yml imports them; run `west update`")


def build_secure(board: str, build_dir: Path, generated: Path, pristine: bool = False) -> Path:
    """Build samples/secure_model for ``board`` around ``generated``; returns the build folder."""
    require_tfm(board)
    # The arena is TF-M's (the secure partition's), not the non-secure image's: no check of it
    # against the zephyr,sram of the non-secure target.
    build_app(SECURE_APP, board, build_dir, generated, pristine=pristine, arena_in_image=False)
    return build_dir


def secure_images(build_dir: Path, generated: Path) -> SecureImages:
    """Sizes of the three images and the count of the model's windows in the non-secure one.

    Raises FirmwareError when the secure image does not hold the model (then the partition is not
    what was built, and the window count would prove nothing) or the non-secure one holds any of it.
    """
    model = generated_model(generated)
    paths = {"non-secure": build_dir / "zephyr" / "zephyr.bin", "secure": build_dir / "tfm" / "bin" / "tfm_s.bin"}
    for what, path in paths.items():
        if not path.is_file():
            raise FirmwareError(f"the {what} image {path} is missing: the secure build did not finish")
    if model not in paths["secure"].read_bytes():
        raise FirmwareError(f"TF-M's secure image {paths['secure']} does not hold the model of {generated}")
    windows = windows_found(model, paths["non-secure"].read_bytes())
    if windows:
        raise FirmwareError(f"the non-secure image {paths['non-secure']} holds {windows} {WINDOW}-byte windows of "
                            "the model: it must hold none")
    bl2 = build_dir / "tfm" / "bin" / "bl2.elf"
    return SecureImages(bootloader=region_report(bl2) if bl2.is_file() else None,
                        secure=region_report(build_dir / "tfm" / "bin" / "tfm_s.elf", model_dir=generated),
                        non_secure=region_report(build_dir / "zephyr" / "zephyr.elf"),
                        model_windows_in_non_secure=windows)


def run_secure(build_dir: Path, timeout: float = 300.0) -> tuple[str, dict]:
    """Run the secure build in QEMU until TF-M's SecureFault report; returns output and SUMMARY.

    Raises FirmwareError, quoting the output's end, for any missing piece of evidence.
    """
    output = run_until_end(build_dir, require_zephyr().env(), timeout=timeout, end=SECURE_END)
    summary = parse_summary(output)
    problems = []
    if summary.get("correct") != summary.get("images"):
        problems.append(f"{summary.get('correct')}/{summary.get('images')} test inputs equal host TFLM's")
    if not REFUSED.search(output):
        problems.append("the wrong-size input was not refused")
    if not SECURE_FAULT.search(output) or "NOT PROTECTED" in output:
        problems.append("reading the model from the non-secure world did not fault")
    if problems:
        raise FirmwareError("secure model on the device: " + "; ".join(problems) + "\n" + output[-2500:])
    return output, summary
