"""``tinyml bench``'s table and the kernel choice it passes to CMake (the builds themselves are the Zephyr tier's)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zephyr_tinyml.device.bench import BenchRow, render
from zephyr_tinyml.firmware.build import FirmwareError, kernels_args


def test_kernel_choice_replaces_the_other_one_in_a_build_folder() -> None:
    assert kernels_args(None) == ()
    # Zephyr keeps a command line's CONFIG_ values in the cache twice (CONFIG_ and CLI_CONFIG_): both go.
    assert kernels_args("reference") == ("-UCONFIG_TINYML_CMSIS_NN_DSP_PATHS", "-UCLI_CONFIG_TINYML_CMSIS_NN_DSP_PATHS",
                                         "-UCONFIG_TINYML_KERNELS_CMSIS_NN", "-UCLI_CONFIG_TINYML_KERNELS_CMSIS_NN",
                                         "-DCONFIG_TINYML_KERNELS_REFERENCE=y")
    assert kernels_args("cmsis-nn") == ("-UCONFIG_TINYML_CMSIS_NN_DSP_PATHS", "-UCLI_CONFIG_TINYML_CMSIS_NN_DSP_PATHS",
                                        "-UCONFIG_TINYML_KERNELS_REFERENCE", "-UCLI_CONFIG_TINYML_KERNELS_REFERENCE",
                                        "-DCONFIG_TINYML_KERNELS_CMSIS_NN=y")
    assert kernels_args("cmsis-nn-dsp") == ("-UCONFIG_TINYML_KERNELS_REFERENCE", "-UCLI_CONFIG_TINYML_KERNELS_REFERENCE",
                                            "-DCONFIG_TINYML_KERNELS_CMSIS_NN=y", "-DCONFIG_TINYML_CMSIS_NN_DSP_PATHS=y")
    with pytest.raises(FirmwareError, match="unknown kernels 'fast'"):
        kernels_args("fast")


def test_table_counts_instructions_and_time_at_the_clock() -> None:
    rows = [BenchRow("mnist", "qemu_cortex_m3", "cmsis-nn", 56_874, 12_392, 9_040, 8_948, 8_960, 2_515_781, 12_000_000,
                     "10/10"),
            BenchRow("mnist", "nucleo_f446re", "cmsis-nn", 60_000, 12_500, note="not a QEMU board: sizes only")]
    assert rows[0].us_at_clock == pytest.approx(2_515_781 / 12)
    markdown = render(rows, "markdown").splitlines()
    assert markdown[0].startswith("| model | board | kernels | flash B | RAM B |") and len(markdown) == 4
    assert "| 56,874 | 12,392 | 9,040 / 8,960 | 2.52 M | 209,648 (12) | 10/10 |  |" in markdown[2]
    rows[0].images_per_second = 95.94
    assert "| 10/10 | 95.9 |  |" in render(rows, "markdown").splitlines()[2]
    assert markdown[3].endswith("| not a QEMU board: sizes only |")
    data = json.loads(render(rows, "json"))
    assert data[0]["instructions"] == 2_515_781 and data[1]["arena_used"] == 0
    assert render(rows, "text").splitlines()[0].split()[:3] == ["model", "board", "kernels"]


def test_instructions_come_from_the_devices_calibration() -> None:
    """Cycles become instructions by the calibration loop's ratio, not by the clock Zephyr assumes:
    QEMU's mps3-an547 counts 32 MHz where Zephyr says 25, so µs / 0.064 would be 28 % high."""
    from zephyr_tinyml.device.bench import instructions_per_inference

    summary = {"cycles_per_inference": 1_300_000, "calibration_cycles": 500_000,
               "calibration_instructions": 1_000_000}
    assert instructions_per_inference(summary) == 2_600_000
    # A run without the calibration (an app of an older version, or no icount): no figure, not a guess.
    assert instructions_per_inference({"cycles_per_inference": 1_300_000, "us_per_inference": 52_000}) == 0
    assert instructions_per_inference(summary | {"calibration_cycles": 0}) == 0


