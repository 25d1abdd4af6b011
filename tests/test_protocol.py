"""protocol: frames, hex lines and CRC-16 round-trip, and every damaged frame is named, not guessed."""

from __future__ import annotations

import numpy as np
import pytest

from zephyr_tinyml import packbits
from zephyr_tinyml.device import protocol as proto


def test_crc16_is_ccitt_false() -> None:
    assert proto.crc16(b"123456789") == 0x29B1
    data = np.random.default_rng(1).integers(0, 256, 1000, dtype=np.uint8).tobytes()
    assert proto.crc16_fast(data) == proto.crc16(data)


def test_request_round_trip() -> None:
    pixels = np.random.default_rng(2).integers(-128, 128, 784, dtype=np.int8)
    line = proto.request_line(513, pixels)
    assert line.startswith("@5451") and line.endswith("\n")  # noise does not pack: sent as is
    assert len(line) == 1 + 2 * (6 + 784 + 2) + 1
    seq, payload = proto.decode_request(bytes.fromhex(line[1:-1]), 784)
    assert seq == 513 and np.array_equal(np.frombuffer(payload, np.int8), pixels)


def test_image_like_payload_is_packed() -> None:
    image = np.full(784, -128, np.int8)
    image[300:340] = np.arange(40)
    image[400:402] = 5
    line = proto.request_line(1, image)
    assert line.startswith("@5450") and len(line) < 200
    assert proto.decode_request(bytes.fromhex(line[1:-1]), 784) == (1, image.tobytes())


@pytest.mark.parametrize("data", [b"", b"a", b"aa", b"ab", b"a" * 300, bytes(range(256)) * 3,
                                  b"ab" + b"c" * 129 + b"de" * 70 + b"f"])
def test_packed_request_round_trip(data: bytes) -> None:
    frame = proto.encode_request(1, data)
    assert proto.decode_request(frame, len(data) or None) == (1, data)
    if frame[:2] == proto.MAGIC_PACKED_REQUEST:
        assert packbits.unpack(frame[proto.HEADER.size:-proto.CRC.size], len(data)) == data
    assert len(frame) - proto.HEADER.size - proto.CRC.size <= packbits.bound(len(data))  # the firmware's buffer


def _packed_frame(seq: int, payload: bytes) -> bytes:
    frame = proto.HEADER.pack(proto.MAGIC_PACKED_REQUEST, seq, len(payload)) + payload
    return frame + proto.CRC.pack(proto.crc16(frame))


def test_bad_packing_is_bad_size() -> None:
    for damaged in (b"\x05ab", b"\xfe", packbits.pack(b"a" * 10), packbits.pack(b"a" * 12)):
        with pytest.raises(proto.FrameError, match="bad-size"):
            proto.decode_request(_packed_frame(3, damaged), 11)
    # Without a size: at most 65,535 bytes, the length field's limit.
    with pytest.raises(proto.FrameError, match="bad-size"):
        proto.decode_request(_packed_frame(3, b"\x81\x00" * 513))
    assert proto.decode_request(_packed_frame(3, b"\x81\x00" * 511)) == (3, bytes(128 * 511))


def test_info_request_is_empty() -> None:
    assert proto.decode_request(proto.encode_request(7)) == (7, b"")


def test_sequence_numbers_are_bounded() -> None:
    with pytest.raises(ValueError):
        proto.encode_request(proto.UNKNOWN_SEQ)


@pytest.mark.parametrize("reply", [
    proto.Result(9, 3, (-128, 5, 127, 0, -1, 2, 3, 4, 5, 6), 123456),
    proto.Info(1, proto.VERSION, 784, 10, 17386, 0xBEEF, 11072, 10532, 12_000_000),
    proto.ErrorReply(65535, proto.ErrorCode.BAD_LENGTH, 400),
])
def test_reply_round_trip(reply: proto.Reply) -> None:
    if isinstance(reply, proto.Result):
        frame, marker = proto.encode_result(reply.seq, reply.predicted, np.array(reply.outputs), reply.cycles), "#"
    elif isinstance(reply, proto.Info):
        frame, marker = proto.encode_info(reply), "#"
    else:
        frame, marker = proto.encode_error(reply.seq, reply.code, reply.received), "!"
    assert proto.parse_device_line(marker + frame.hex() + "\r\n") == reply


