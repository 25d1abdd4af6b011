"""session + evaluate: retries, timeouts and accounting against a reference device (no QEMU needed).

The reference device (eval_reference.py) runs real host TFLM on the generated model and misbehaves
on request.  Every test checks the same invariant: each image ends answered, failed or not sent,
exactly once, and every accepted answer belongs to its own image.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from eval_reference import Faults, ReferenceDevice
from zephyr_tinyml.device import protocol as proto
from zephyr_tinyml.device.evaluate import EvalReport, check_device_model, compare, report_text, stream
from zephyr_tinyml.model.sources import model_from_sources
from zephyr_tinyml.device.session import DeviceError, Session
from zephyr_tinyml.model.verify import tflm_interpreter

GENERATED = Path(__file__).resolve().parents[1] / "samples" / "mnist" / "generated"
IMAGES = 24


@pytest.fixture(scope="module")
def model() -> bytes:
    source = GENERATED / "model_data.cc"
    if not source.is_file():
        pytest.skip(f"no generated model in {GENERATED}; run `tinyml build mnist`")
    return model_from_sources(source)


@pytest.fixture(scope="module")
def host(model: bytes):
    """Real host TFLM on the generated model: int8 input bytes -> int8 outputs."""
    interpreter = tflm_interpreter(model)

    def infer(payload: bytes) -> np.ndarray:
        interpreter.set_input(np.frombuffer(payload, np.int8).reshape(1, 28, 28, 1), 0)
        interpreter.invoke()
        return np.array(interpreter.get_output(0))[0].astype(np.int8)

    return infer


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    return np.random.default_rng(0).integers(-128, 128, (IMAGES, 784), dtype=np.int8)


def run(host, model: bytes, inputs: np.ndarray, faults: Faults, timeout: float = 0.5, retries: int = 2,
        settle: float | None = None):
    """Handshake and stream; with ``settle``, wait that long and exchange once more, so late replies are read."""
    device = ReferenceDevice(host, 784, 10, model, faults)
    try:
        session = Session(device.link, timeout=timeout, retries=retries)
        info = session.handshake(boot_timeout=5)
        outcome = stream(session, inputs, max_consecutive_failures=3)
        if settle is not None:
            time.sleep(settle)
            session.handshake(boot_timeout=5)
    finally:
        device.close()
    return info, outcome, session


def check_accounting(outcome, host, inputs: np.ndarray) -> None:
    """Answered + failed + not sent = requested, disjoint; every answer is its own image's."""
    answered, failed, not_sent = set(outcome.results), set(outcome.failed), set(outcome.not_sent)
    assert answered | failed | not_sent == set(range(len(inputs)))
    assert not (answered & failed or answered & not_sent or failed & not_sent)
    for position, result in outcome.results.items():
        assert list(result.outputs) == host(inputs[position].tobytes()).tolist()
        assert result.cycles == 1000 + result.seq  # the reference device stamps its seq here


def test_clean_run(host, model, inputs) -> None:
    info, outcome, session = run(host, model, inputs, Faults(noise=True))
    assert info.model_size == len(model) and info.model_crc == proto.crc16_fast(model)
    check_accounting(outcome, host, inputs)
    assert len(outcome.results) == IMAGES
    assert session.stats.retries == 0 and session.stats.console_lines >= IMAGES


def test_lost_damaged_and_rejected_replies_are_retried(host, model, inputs) -> None:
    # seq 0 is the handshake; images start at seq 1
    faults = Faults(drop={3: {1}}, corrupt={5: {1, 2}}, reject={8: {1}})
    _, outcome, session = run(host, model, inputs, faults)
    check_accounting(outcome, host, inputs)
    assert len(outcome.results) == IMAGES
    assert session.stats.retries == 4
    assert session.stats.timeouts == 1 and session.stats.corrupt_replies == 2
    assert session.stats.error_replies == {"bad-crc": 1}


def test_late_reply_is_used_once(host, model, inputs) -> None:
    faults = Faults(late={4: {1}}, late_seconds=0.7)  # later than the 0.5 s timeout
    _, outcome, session = run(host, model, inputs, faults, settle=0.5)
    check_accounting(outcome, host, inputs)
    assert len(outcome.results) == IMAGES
    assert session.stats.timeouts == 1 and session.stats.retries == 1
    # The late answer or the retry's answer was used; the other one was dropped as stale.
    assert session.stats.stale_replies == 1


