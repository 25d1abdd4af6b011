"""The evaluation firmware in QEMU: damaged frames are refused by sequence number, the device keeps
serving, a stopped device times out, a dead one ends the run with a report, and outputs equal host TFLM.

Needs a Zephyr workspace, the Arm toolchain and qemu-system-arm; skipped with the reason otherwise.
The app is built once into build/tests/ of the repository (gitignored) and rebuilt
incrementally, because compiling TFLM from scratch takes minutes; ``TINYML_EVAL_BUILD_DIR`` names
another build folder of samples/mnist_eval for qemu_cortex_m3 to reuse (a twister one works too), and
``TINYML_EVAL_GENERATED_DIR`` other model sources than samples/mnist/generated to compile in.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from zephyr_tinyml.device import protocol as proto
from zephyr_tinyml.device.evaluate import compare, stream
from zephyr_tinyml.model.sources import model_from_sources
from zephyr_tinyml.device.link import QemuLink
from zephyr_tinyml.device.session import Session
from zephyr_tinyml.model.verify import run_tflm

from conftest import TEST_BUILDS
from damaged_frames import DAMAGED

REPO = Path(__file__).resolve().parents[1]
EVAL_APP = REPO / "samples" / "mnist_eval"
GENERATED = Path(os.environ.get("TINYML_EVAL_GENERATED_DIR", REPO / "samples" / "mnist" / "generated"))
BUILD = Path(os.environ.get("TINYML_EVAL_BUILD_DIR", TEST_BUILDS / "mnist_eval-qemu_cortex_m3"))

pytestmark = [pytest.mark.zephyr]


@pytest.fixture(scope="module")
def firmware():
    """``(build dir, Zephyr env)`` of the eval app for qemu_cortex_m3."""
    from zephyr_tinyml.firmware.build import build_app
    from zephyr_tinyml.firmware.zephyr_env import find_zephyr

    zephyr, why = find_zephyr()
    if zephyr is None:
        pytest.skip(why)
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm is not installed")
    if not (GENERATED / "model_data.cc").is_file():
        pytest.skip(f"no generated model in {GENERATED}; run `tinyml build mnist`")
    build_app(EVAL_APP, "qemu_cortex_m3", BUILD, GENERATED, zephyr=zephyr)
    return BUILD, zephyr


@pytest.fixture(scope="module")
def reference(mnist):
    """The compiled-in model, 40 real test images as int8, and host TFLM's outputs for them."""
    from zephyr_tinyml.model.spec import load_spec
    from zephyr_tinyml.model.tflite_model import inspect_model
    from zephyr_tinyml.model.verify import quantize_input

    model = model_from_sources(GENERATED / "model_data.cc")
    spec = load_spec(REPO / "models" / "mnist.yaml")
    inputs = quantize_input(mnist.x_test[:40], spec, inspect_model(model))
    return {"model": model, "inputs": inputs.reshape(40, -1), "labels": mnist.y_test[:40],
            "tflm": run_tflm(model, inputs), "labels_text": spec.dataset.labels}


@pytest.fixture()
def device(firmware):
    """A fresh QEMU running the app, past the handshake."""
    build, zephyr = firmware
    link = QemuLink(build, zephyr.env())
    session = Session(link, timeout=10.0, retries=2)
    info = session.handshake(boot_timeout=60.0)
    yield session, info
    link.close()