def test_console_text_is_not_a_reply() -> None:
    assert proto.parse_device_line("*** Booting Zephyr OS build v3.4.99 ***") is None
    assert proto.parse_device_line("") is None


def _result_line() -> str:
    return "#" + proto.encode_result(4, 1, np.zeros(10, np.int8), 99).hex()


@pytest.mark.parametrize("damage, message", [
    (lambda s: s[:9] + ("0" if s[9] != "0" else "1") + s[10:], "CRC"),  # one character flipped
    (lambda s: s[:-6], "CRC"),                                             # truncated
    (lambda s: s[:7] + "zz" + s[9:], "hex"),                               # not hex
    (lambda s: "!" + s[1:], "wrong marker"),                                # result under the error marker
])
def test_damaged_replies_raise(damage, message: str) -> None:
    with pytest.raises(proto.FrameError, match=message):
        proto.parse_device_line(damage(_result_line()))


def test_wrong_length_field_is_named() -> None:
    frame = bytearray(proto.encode_request(3, bytes(784), pack=False))
    frame[4] = 0x0F  # length 783 + 256..: disagrees with the payload
    body = bytes(frame[:-2])
    sealed = body + proto.CRC.pack(proto.crc16_fast(body))
    with pytest.raises(proto.FrameError, match="bad-length"):
        proto.decode_request(sealed)
    with pytest.raises(proto.FrameError, match="bad-length"):
        proto.decode_request(bytes(frame))  # length is checked before the CRC: a cut frame reads as such
    flipped = bytearray(proto.encode_request(3, bytes(784), pack=False))
    flipped[100] ^= 0x10
    with pytest.raises(proto.FrameError, match="bad-crc"):
        proto.decode_request(bytes(flipped))
    with pytest.raises(proto.FrameError, match="short"):
        proto.decode_request(b"TQ\x01")


def test_outputs_frame_carries_a_whole_image() -> None:
    """A generator's answer (`TO`): 784 output bytes, more than a result frame's one-byte count can say."""
    image = np.arange(784, dtype=np.int64).astype(np.int8)
    reply = proto.parse_device_line("#" + proto.encode_outputs(12, image, 4321).hex())
    assert reply == proto.Result(12, proto.NO_CLASS, tuple(int(v) for v in image), 4321)
    body = bytearray(proto.encode_outputs(12, image, 4321)[:-2])
    body[4] = 0x0F  # a count that disagrees with the bytes that follow
    with pytest.raises(proto.FrameError, match="does not hold 783 int8 outputs"):
        proto.decode_reply(bytes(body) + proto.CRC.pack(proto.crc16_fast(bytes(body))))


def test_int16_tensors_travel_little_endian_two_bytes_a_value() -> None:
    """A 16x8 model's frames: the request carries 2 bytes per input value (little-endian, as the device
    stores them), counts in replies are values, and a reply is read with the model's output type."""
    values = np.array([0, 1, -1, 32767, -32768, 256, -257], dtype=np.int16)
    seq, payload = proto.decode_request(proto.encode_request(5, values, pack=False), input_size=14)
    assert seq == 5 and payload == b"\x00\x00\x01\x00\xff\xff\xff\x7f\x00\x80\x00\x01\xff\xfe"
    packed_seq, packed = proto.decode_request(proto.encode_request(6, np.zeros(784, np.int16)), input_size=1568)
    assert packed_seq == 6 and packed == bytes(1568)
    scores = np.array([-32768, 5, 32767, -2, 0, 1, 2, 3, 4, 300], dtype=np.int16)
    line = "#" + proto.encode_result(9, 2, scores, 1234).hex()
    assert proto.parse_device_line(line, "int16") == proto.Result(9, 2, tuple(int(v) for v in scores), 1234)
    with pytest.raises(proto.FrameError, match="does not hold 10 int8 outputs"):
        proto.parse_device_line(line)  # read as int8, the frame is too long for its count
    image = np.arange(-392, 392, dtype=np.int16)
    reply = proto.parse_device_line("#" + proto.encode_outputs(3, image, 99).hex(), "int16")
    assert reply == proto.Result(3, proto.NO_CLASS, tuple(int(v) for v in image), 99)
    with pytest.raises(ValueError, match="int8 or int16"):
        proto.decode_reply(proto.encode_outputs(3, image, 99), "float32")
