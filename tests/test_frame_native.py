"""The device's frame decoder (samples/mnist_eval/src/frame.cpp), compiled for the host with g++ and
held against the host's protocol module: the same frames decode to the same bytes, every damaged
frame gets the error the protocol names, and a line whose tail the UART ring dropped is still answered.
The one PackBits decoder it calls (zephyr/include/tinyml/packbits.h), which the self test's
FillInput() calls too, is held against python/zephyr_tinyml/packbits.py, the committed models'
embedded test inputs included.

Needs a host C++ compiler (g++ or $CXX); skipped with the reason otherwise.  Runs in a second,
without Zephyr or QEMU; test_eval_qemu.py runs the same table against the real firmware.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from zephyr_tinyml import packbits
from zephyr_tinyml.device import protocol as proto

from conftest import embedded_test_packed
from damaged_frames import DAMAGED

REPO = Path(__file__).resolve().parents[1]
SOURCES = REPO / "samples" / "mnist_eval" / "src"
INCLUDE = REPO / "zephyr" / "include"  # tinyml/packbits.h, as the module's CMakeLists.txt adds it
# Every committed model folder: its test_data.cc must decode with the device's decoder.
MODEL_DIRS = [REPO / "samples" / "mnist" / "generated", *sorted((REPO / "samples" / "zoo").glob("*/"))]
LOST_LINE_END = "\x18"  # frame.h kLostLineEnd: the receive ring dropped part of this line


def _compiler() -> str:
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not compiler:
        pytest.skip("no host C++ compiler (g++ or $CXX) to build the device's frame decoder")
    return compiler


def _build(binary: Path, *sources: Path) -> Path:
    subprocess.run([_compiler(), "-std=c++17", "-Wall", "-Wextra", "-Werror", "-O1", f"-I{SOURCES}", f"-I{INCLUDE}",
                    *map(str, sources), "-o", str(binary)], check=True, capture_output=True, text=True)
    return binary


@pytest.fixture(scope="module")
def decoder(tmp_path_factory) -> Path:
    """The host build of the decoder driver (tests/native/frame_host.cpp)."""
    return _build(tmp_path_factory.mktemp("native") / "frame_host",
                  REPO / "tests" / "native" / "frame_host.cpp", SOURCES / "frame.cpp")


@pytest.fixture(scope="module")
def unpacker(tmp_path_factory) -> Path:
    """The host build of tinyml::UnpackBits() (tests/native/packbits_host.cpp)."""
    return _build(tmp_path_factory.mktemp("native") / "packbits_host", REPO / "tests" / "native" / "packbits_host.cpp")


def _unpack_natively(unpacker: Path, cases: list[tuple[bytes, int]]) -> list[bytes | None]:
    """What tinyml::UnpackBits() makes of each (packed, size): the bytes, or None when it says damaged."""
    text = "".join(f"{size} {packed.hex()}\n" for packed, size in cases)
    out = subprocess.run([str(unpacker)], input=text.encode(), capture_output=True, check=True, timeout=30).stdout
    return [bytes.fromhex(line[3:]) if line.startswith("ok") else None for line in out.decode().splitlines()]


def _unpack_in_python(packed: bytes, size: int) -> bytes | None:
    try:
        return packbits.unpack(packed, size)
    except packbits.PackBitsError:
        return None


def _decode(decoder: Path, text: str, input_bytes: int = 784) -> list[tuple]:
    """What the decoder makes of ``text``: ("request" or "trace", seq, payload) or ("error", seq, label, size)."""
    out = subprocess.run([str(decoder), str(input_bytes)], input=text.encode("latin-1"), capture_output=True,
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


@pytest.mark.parametrize("pack", [True, False], ids=["packed", "raw"])
def test_int16_request_decodes_to_little_endian_values(decoder, images, pack: bool) -> None:
    """A 16x8 model's input: 1,568 bytes for 784 values, as the device's int16 tensor holds them; an
    int8-sized payload is the wrong size for it."""
    wide = images.astype(np.int16) * 256 + 7
    text = "".join(proto.request_line(20 + i, image, pack=pack) for i, image in enumerate(wide))
    assert _decode(decoder, text, 1568) == [("request", 20 + i, image.astype("<i2").tobytes())
                                            for i, image in enumerate(wide)]
    assert _decode(decoder, proto.request_line(30, images[0], pack=False), 1568)[0][:3] == ("error", 30, "bad-size")


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


def test_shared_decoder_agrees_with_the_host_codec(unpacker) -> None:
    rng = np.random.default_rng(3)
    sparse = np.zeros(784, np.uint8)
    sparse[rng.integers(0, 784, 150)] = rng.integers(1, 256, 150)
    data = [b"", b"a", b"aa", b"ab", b"a" * 300, bytes(range(256)) * 3, b"ab" + b"c" * 129 + b"de" * 70 + b"f",
            rng.integers(0, 256, 1000, dtype=np.uint8).tobytes(), sparse.tobytes()]
    cases = [(packbits.pack(d), len(d)) for d in data]
    # Damaged: cut short, too long, too short, a repeat without its byte; 128 is a no-op.
    cases += [(b"\x05ab", 6), (b"\xfe", 3), (packbits.pack(b"a" * 10), 11), (packbits.pack(b"a" * 12), 11),
              (packbits.pack(b"a" * 10)[:-1], 10), (b"\x80\xfe\x07\x80", 3), (b"\x80", 0), (b"\x00", 1)]
    # Random bytes: whatever they decode to, both sides agree (and the driver checks no write strays).
    cases += [(rng.integers(0, 256, int(n), dtype=np.uint8).tobytes(), int(size))
              for n, size in zip(rng.integers(1, 40, 200), rng.integers(0, 400, 200))]
    assert _unpack_natively(unpacker, cases) == [_unpack_in_python(*case) for case in cases]
    assert _unpack_natively(unpacker, [(b"\x80\xfe\x07\x80", 3)]) == [b"\x07" * 3]


@pytest.mark.parametrize("model_dir", MODEL_DIRS, ids=[p.name if p.parent.name == "zoo" else p.parent.name
                                                       for p in MODEL_DIRS])
def test_committed_test_inputs_unpack_on_the_device(unpacker, model_dir: Path) -> None:
    """Every committed test_data.cc unpacks with the device's decoder to the input size, as on the host."""
    size = int(re.search(r"kInputSize = (\d+);", (model_dir / "model_settings.h").read_text()).group(1))
    chunks = embedded_test_packed((model_dir / "test_data.cc").read_text())
    assert chunks
    assert _unpack_natively(unpacker, [(chunk, size) for chunk in chunks]) == [
        packbits.unpack(chunk, size) for chunk in chunks]
