"""firmware: build the sample around generated sources, run it in QEMU, read its summary.

The Zephyr tier builds samples/mnist for qemu_cortex_m3 (minutes: TFLM is compiled from source)
and runs it, and runs a model trained elsewhere (TFLM's hello_world) through the generic app
samples/run_model, and an image that corrupts one tensor on purpose, to check that the op whose
output differs from host TFLM's is named; it is skipped, with the reason, when no Zephyr workspace
is found.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import TEST_BUILDS
from zephyr_tinyml.firmware.build import SAMPLE_APP, FirmwareError, build_app, parse_summary, run_qemu
from zephyr_tinyml.firmware.size import check_budget, region_report
from zephyr_tinyml.model.arena import device_arena_size
from zephyr_tinyml.model.spec import load_spec
from zephyr_tinyml.firmware.zephyr_env import ZephyrEnv, find_zephyr

REPO = Path(__file__).resolve().parents[1]
MNIST_APP = REPO / "samples" / "mnist"
HELLO_WORLD = REPO.parent / "shared" / "foreign-models" / "hello_world_int8.tflite"

OUTPUT = """\
*** Booting Zephyr OS build 5bcc92171dfc ***
model mnist: 9016 bytes, arena used 9348 of 11776 bytes: ARENA OK
CORRECT classification! 7
WRONG classification! expected 2 got 3
SUMMARY correct=9/10 arena_used=9348 arena_size=11776 cycles_per_inference=23800000 us_per_inference=1983333
"""


def test_parse_summary() -> None:
    assert parse_summary(OUTPUT) == {"correct": 9, "images": 10, "arena_used": 9348,
                                     "arena_size": 11776, "cycles_per_inference": 23800000,
                                     "us_per_inference": 1983333}


def test_no_summary_is_an_error() -> None:
    with pytest.raises(FirmwareError, match="no SUMMARY"):
        parse_summary("PROJECT EXECUTION FAILED\n")


def test_missing_generated_sources(tmp_path: Path) -> None:
    zephyr, why = find_zephyr()
    if zephyr is None:
        pytest.skip(why)
    with pytest.raises(FirmwareError, match="no generated sources"):
        build_app(SAMPLE_APP, "qemu_cortex_m3", tmp_path / "build", tmp_path / "empty")


@pytest.fixture(scope="module")
def qemu_build() -> Path:
    """samples/mnist built once for qemu_cortex_m3 around the committed generated sources.

    In build/tests/ (conftest.py: compiled through ccache, shared with the other apps' builds):
    an incremental build when the folder is left from an earlier run."""
    zephyr, why = find_zephyr()
    if zephyr is None:
        pytest.skip(why)
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm is not installed")
    generated = MNIST_APP / "generated"
    if not any(generated.glob("*.cc")):
        pytest.skip(f"no generated sources in {generated}")
    build = TEST_BUILDS / "mnist-qemu_cortex_m3"
    build_app(MNIST_APP, "qemu_cortex_m3", build, generated, zephyr=zephyr)
    return build


def _stand_in_board(tmp_path: Path, board_script: str) -> Path:
    """A configured CMake build folder whose ``run`` target runs ``board_script`` in place of QEMU."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    import subprocess

    source, build = tmp_path / "src", tmp_path / "build"
    source.mkdir()
    (source / "board.py").write_text(board_script)
    (source / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.20)\nproject(board NONE)\n"
        f"add_custom_target(run COMMAND \"{sys.executable}\" ${{CMAKE_SOURCE_DIR}}/board.py USES_TERMINAL)\n")
    subprocess.run(["cmake", "-S", str(source), "-B", str(build)], check=True, capture_output=True)
    return build


def test_run_ends_at_a_summary_that_arrives_with_other_lines(tmp_path: Path) -> None:
    """The device's last lines often come in one write; the run must see the summary among them.

    A real CMake project stands in for the board: its ``run`` target prints the lines in one write and
    then, like QEMU, never exits.  (A buffered readline() once left the summary unseen until the
    timeout.)
    """
    build = _stand_in_board(tmp_path,
                            "import sys, time\n"
                            "sys.stdout.write('CORRECT output 8\\nCORRECT output 9\\n"
                            "SUMMARY correct=10/10 arena_used=6788\\n')\n"
                            "sys.stdout.flush()\n"
                            "time.sleep(60)\n")
    output = run_qemu(build, timeout=20, zephyr=ZephyrEnv(base=tmp_path, workspace=None, found_by="test"))
    assert parse_summary(output) == {"correct": 10, "images": 10, "arena_used": 6788}
    assert "CORRECT output 9" in output


def test_run_that_ends_without_a_summary_says_so(tmp_path: Path) -> None:
    """QEMU that quits early (bad image, missing binary) is reported as such, with its last output."""
    build = _stand_in_board(tmp_path, "print('qemu: could not load kernel')\nraise SystemExit(3)\n")
    with pytest.raises(FirmwareError, match=r"ended \(exit status \d+\) before the app's SUMMARY line") as error:
        run_qemu(build, timeout=20, zephyr=ZephyrEnv(base=tmp_path, workspace=None, found_by="test"))
    assert "qemu: could not load kernel" in str(error.value)