def test_adaptive_timeout_waits_for_a_slow_model(host, model, inputs) -> None:
    """No --timeout: a model slower than the fixed 5 s default (a generator on a 12 MHz M3) is waited
    for, not retried: the first inference gets the boot timeout, later ones 4x the slowest reply."""
    slow = inputs[:3]
    faults = Faults(late={seq: {1} for seq in range(1, 4)}, late_seconds=0.7)
    device = ReferenceDevice(host, 784, 10, model, faults)
    try:
        session = Session(device.link, timeout=None, retries=0, first_timeout=2.0)
        session.handshake(boot_timeout=5)
        assert session.attempt_timeout() == 2.0
        outcome = stream(session, slow)
    finally:
        device.close()
    check_accounting(outcome, host, slow)
    assert len(outcome.results) == 3 and session.stats.timeouts == 0 and session.stats.retries == 0
    assert 0.7 <= session.slowest < 2.0 and session.attempt_timeout() == 5.0    # max(5 s, 4 x ~0.7 s)
    session.slowest = 3.0
    assert session.attempt_timeout() == 12.0


def test_image_that_never_succeeds_is_reported_failed(host, model, inputs) -> None:
    faults = Faults(drop={6: {1, 2, 3}})
    _, outcome, _ = run(host, model, inputs, faults, timeout=0.2)
    check_accounting(outcome, host, inputs)
    assert list(outcome.failed) == [5]
    assert outcome.failed[5] == [f"attempt {i}: no reply within 0.2 s" for i in (1, 2, 3)]
    assert len(outcome.results) == IMAGES - 1 and outcome.aborted is None


def test_dead_device_aborts_within_bounded_time(host, model, inputs) -> None:
    started = time.monotonic()
    _, outcome, _ = run(host, model, inputs, Faults(die_after=11), timeout=0.2)
    elapsed = time.monotonic() - started
    check_accounting(outcome, host, inputs)
    assert len(outcome.results) == 10  # 1 handshake + 10 images answered
    assert sorted(outcome.failed) == [10, 11, 12] and outcome.aborted
    assert outcome.not_sent == list(range(13, IMAGES))
    assert elapsed < 3 * 3 * 0.2 + 3  # three images x three attempts x timeout, plus slack


def test_silent_device_fails_the_handshake_with_a_reason(host, model) -> None:
    device = ReferenceDevice(host, 784, 10, model, Faults(die_after=0))
    try:
        with pytest.raises(DeviceError, match="(?s)no answer to the info request.*Booting Zephyr"):
            Session(device.link).handshake(boot_timeout=0.6, interval=0.2)
    finally:
        device.close()


def test_other_model_is_refused(host, model) -> None:
    info = proto.Info(0, 1, 784, 10, len(model), proto.crc16_fast(model), 0, 0, 1)
    check_device_model(info, model, 784, 10, "model.tflite")
    with pytest.raises(DeviceError, match="different model"):
        check_device_model(info, model[:-1] + bytes([model[-1] ^ 1]), 784, 10, "model.tflite")


def test_compare_counts_each_difference(host, model, inputs) -> None:
    _, outcome, _ = run(host, model, inputs, Faults(drop={2: {1, 2, 3}}), timeout=0.2)
    tflm = np.stack([host(x.tobytes()) for x in inputs])
    altered = tflm.copy()
    altered[7, 3] += 1  # host TFLM "disagrees" on one element of one image
    labels = tflm.argmax(axis=1)
    info = proto.Info(0, 1, 784, 10, len(model), proto.crc16_fast(model), 0, 0, 12_000_000)
    indices = np.arange(100, 100 + IMAGES)
    report = compare(outcome, indices, labels, altered, tflm, None, info, tuple("0123456789"),
                     "reference", "socketpair")
    assert isinstance(report, EvalReport)
    assert [m.test_index for m in report.mismatches] == [107] and report.mismatches[0].max_difference == 1
    assert report.answered == IMAGES - 1 and list(report.failed) == [101]
    assert report.device_accuracy == 100.0 and not report.passed
    assert sum(map(sum, report.confusion)) == IMAGES - 1
    text = report_text(report)
    assert "MISMATCH test image 107" in text and "FAILED test image 101" in text


