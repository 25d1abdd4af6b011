"""The device's frame decoder (samples/mnist_eval/src/frame.cpp), compiled for the host with g++ and
held against the host's protocol module: the same frames decode to the same bytes, every damaged
frame gets the error the protocol names, and a line whose tail the UART ring dropped is still answered.

Needs a host C++ compiler (g++ or $CXX); skipped with the reason otherwise.  Runs in a second,
without Zephyr or QEMU; test_eval_qemu.py runs the same table against the real firmware.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from zephyr_tinyml.device import protocol as proto

from damaged_frames import DAMAGED

REPO = Path(__file__).resolve().parents[1]
SOURCES = REPO / "samples" / "mnist_eval" / "src"
LOST_LINE_END = "\x18"  # frame.h kLostLineEnd: the receive ring dropped part of this line


@pytest.fixture(scope="module")
def decoder(tmp_path_factory) -> Path:
    """The host build of the decoder driver (tests/native/frame_host.cpp)."""
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not compiler:
        pytest.skip("no host C++ compiler (g++ or $CXX) to build the device's frame decoder")
    binary = tmp_path_factory.mktemp("native") / "frame_host"
    subprocess.run([compiler, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-O1", f"-I{SOURCES}",
                    str(REPO / "tests" / "native" / "frame_host.cpp"), str(SOURCES / "frame.cpp"),
                    "-o", str(binary)], check=True, capture_output=True, text=True)
    return binary


def _decode(decoder: Path, text: str) -> list[tuple]:
    """What the decoder makes of ``text``: ("request" or "trace", seq, payload) or ("error", seq, label, size)."""
    out = subprocess.run([str(decoder)], input=text.encode("latin-1"), capture_output=True,
                         check=True, timeout=30).stdout.decode()
    events = []
    for line in out.splitlines():
        kind, seq, *rest = line.split()
        if kind in ("request", "trace"):
            events.append((kind, int(seq), bytes.fromhex(rest[0] if rest else "")))
        else:
            events.append(("error", int(seq), proto.ErrorCode(int(rest[0])).label, int(rest[1])))
    return events


@pytest.fixture(scope="module")
def images(mnist) -> np.ndarray:
    """Three real test images as int8, as the host sends them (pixel - 128)."""
    return (mnist.x_test[:3].reshape(3, -1).astype(np.int16) - 128).astype(np.int8)


@pytest.mark.parametrize("pack", [True, False], ids=["packed", "raw"])
def test_request_decodes_to_the_image(decoder, images, pack: bool) -> None:
    text = "".join(proto.request_line(10 + i, image, pack=pack) for i, image in enumerate(images))
    assert _decode(decoder, text) == [("request", 10 + i, image.tobytes()) for i, image in enumerate(images)]


def test_trace_request_decodes_as_a_trace(decoder, images) -> None:
    text = proto.request_line(3, images[0], trace=True) + proto.request_line(4, images[1])
    assert _decode(decoder, text) == [("trace", 3, images[0].tobytes()), ("request", 4, images[1].tobytes())]
    # The size rule of an unpacked request holds for a trace request too.
    assert _decode(decoder, proto.request_line(5, images[0][:100], trace=True))[0][:3] == ("error", 5, "bad-size")


def test_info_request_and_console_text(decoder) -> None:
    text = "hello from a terminal\r\n" + proto.request_line(7) + "@5451\n"
    assert _decode(decoder, text) == [("request", 7, b""), ("error", proto.UNKNOWN_SEQ, "short", 2)]


@pytest.mark.parametrize("fault", sorted(DAMAGED))
def test_damaged_frame_gets_its_error_then_next_decodes(decoder, images, fault: str) -> None:
    events = _decode(decoder, DAMAGED[fault](3, images[0]) + proto.request_line(4, images[1]))
    assert [e[:3] for e in events] == [("error", 3, fault), ("request", 4, images[1].tobytes())]


def test_new_marker_ends_an_unfinished_frame(decoder, images) -> None:
    cut = proto.request_line(5, images[0])[:300]
    events = _decode(decoder, cut + proto.request_line(6, images[1]))
    assert [e[:3] for e in events] == [("error", 5, "bad-length"), ("request", 6, images[1].tobytes())]


def test_line_with_dropped_tail_is_answered_by_its_sequence_number(decoder, images) -> None:
    """The firmware's receive ring ends a line it had to cut with kLostLineEnd instead of '\\n'."""
    line = proto.request_line(8, images[0])
    events = _decode(decoder, line[:len(line) // 2] + LOST_LINE_END + proto.request_line(9, images[1]))
    assert [e[:3] for e in events] == [("error", 8, "overrun"), ("request", 9, images[1].tobytes())]


def test_overflow_seen_before_the_drop_is_reported_as_too_long(decoder, images) -> None:
    """What the ring keeps of an over-long line (its size less one: 2 KB for MNIST, 4 KB at most) is
    past the decoder's buffer, so too-long wins."""
    line = proto.request_line(8, images[0])[:-1] + "00" * 2000
    for ring_size in (2048, 4096):
        assert [e[:3] for e in _decode(decoder, line[:ring_size - 1] + LOST_LINE_END)] == [("error", 8, "too-long")]


def test_dropped_line_without_a_frame_start_is_answered_unknown(decoder, images) -> None:
    events = _decode(decoder, "noise" + LOST_LINE_END + LOST_LINE_END + proto.request_line(2, images[2]))
    assert [e[:3] for e in events] == [("error", proto.UNKNOWN_SEQ, "overrun")] * 2 + [
        ("request", 2, images[2].tobytes())]