@pytest.mark.zephyr
@pytest.mark.slow
def test_sample_fits_budget_and_classifies_every_image(qemu_build: Path) -> None:
    report = region_report(qemu_build / "zephyr" / "zephyr.elf")
    budget = load_spec(REPO / "models" / "mnist.yaml").budgets["qemu_cortex_m3"]
    assert check_budget(report, budget) == []
    assert report.flash <= 80 * 1024 and report.ram <= 18 * 1024, (report.flash, report.ram)

    output = run_qemu(qemu_build, timeout=180)
    summary = parse_summary(output)
    assert summary["images"] >= 10 and summary["correct"] == summary["images"]
    assert output.count("CORRECT classification! ") == summary["images"] and "WRONG" not in output
    assert sorted({line.split()[-1] for line in output.splitlines() if line.startswith("CORRECT")}) == \
        [str(d) for d in range(10)]
    assert summary["arena_used"] <= summary["arena_needed"] <= summary["arena_size"]

    # The op profile (CONFIG_TINYML_OP_PROFILE): every op of the model, adding up to one inference.
    from zephyr_tinyml.firmware.op_profile import op_costs
    from zephyr_tinyml.model.sources import generated_model

    costs = op_costs(generated_model(MNIST_APP / "generated"), output, summary)
    assert [c.op for c in costs] == ["CONV_2D", "MAX_POOL_2D", "CONV_2D", "MAX_POOL_2D", "RESHAPE",
                                     "FULLY_CONNECTED", "FULLY_CONNECTED"]
    total = sum(c.cycles for c in costs)
    assert 0.97 * summary["cycles_per_inference"] <= total <= 1.03 * summary["cycles_per_inference"], total
    assert all(c.instructions > 0 for c in costs)


@pytest.mark.zephyr
@pytest.mark.slow
def test_over_budget_fails_with_the_table(qemu_build: Path, tmp_path: Path) -> None:
    """A spec whose budget is below the real size fails: exit 1, the table, and by how much."""
    import subprocess
    import sys

    import yaml

    data = yaml.safe_load((REPO / "models" / "mnist.yaml").read_text())
    data["budgets"]["qemu_cortex_m3"] = {"flash": 40_000, "ram": 8_000}
    spec = tmp_path / "tight.yaml"
    spec.write_text(yaml.safe_dump(data))
    run = subprocess.run([sys.executable, "-m", "zephyr_tinyml.firmware.size", str(qemu_build / "zephyr" / "zephyr.elf"),
                          "--spec", str(spec), "--board", "qemu_cortex_m3"],
                         capture_output=True, text=True, env={**__import__("os").environ,
                                                              "PYTHONPATH": str(REPO / "python")})
    assert run.returncode == 1, run.stdout + run.stderr
    assert "BUDGET EXCEEDED (qemu_cortex_m3): flash" in run.stdout and "RAM" in run.stdout
    assert "| flash |" in run.stdout and "over by" in run.stdout
    assert "| model weights |" in run.stdout and "| tensor arena |" in run.stdout and "| TFLM code |" in run.stdout


@pytest.mark.zephyr
@pytest.mark.slow
def test_model_from_elsewhere_runs_bit_exact_on_the_device(tmp_path: Path) -> None:
    """`tinyml build hello_world_int8.tflite --run`: no spec, no data; the device equals host TFLM."""
    import os
    import subprocess
    import sys

    zephyr, why = find_zephyr()
    if zephyr is None:
        pytest.skip(why)
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm is not installed")
    if not HELLO_WORLD.is_file():
        pytest.skip(f"{HELLO_WORLD} not found (../shared/foreign-models beside the repository)")
    run = subprocess.run([sys.executable, "-m", "zephyr_tinyml.cli", "build", str(HELLO_WORLD), "--run",
                          "--board", "qemu_cortex_m3", "--work-dir", str(tmp_path / "work"),
                          "--build-dir", str(TEST_BUILDS / "run_model-qemu_cortex_m3")],
                         capture_output=True, text=True, timeout=1800,
                         env={**os.environ, "PYTHONPATH": str(REPO / "python")})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.count("CORRECT output ") == 10 and "WRONG" not in run.stdout
    assert "SUMMARY correct=10/10 " in run.stdout and "ARENA OK" in run.stdout
    # The arena was measured on the device and the image that passed allocates exactly that (+ 1 %):
    # TFLM needs more than arena_used_bytes() while it plans (hello_world: 1,120 needed, 724 used).
    summary = parse_summary(run.stdout)
    assert summary["arena_used"] < summary["arena_needed"] <= summary["arena_size"]
    assert summary["arena_size"] == device_arena_size(summary["arena_needed"])
    header = (tmp_path / "work" / "generated" / "model_arena.h").read_text()
    assert f"AllocateTensors() needs {summary['arena_needed']} bytes on qemu_cortex_m3" in header