def test_a_16x8_model_streams_int16_frames(mnist) -> None:
    """A model in TFLite's 16x8 mode (tests/fixtures/mnist_16x8.tflite): int16 inputs go out two bytes a
    value, int16 scores come back, and the device's answers equal host TFLM's on real test images."""
    model16 = (Path(__file__).parent / "fixtures" / "mnist_16x8.tflite").read_bytes()
    interpreter = tflm_interpreter(model16)

    def infer16(payload: bytes) -> np.ndarray:
        interpreter.set_input(np.frombuffer(payload, "<i2").astype(np.int16).reshape(1, 28, 28, 1), 0)
        interpreter.invoke()
        return np.array(interpreter.get_output(0))[0].astype(np.int16)

    scale = 3.0518509447574615e-05  # the fixture's input scale (zero point 0): pixels / 255 in int16
    images = np.round(mnist.x_test[:12].reshape(12, -1) / 255.0 / scale).astype(np.int16)
    device = ReferenceDevice(infer16, 2 * 784, 10, model16)
    try:
        session = Session(device.link, timeout=2.0, output_type="int16")
        info = session.handshake(boot_timeout=5)
        outcome = stream(session, images)
    finally:
        device.close()
    tflm = np.stack([infer16(x.astype("<i2").tobytes()) for x in images])
    assert np.abs(tflm).max() > 127  # scores beyond int8's range: two bytes a value really travelled
    report = compare(outcome, np.arange(12), mnist.y_test[:12], tflm, tflm, None, info, tuple("0123456789"),
                     "reference", "socketpair", "int16")
    assert report.passed and report.answered == 12 and report.device_accuracy >= 90.0
    assert "images with any int16 output different" in report_text(report)
    assert "device 16x8" in report_text(report)


def test_compare_with_nothing_answered(host, model, inputs) -> None:
    _, outcome, _ = run(host, model, inputs[:3], Faults(die_after=1), timeout=0.1, retries=0)
    tflm = np.stack([host(x.tobytes()) for x in inputs[:3]])
    info = proto.Info(0, 1, 784, 10, len(model), proto.crc16_fast(model), 0, 0, 12_000_000)
    report = compare(outcome, np.arange(3), tflm.argmax(axis=1), tflm, tflm, None, info, tuple("0123456789"),
                     "reference", "socketpair")
    assert report.answered == 0 and len(report.failed) == 3 and not report.passed
    assert "FAIL" in report_text(report)


def test_a_trace_request_names_the_op_that_differs(model, inputs) -> None:
    """A device whose second convolution is off by one in one element: the stream sees outputs that
    differ, the trace request gets every op's output (OPTRACE lines before the reply) and the op is
    named; the lines between request and reply are the only ones captured."""
    from zephyr_tinyml.device.evaluate import name_differing_op
    from zephyr_tinyml.model.verify import all_tensors_model

    debug_model, ops = all_tensors_model(model)
    stepper = tflm_interpreter(debug_model)
    wrong = [op["tensor"] for op in ops if op["op"] == "CONV_2D"][1]

    def tensors(payload: bytes) -> list[tuple[int, np.ndarray]]:
        """Every op's output as the faulty device computes it (host TFLM, then the fault, carried on
        to the model output only: enough for the stream to see a difference)."""
        stepper.set_input(np.frombuffer(payload, np.int8).reshape(1, 28, 28, 1), 0)
        stepper.invoke()
        out = []
        for position, op in enumerate(ops):
            tensor = np.array(stepper.get_output(position)).reshape(-1).copy()
            if op["tensor"] == wrong or position == len(ops) - 1:
                tensor[0] = np.int8(int(tensor[0]) ^ 1)
            out.append((op["tensor"], tensor))
        return out

    def infer(payload: bytes) -> np.ndarray:
        return tensors(payload)[-1][1]

    def tracer(seq: int, payload: bytes) -> str:
        lines = [f"OPTRACE begin test={seq}"] + [f"OPTRACE input {payload[i:i + 32].hex()}" for i in range(0, len(payload), 32)]
        for index, tensor in tensors(payload):
            data = tensor.tobytes()
            lines += [f"OPTRACE t{index} {data[i:i + 32].hex()}" for i in range(0, len(data), 32)]
        return "\n".join(lines + ["OPTRACE end"]) + "\n"

    device = ReferenceDevice(infer, 784, 10, model, Faults(noise=True), tracer=tracer)
    try:
        session = Session(device.link, timeout=2, retries=0)
        session.handshake(boot_timeout=5)
        text = name_differing_op(session, inputs[5], model, "cmsis-nn", "test image 5")
        exchange, lines = session.trace(inputs[6])
    finally:
        device.close()
    position = next(i for i, op in enumerate(ops) if op["tensor"] == wrong)
    assert text.startswith(f"op {ops[position]['op_index']} of {len(ops)}, CONV_2D (output tensor {wrong} ")
    assert "on test image 5: 1 of " in text and "cmsis-nn kernel of CONV_2D is not bit-exact" in text
    assert exchange.ok and lines[0] == "OPTRACE begin test=2" and "OPTRACE end" in lines
    assert lines[-1] == "console: unrelated printk output" and session.captured is None


def test_trace_request_frame_is_never_packed() -> None:
    frame = proto.encode_request(7, bytes(784), trace=True)
    assert frame[:2] == proto.MAGIC_TRACE_REQUEST and len(frame) == 6 + 784 + 2
    assert proto.decode_request(frame, 784) == (7, bytes(784))
