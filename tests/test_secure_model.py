"""The model in the TrustZone secure world: samples/secure_model on mps2_an521_ns (TF-M + Zephyr).

The Zephyr tier builds the MNIST sample's generated model into the zephyr-tinyml TF-M partition and
the non-secure app around it (firmware/secure.py, as `tinyml build --secure` does), runs it in QEMU
and requires what the app proves: every test input through the PSA service equal to host TFLM's
bytes, a wrong-size input refused, the non-secure read of the model's secure address stopped by a
SecureFault; and of the images, that the non-secure one holds no 64-byte window of the model while
the secure one holds it whole. Skipped, saying why, where the workspace lacks TF-M's modules or the
Python running the build lacks TF-M's tools (the ``tfm`` extra). The Zephyr tier also runs
``tinyml eval --secure``: the eval app's frames through the same service, outputs against host TFLM.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from conftest import TEST_BUILDS
from zephyr_tinyml.cli import main
from zephyr_tinyml.device.eval_run import EvalOptions, run_eval
from zephyr_tinyml.errors import FirmwareError
from zephyr_tinyml.firmware.secure import (TFM_MODULES, WINDOW, build_secure, require_tfm, run_secure,
                                           secure_images, windows_found)
from zephyr_tinyml.firmware.zephyr_env import find_zephyr, workspace_modules
from zephyr_tinyml.model.sources import model_from_sources
from zephyr_tinyml.model.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
MNIST_GENERATED = REPO / "samples" / "mnist" / "generated"


def test_windows_found_counts_every_copied_window() -> None:
    model = bytes(range(200))
    assert windows_found(model, b"\xff" * 10 + model[50:130] + b"\xff") == 80 - WINDOW + 1
    assert windows_found(model, bytes(reversed(model))) == 0
    padded = model + bytes(100)                 # zero padding: in every image, not the model's
    assert windows_found(padded, bytes(300)) == 0


def test_secure_needs_a_non_secure_board() -> None:
    with pytest.raises(FirmwareError, match="non-secure board target built with TF-M"):
        require_tfm("mps2_an521")


def test_secure_eval_needs_a_non_secure_board() -> None:
    """Refused before any model or build is looked at."""
    spec = load_spec(REPO / "models" / "mnist.yaml")
    with pytest.raises(FirmwareError, match="non-secure board target built with TF-M"):
        run_eval(spec, EvalOptions(board="qemu_cortex_m3", secure=True), None, 0.0)


@pytest.fixture(scope="module")
def tfm_workspace() -> None:
    """Skips, saying why, unless this machine can build and run a TF-M board target."""
    zephyr, why = find_zephyr()
    if zephyr is None:
        pytest.skip(why)
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm is not installed")
    missing = [m for m in TFM_MODULES if m not in workspace_modules(zephyr)]
    if missing:
        pytest.skip(f"the Zephyr workspace lacks TF-M's modules {', '.join(missing)} (west.yml imports "
                    "them; `west update` fetches them)")
    if importlib.util.find_spec("jinja2") is None or importlib.util.find_spec("imgtool") is None:
        pytest.skip('TF-M\'s build needs its Python tools: pip install "zephyr-tinyml[tfm]"')


@pytest.mark.zephyr
@pytest.mark.slow
def test_secure_model_is_bit_exact_and_unreadable_from_the_normal_world(tfm_workspace) -> None:
    build = build_secure("mps2_an521_ns", TEST_BUILDS / "secure_model-mps2_an521_ns", MNIST_GENERATED)
    output, summary = run_secure(build)    # raises, quoting the output, on any missing evidence
    assert summary["images"] == 10 and summary["correct"] == 10
    assert output.count("CORRECT classification! ") == 10 and "WRONG" not in output

    images = secure_images(build, MNIST_GENERATED)   # raises if the secure image lacks the model
    assert images.model_windows_in_non_secure == 0
    assert images.non_secure.flash < 32 * 1024      # the app and test data: no TFLM, no model
    assert images.secure.flash > images.non_secure.flash


@pytest.mark.zephyr
@pytest.mark.slow
def test_secure_eval_streams_images_through_the_service(tfm_workspace, mnist_dir: Path, tmp_path: Path,
                                                        capsys) -> None:
    """``tinyml eval mnist -b mps2_an521_ns --secure``: the eval app without the model (TF-M's
    partition has it), every output equal to host TFLM's, the model identified by the checksum the
    partition reports."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "mnist.tflite").write_bytes(model_from_sources(MNIST_GENERATED / "model_data.cc"))
    build = TEST_BUILDS / "mnist_eval-mps2_an521_ns-secure"
    status = main(["eval", "mnist", "-b", "mps2_an521_ns", "--secure", "-n", "30", "--build-dir", str(build),
                   "--work-dir", str(work), "--generated-dir", str(MNIST_GENERATED), "--data-dir", str(mnist_dir),
                   "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0 and report["passed"] and report["mismatch_count"] == 0 and report["answered"] == 30
    assert report["device_accuracy"] == report["tflm_accuracy"]
    assert windows_found(model_from_sources(MNIST_GENERATED / "model_data.cc"),
                         (build / "zephyr" / "zephyr.bin").read_bytes()) == 0


def _image(folder: Path, name: str, payload: bytes) -> None:
    """A small Cortex-M33 image ``name``.elf/.map/.bin in ``folder``, holding ``payload`` in flash."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "t.ld").write_text("MEMORY { FLASH (rx) : ORIGIN = 0x10000, LENGTH = 0x40000\n"
                                 "         RAM (rwx) : ORIGIN = 0x20000000, LENGTH = 0x10000 }\n"
                                 "SECTIONS { .text : { *(.text*) *(.rodata*) } > FLASH\n"
                                 "           .bss : { *(.bss*) } > RAM }\n")
    array = ",".join(str(b) for b in payload) or "0"
    (folder / "t.c").write_text(f"const unsigned char payload[] = {{{array}}};\nchar scratch[256];\n"
                                "int main(void) { return payload[0] + scratch[0]; }\n")
    gcc = shutil.which("arm-none-eabi-gcc")
    subprocess.run([gcc, "-mcpu=cortex-m33", "-mthumb", "-Os", "-nostdlib", "-e", "main", "-T", "t.ld",
                    f"-Wl,-Map={name}.map", "-o", f"{name}.elf", "t.c"], cwd=folder, check=True)
    subprocess.run([gcc.replace("gcc", "objcopy"), "-O", "binary", f"{name}.elf", f"{name}.bin"], cwd=folder,
                   check=True)


def test_the_secure_step_reports_each_image_against_its_budget(tmp_path: Path, monkeypatch, capsys) -> None:
    """`tinyml build --secure` after the build (faked here): the images against their budgets, a breach
    exits 1 naming the image, and a build without TF-M's BL2 (CONFIG_TFM_BL2=n) has no bootloader row."""
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc is not installed")
    from zephyr_tinyml.commands import build as build_command
    from zephyr_tinyml.model.spec import Budget

    model = model_from_sources(MNIST_GENERATED / "model_data.cc")
    build = tmp_path / "build"
    _image(build / "tfm" / "bin", "tfm_s", model)
    _image(build / "zephyr", "zephyr", b"test data, no model")
    monkeypatch.setattr(build_command, "build_secure", lambda *args, **kwargs: build)
    spec = load_spec(REPO / "models" / "mnist.yaml")
    images = secure_images(build, MNIST_GENERATED)
    assert images.bootloader is None and images.model_windows_in_non_secure == 0
    assert images.secure.flash >= len(model) > images.non_secure.flash

    def step(budget: Budget) -> tuple[int, str]:
        budgeted = replace(spec, budgets={"lpcxpresso55s69_ns": budget})
        status = build_command.secure_build_step(budgeted, MNIST_GENERATED, False, tmp_path, "lpcxpresso55s69/lpc55s69/cpu0/ns",
                                                 build, False, Console(width=200))
        return status, capsys.readouterr().out

    roomy = Budget(4096, 4096, 65536, 4096)
    status, out = step(roomy)
    assert status == 0 and "over budget" not in out and "none (built without it)" in out
    status, out = step(replace(roomy, secure_flash=len(model) - 1))
    assert status == 1 and "over budget: the secure image's flash" in out
    assert "budgets.lpcxpresso55s69/lpc55s69/cpu0/ns" in out     # found under the board's other name