@pytest.mark.zephyr
@pytest.mark.slow
def test_an_lstm_over_image_rows_classifies_every_digit_from_a_fresh_state(tmp_path: Path, mnist_dir: Path) -> None:
    """`tinyml build mnist_lstm_int8.tflite --data-dir ... --run`: an LSTM (variable tensors) on the device.

    The embedded digits run in class order; without a reset of the LSTM's state before each
    inference the "1" after the "0" comes out a 7 (measured), on the device as on the host.
    """
    import os
    import subprocess
    import sys

    zephyr, why = find_zephyr()
    if zephyr is None:
        pytest.skip(why)
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm is not installed")
    run = subprocess.run([sys.executable, "-m", "zephyr_tinyml.cli", "build", str(REPO / "tests" / "fixtures" /
                          "mnist_lstm_int8.tflite"), "--data-dir", str(mnist_dir), "--run", "--board", "qemu_cortex_m3",
                          "--work-dir", str(tmp_path / "work"),
                          "--build-dir", str(TEST_BUILDS / "run_model-qemu_cortex_m3")],
                         capture_output=True, text=True, timeout=1800,
                         env={**os.environ, "PYTHONPATH": str(REPO / "python")})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.count("CORRECT classification! ") == 10 and "WRONG" not in run.stdout
    assert "SUMMARY correct=10/10 " in run.stdout


@pytest.mark.zephyr
@pytest.mark.slow
def test_a_kernel_that_is_not_bit_exact_is_named(qemu_build: Path) -> None:
    """An image that corrupts the second convolution's output (TINYML_TEST_CORRUPT_TENSOR, a
    definition on the runtime library only: seconds to rebuild) fails its self test, traces the
    first wrong input op by op, and the host names that op; the build folder is restored after."""
    from zephyr_tinyml.model.op_trace import describe, trace_difference
    from zephyr_tinyml.model.sources import generated_model
    from zephyr_tinyml.model.verify import all_tensors_model

    generated = MNIST_APP / "generated"
    ops = all_tensors_model(generated_model(generated))[1]
    conv = [op for op in ops if op["op"] == "CONV_2D"][1]
    try:
        build_app(MNIST_APP, "qemu_cortex_m3", qemu_build, generated,
                  extra_cmake_args=(f"-DTINYML_TEST_CORRUPT_TENSOR={conv['tensor']}",))
        output = run_qemu(qemu_build, timeout=180)
    finally:
        build_app(MNIST_APP, "qemu_cortex_m3", qemu_build, generated, extra_cmake_args=("-DTINYML_TEST_CORRUPT_TENSOR=",))
    summary = parse_summary(output)
    assert summary["correct"] < summary["images"] and "WRONG output: test 0 " in output
    assert output.count("OPTRACE begin test=") == 1          # the first wrong input only
    trace, difference = trace_difference(generated, output)
    assert trace.complete and difference is not None
    assert (difference["op_index"], difference["op"], difference["tensor"]) == (conv["op_index"], "CONV_2D", conv["tensor"])
    assert difference["differing"] > 0 and difference["max_gap"] >= 1
    assert f"op {conv['op_index']} of {len(ops)}, CONV_2D" in describe(difference, "cmsis-nn", "test input 0")


@pytest.mark.zephyr
@pytest.mark.slow
def test_an_arena_too_small_for_the_kernels_is_measured_and_fixed(qemu_build: Path, tmp_path: Path) -> None:
    """Another TFLM or CMSIS-NN revision can need more arena than the one measured (3.7's pins on
    Helium: 9,280 bytes against 9,056): a run whose AllocateTensors() fails is measured once in a
    bigger arena (TINYML_ARENA_EXTRA, the runtime's files only), the need is recorded, and the image
    that passes allocates exactly that again, without the extra."""
    from zephyr_tinyml.firmware.build import run_measuring_arena
    from zephyr_tinyml.firmware.build_folder import cached
    from zephyr_tinyml.model.arena import FACTS, record_device_arena

    generated = tmp_path / "generated"
    shutil.copytree(MNIST_APP / "generated", generated)
    # Far too small, recorded as the committed record's own board and TFLM revision (a record of
    # another revision that needs no more would be kept).
    recorded = json.loads((generated / FACTS).read_text())["arena"]["device"]["cmsis-nn"]
    assert record_device_arena(generated, "cmsis-nn", 4000, 3990, recorded["board"],
                               recorded.get("tflite_micro", ""))
    try:
        build_app(MNIST_APP, "qemu_cortex_m3", qemu_build, generated)
        output, summary = run_measuring_arena(MNIST_APP, "qemu_cortex_m3", qemu_build, generated)
        assert summary["correct"] == summary["images"] == 10, output
        assert summary["kernels"] == "cmsis-nn" and summary["arena_needed"] > 4000
        assert summary["arena_size"] == device_arena_size(summary["arena_needed"])
        recorded = json.loads((generated / FACTS).read_text())["arena"]["device"]["cmsis-nn"]
        assert recorded["needed_bytes"] == summary["arena_needed"]
        assert not cached(qemu_build, "TINYML_ARENA_EXTRA")
    finally:
        build_app(MNIST_APP, "qemu_cortex_m3", qemu_build, MNIST_APP / "generated")