def _reply(link, timeout: float = 10.0) -> proto.Reply | None:
    """The next protocol reply, skipping console text; ``None`` when nothing comes in time."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        line = link.read_line(remaining)
        if line is None:
            return None
        reply = proto.parse_device_line(line)
        if reply is not None:
            return reply
    return None


def test_info_describes_the_compiled_model(device, reference) -> None:
    _, info = device
    assert info.model_size == len(reference["model"]) and info.model_crc == proto.crc16_fast(reference["model"])
    assert (info.input_size, info.classes) == (784, 10) and 0 < info.arena_used <= info.arena_size


@pytest.mark.parametrize("fault", sorted(DAMAGED))
def test_damaged_frame_is_refused_then_next_answered(device, reference, fault: str) -> None:
    session, _ = device
    seq = session.next_seq()
    session.link.write_line(DAMAGED[fault](seq, reference["inputs"][0]))
    reply = _reply(session.link)
    assert isinstance(reply, proto.ErrorReply), reply
    assert (reply.seq, reply.code.label) == (seq, fault)

    answer = session.request(reference["inputs"][2])
    assert answer.ok and answer.attempts == 1, answer.problems
    assert list(answer.reply.outputs) == reference["tflm"][2].tolist()


def test_short_frame_and_console_text(device, reference) -> None:
    session, _ = device
    session.link.write_line("hello from a terminal, not a frame")
    session.link.write_line("@5451")
    reply = _reply(session.link)
    assert isinstance(reply, proto.ErrorReply) and reply.code == proto.ErrorCode.SHORT
    assert reply.seq == proto.UNKNOWN_SEQ  # nothing answered the console line
    assert session.request(reference["inputs"][3]).ok


def test_stopped_device_times_out_then_recovers(device, reference) -> None:
    session, _ = device
    qemu = session.link.process
    os.killpg(qemu.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        lost = session.request(reference["inputs"][4], timeout=0.5, retries=1)
        assert time.monotonic() - started < 3
    finally:
        os.killpg(qemu.pid, signal.SIGCONT)
    assert not lost.ok and lost.problems == ["attempt 1: no reply within 0.5 s", "attempt 2: no reply within 0.5 s"]

    # The frames sent while stopped are answered late; those answers are stale, never reused.
    answer = session.request(reference["inputs"][5])
    assert answer.ok and list(answer.reply.outputs) == reference["tflm"][5].tolist()
    assert answer.reply.seq == answer.seq


def test_dead_device_ends_the_run_with_a_full_account(device, reference) -> None:
    session, _ = device
    inputs = reference["inputs"][:12]
    answered = 0

    def kill_after_five(done: int, total: int, failed: int) -> None:
        nonlocal answered
        answered = done
        if done == 5:
            os.killpg(session.link.process.pid, signal.SIGKILL)

    outcome = stream(session, inputs, kill_after_five)
    assert len(outcome.results) == 5 and outcome.aborted
    assert len(outcome.results) + len(outcome.failed) + len(outcome.not_sent) == 12
    assert set(outcome.results).isdisjoint(outcome.failed)


def test_outputs_equal_host_tflm(device, reference) -> None:
    session, info = device
    outcome = stream(session, reference["inputs"])
    report = compare(outcome, np.arange(40), reference["labels"], reference["tflm"], reference["tflm"], None,
                     info, reference["labels_text"], "qemu_cortex_m3", session.link.description)
    assert report.passed, (report.failed, report.mismatches[:2])
    assert report.device_accuracy == report.tflm_accuracy
    assert report.cycles_min > 0


def test_cli_report(firmware, reference, mnist_dir: Path, tmp_path: Path, capsys) -> None:
    """``tinyml eval`` end to end: builds (incrementally), runs QEMU, prints JSON, writes the files."""
    import json

    from zephyr_tinyml.cli import main

    build, _ = firmware
    work = tmp_path / "work"
    work.mkdir()
    (work / "mnist.tflite").write_bytes(reference["model"])  # no .keras: float accuracy is left out
    status = main(["eval", "mnist", "-n", "20", "--build-dir", str(build), "--work-dir", str(work),
                   "--generated-dir", str(GENERATED), "--data-dir", str(mnist_dir), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0 and report["passed"] and report["mismatch_count"] == 0
    assert report["answered"] == 20 and report["float_accuracy"] is None
    assert report["device_accuracy"] == report["tflm_accuracy"]
    assert (work / "eval.json").is_file() and (work / "eval-confusion.png").is_file()


def test_cli_evaluates_a_16x8_model(firmware, mnist_dir: Path, tmp_path: Path, capsys) -> None:
    """A model in TFLite's 16x8 mode (tests/fixtures/mnist_16x8.tflite: int16 input, activations and
    scores): `tinyml build` it, then `tinyml eval` streams int16 frames (two bytes a value) and every
    int16 score vector equals host TFLM's. Its own build folder: another model's sources."""
    import json

    from zephyr_tinyml.cli import main

    model = REPO / "tests" / "fixtures" / "mnist_16x8.tflite"
    work = tmp_path / "work"
    assert main(["build", str(model), "--data-dir", str(mnist_dir), "--work-dir", str(work), "--no-firmware"]) == 0
    capsys.readouterr()
    status = main(["eval", str(model), "-n", "30", "--data-dir", str(mnist_dir), "--work-dir", str(work),
                   "--build-dir", str(TEST_BUILDS / "mnist_eval-16x8-qemu_cortex_m3"), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0 and report["passed"] and report["answered"] == 30 and report["tensor_type"] == "int16"
    assert report["device_accuracy"] == report["tflm_accuracy"] >= 90.0
    assert report["device"]["input_size"] == 784  # values; the frames carried 1,568 bytes each


def test_cli_names_the_op_of_a_kernel_that_is_not_bit_exact(firmware, reference, mnist_dir: Path,
                                                             tmp_path: Path, capsys) -> None:
    """An eval app that corrupts the second convolution's output (TINYML_TEST_CORRUPT_TENSOR, on the
    runtime library only: seconds to rebuild): ``tinyml eval`` fails, sends the first differing image
    as a trace request and names that op. The build folder is restored after."""
    import json

    from zephyr_tinyml.cli import main
    from zephyr_tinyml.firmware.build import build_app
    from zephyr_tinyml.model.verify import all_tensors_model

    build, zephyr = firmware
    ops = all_tensors_model(reference["model"])[1]
    conv = [op for op in ops if op["op"] == "CONV_2D"][1]
    work = tmp_path / "work"
    work.mkdir()
    (work / "mnist.tflite").write_bytes(reference["model"])
    try:
        build_app(EVAL_APP, "qemu_cortex_m3", build, GENERATED, zephyr=zephyr,
                  extra_cmake_args=(f"-DTINYML_TEST_CORRUPT_TENSOR={conv['tensor']}",))
        status = main(["eval", "mnist", "-n", "5", "--build-dir", str(build), "--work-dir", str(work),
                       "--generated-dir", str(GENERATED), "--data-dir", str(mnist_dir), "--format", "json"])
    finally:
        build_app(EVAL_APP, "qemu_cortex_m3", build, GENERATED, zephyr=zephyr,
                  extra_cmake_args=("-DTINYML_TEST_CORRUPT_TENSOR=",))
    report = json.loads(capsys.readouterr().out)
    assert status == 1 and not report["passed"] and report["mismatch_count"] > 0
    first = report["mismatches"][0]["test_index"]
    assert report["differing_op"].startswith(f"op {conv['op_index']} of {len(ops)}, CONV_2D (output tensor "
                                             f"{conv['tensor']} ")
    assert f"on test image {first}: " in report["differing_op"] and "cmsis-nn kernel of CONV_2D" in report["differing_op"]


def test_dsp_paths_on_mps2_an521_answer_from_boot_bit_exact(reference) -> None:
    """mps2_an521 with CMSIS-NN's DSP paths (``--kernels cmsis-nn-dsp``): the image is for an M33 with
    the DSP extension, QEMU's CPU0 gets it (zephyr/cmake/qemu.cmake), and the app answers the info
    requests the host sends while it boots (Arm's CMSDK UART raises no interrupt for a character that
    arrived before the receive interrupt was enabled: the app used to wait for it forever). A second
    TFLM build, in build/tests/mnist_eval-mps2_an521-cmsis-nn-dsp."""
    from zephyr_tinyml.firmware.build import build_app, build_config, kernels_args, kernels_problem
    from zephyr_tinyml.firmware.zephyr_env import find_zephyr

    zephyr, why = find_zephyr()
    if zephyr is None:
        pytest.skip(why)
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm is not installed")
    build = TEST_BUILDS / "mnist_eval-mps2_an521-cmsis-nn-dsp"
    build_app(EVAL_APP, "mps2_an521", build, GENERATED, zephyr=zephyr, extra_cmake_args=kernels_args("cmsis-nn-dsp"))
    config = build_config(build)
    assert kernels_problem(config, "mps2_an521", "cmsis-nn-dsp") is None
    assert config.get("CONFIG_ARMV8_M_DSP") == "y"
    assert "sse-200.CPU0_DSP=on" in (build / "build.ninja").read_text()

    link = QemuLink(build, zephyr.env())
    try:
        session = Session(link, timeout=10.0, retries=2)
        info = session.handshake(boot_timeout=30.0)   # sent from the first moment QEMU runs
        outcome = stream(session, reference["inputs"][:20])
        report = compare(outcome, np.arange(20), reference["labels"][:20], reference["tflm"][:20],
                         reference["tflm"][:20], None, info, reference["labels_text"], "mps2_an521",
                         link.description)
    finally:
        link.close()
    assert report.passed, (report.failed, report.mismatches[:2])
    assert report.answered == 20
