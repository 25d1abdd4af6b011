"""Twister pytest harness: the device's int8 outputs equal host TFLM's, and damaged frames are refused.

Run by ``west twister -T samples/mnist_eval`` (scenario sample.tinyml.mnist_eval); twister builds
the app, starts QEMU and hands us the ``dut`` fixture of pytest-twister-harness.

pytest-twister-harness: Zephyr 3.4/3.5's twister puts its own copy on PYTHONPATH and passes
``-p twister_harness.plugin`` (it refuses to run when the package is pip-installed); newer Zephyr
expects ``pip install pytest-twister-harness``.  This file works with both because it only touches
the harness through the ``dut`` fixture and imports from it lazily, in :class:`DutLink`.

The host side (protocol, host TFLM, data) comes from this repository's python/ folder; MNIST is read
from ``$TINYML_DATA_DIR`` (IDX .gz files or mnist.npz), else Keras' download cache.
``TINYML_EVAL_IMAGES`` changes the number of test images (default 1000; 10000 is the whole set).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "python"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from zephyr_tinyml.device import protocol as proto  # noqa: E402
from zephyr_tinyml.device.evaluate import check_device_model, compare, report_text, stream  # noqa: E402
from zephyr_tinyml.model.sources import model_from_sources  # noqa: E402
from zephyr_tinyml.device.session import Session  # noqa: E402

IMAGES = int(os.environ.get("TINYML_EVAL_IMAGES", "1000"))


class DutLink:
    """The harness' ``dut`` as a :class:`zephyr_tinyml.device.link.Link` (lines in, lines out, reads time out)."""

    description = "twister dut"

    def __init__(self, dut) -> None:  # noqa: ANN001 - twister_harness DeviceAdapter
        from twister_harness.exceptions import TwisterHarnessTimeoutException

        self._dut, self._timeout_error = dut, TwisterHarnessTimeoutException

    def write_line(self, line: str) -> None:
        self._dut.write(line.encode("ascii"))

    def read_line(self, timeout: float) -> str | None:
        try:  # readline(timeout=0) would mean "the harness' default timeout"
            return self._dut.readline(timeout=max(timeout, 0.001), print_output=False)
        except self._timeout_error:
            return None

    def close(self) -> None:
        return None


@pytest.fixture(scope="session")
def reference(request: pytest.FixtureRequest) -> dict:
    """The model the build compiled in, the first IMAGES test images as int8, and host TFLM's outputs."""
    from zephyr_tinyml.model.data import load_dataset
    from zephyr_tinyml.model.spec import load_spec
    from zephyr_tinyml.model.tflite_model import inspect_model
    from zephyr_tinyml.model.verify import quantize_input, run_tflm

    build_dir = Path(request.config.getoption("--build-dir"))
    cache = (build_dir / "CMakeCache.txt").read_text()
    generated = Path(re.search(r"^TINYML_MODEL_DIR:\w+=(.*)$", cache, re.MULTILINE).group(1))
    model = model_from_sources(generated / "model_data.cc")
    spec = load_spec(REPO / "models" / "mnist.yaml")
    info = inspect_model(model)
    data_dir = os.environ.get("TINYML_DATA_DIR")
    data = load_dataset(spec.data_source(), spec.input_shape, Path(data_dir) if data_dir else None)
    inputs = quantize_input(data.x_test[:IMAGES], spec, info)
    return {"model": model, "spec": spec, "inputs": inputs.reshape(len(inputs), -1),
            "labels": data.y_test[:IMAGES], "tflm": run_tflm(model, inputs)}


def _session(dut, reference: dict) -> tuple[Session, proto.Info]:  # noqa: ANN001
    session = Session(DutLink(dut), timeout=10.0, retries=2)
    info = session.handshake(boot_timeout=60.0)
    check_device_model(info, reference["model"], reference["inputs"].shape[1], len(reference["spec"].labels),
                       "the generated model_data.cc")
    return session, info


def test_outputs_equal_host_tflm(dut, reference: dict) -> None:  # noqa: ANN001
    session, info = _session(dut, reference)
    outcome = stream(session, reference["inputs"])
    report = compare(outcome, np.arange(IMAGES), reference["labels"], reference["tflm"], reference["tflm"], None,
                     info, reference["spec"].labels, "qemu_cortex_m3", "twister dut")
    print(report_text(report))
    assert report.answered == IMAGES, f"{len(report.failed)} images failed: {dict(list(report.failed.items())[:3])}"
    assert report.mismatches == [], f"{len(report.mismatches)} images differ from host TFLM"
    assert report.class_field_errors == 0
    assert report.device_accuracy == report.tflm_accuracy


def test_damaged_frames_are_refused_and_the_next_is_answered(dut, reference: dict) -> None:  # noqa: ANN001
    session, _ = _session(dut, reference)
    link = session.link
    image = reference["inputs"][0]

    def reply_to(line: str) -> proto.Reply:
        while True:
            text = link.read_line(10.0)
            assert text is not None, f"no reply to {line[:20]}..."
            reply = proto.parse_device_line(text)
            if reply is not None:
                return reply

    def flip(line: str, at: int) -> str:
        return line[:at] + ("0" if line[at] != "0" else "1") + line[at + 1:]

    frames = {
        # one hex digit of the payload changed: the CRC fails
        proto.ErrorCode.BAD_CRC: lambda seq: flip(proto.request_line(seq, image), 101),
        # cut in the middle: fewer bytes than the length field says
        proto.ErrorCode.BAD_LENGTH: lambda seq: proto.request_line(seq, image)[:200] + "\n",
        # a valid frame of the wrong size for the model
        proto.ErrorCode.BAD_SIZE: lambda seq: proto.request_line(seq, image[:100]),
    }
    for code, damaged in frames.items():
        seq = session.next_seq()
        line = damaged(seq)
        link.write_line(line)
        reply = reply_to(line)
        assert isinstance(reply, proto.ErrorReply) and reply.seq == seq and reply.code == code, reply

        answer = session.request(reference["inputs"][1])
        assert answer.ok and answer.attempts == 1, answer.problems
        assert list(answer.reply.outputs) == reference["tflm"][1].tolist()