def test_kernels_the_configuration_refused_are_named(tmp_path) -> None:
    """Zephyr 3.4 only warns when Kconfig refuses a CONFIG_ value from the command line and builds
    something else: the DSP paths asked for on a Cortex-M3 must not be measured as if they ran."""
    from zephyr_tinyml.firmware.build import build_config, kernels_problem, require_kernels

    (tmp_path / "zephyr").mkdir()
    # What Kconfig wrote for qemu_cortex_m3 given -DCONFIG_TINYML_CMSIS_NN_DSP_PATHS=y (it is M33/M55-only).
    (tmp_path / "zephyr" / ".config").write_text("CONFIG_TINYML_KERNELS_CMSIS_NN=y\n"
                                                 "# CONFIG_TINYML_KERNELS_REFERENCE is not set\n")
    assert kernels_problem(build_config(tmp_path), "qemu_cortex_m3", "cmsis-nn") is None
    assert kernels_problem(build_config(tmp_path), "qemu_cortex_m3", None) is None
    problem = kernels_problem(build_config(tmp_path), "qemu_cortex_m3", "cmsis-nn-dsp")
    assert problem == ("--kernels cmsis-nn-dsp on qemu_cortex_m3: Kconfig refused CONFIG_TINYML_CMSIS_NN_DSP_PATHS; "
                       "cmsis-nn-dsp needs a Cortex-M33 or Cortex-M55 board (mps2_an521, mps3_an547)")
    with pytest.raises(FirmwareError, match="Kconfig refused CONFIG_TINYML_CMSIS_NN_DSP_PATHS"):
        require_kernels(tmp_path, "qemu_cortex_m3", "cmsis-nn-dsp")
    # A Cortex-A9: Kconfig keeps the reference kernels whatever the command line asked.
    (tmp_path / "zephyr" / ".config").write_text("CONFIG_TINYML_KERNELS_REFERENCE=y\n")
    assert kernels_problem(build_config(tmp_path), "qemu_cortex_a9", "cmsis-nn") == (
        "--kernels cmsis-nn on qemu_cortex_a9: Kconfig refused CONFIG_TINYML_KERNELS_CMSIS_NN; cmsis-nn needs a "
        "Cortex-M board and the cmsis-nn module in the workspace")


def test_a_failed_build_is_noted_with_its_reason() -> None:
    from zephyr_tinyml.device.bench import failure_reason

    kconfig = ("firmware configure failed (cmake -G Ninja ... exit 1):\nParsing Kconfig\n\nwarning: HAS_NRFX (defined "
               "at modules/hal_nordic/nrfx/Kconfig:4) has direct dependencies 0\nerror: Aborting due to Kconfig warnings")
    assert failure_reason(kconfig) == ("warning: HAS_NRFX (defined at modules/hal_nordic/nrfx/Kconfig:4) has direct "
                                       "dependencies 0")
    link = ("firmware build failed (cmake --build ... exit 1):\n/usr/bin/arm-none-eabi-ld: region `RAM' overflowed "
            "by 1024 bytes\ncollect2: error: ld returned 1 exit status")
    assert failure_reason(link) == "/usr/bin/arm-none-eabi-ld: region `RAM' overflowed by 1024 bytes"
    qemu = ("QEMU run of build ended (exit status 1) before the app's SUMMARY line; last output:\n[QEMU] CPU: cortex-a9\n"
            "/bin/sh: 1: QEMU-NOTFOUND: not found\nFAILED: zephyr/CMakeFiles/run_qemu")
    assert failure_reason(qemu) == "/bin/sh: 1: QEMU-NOTFOUND: not found"
    assert failure_reason("just one line") == "just one line"
    # QEMU's own warning about an unconnected network card is never the reason.
    silent = ("QEMU (build): no answer to the info request within 30 s. Is samples/mnist_eval running there?\n"
              "qemu-system-arm: warning: nic lan9118.0 has no peer\n*** Booting Zephyr OS build ***")
    assert failure_reason(silent) == silent.splitlines()[0]


def test_the_uart_evaluation_gets_the_eval_commands_defaults() -> None:
    """``tinyml bench --eval N`` runs ``tinyml eval``'s own code with its own defaults, on the build it made."""
    import argparse

    from zephyr_tinyml.commands.eval import add_command, options_of
    from zephyr_tinyml.device.eval_run import EvalOptions

    parser = argparse.ArgumentParser(prog="tinyml")
    add_command(parser.add_subparsers())
    args = parser.parse_args(["eval", "mnist", "-n", "5", "--board", "mps2_an521", "--build-dir", "b", "--no-build"])
    options = options_of(args)
    assert (args.model, options.images, options.board, options.build_dir, options.no_build) == \
        ("mnist", 5, "mps2_an521", Path("b"), True)
    assert options.timeout is None and options.retries == 3 and options.port is None and not options.all
    # What bench builds from EvalOptions' own defaults is what the command line gives by default.
    assert options_of(parser.parse_args(["eval", "mnist"])) == EvalOptions()