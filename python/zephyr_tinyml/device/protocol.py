"""The on-device evaluation protocol, host side: frames, hex lines and CRC-16 (no I/O here).

Why a module of its own: the CLI, the host tests, a reference device used in tests and the
twister pytest file all speak the protocol; keeping it pure (bytes and strings in, dataclasses
out) lets each of them use it without a transport.  The specification is docs/protocol.md; the
device side is samples/mnist_eval/src/frame.cpp.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Union

import numpy as np

from .. import packbits

VERSION = 1

REQUEST_MARKER = "@"
REPLY_MARKER = "#"
ERROR_MARKER = "!"

MAGIC_REQUEST = b"TQ"          # payload as is
MAGIC_PACKED_REQUEST = b"TP"   # payload PackBits-packed (test images shrink about 3.5 times)
MAGIC_TRACE_REQUEST = b"TT"    # payload as is; the device prints every op's output (OPTRACE lines) first
MAGIC_RESULT = b"TR"
MAGIC_OUTPUTS = b"TO"          # a non-classifier's whole output tensor (e.g. a generator's image)
MAGIC_INFO = b"TI"
MAGIC_ERROR = b"TE"

HEADER = struct.Struct("<2sHH")           # magic, seq, length
RESULT_HEAD = struct.Struct("<2sHBB")     # magic, seq, class, count
OUTPUTS_HEAD = struct.Struct("<2sHH")     # magic, seq, count (up to 65,535 output bytes)
INFO = struct.Struct("<2sHBHBIHIII")      # magic, seq, version, input, classes, model size/crc, arena, used, Hz
ERROR = struct.Struct("<2sHBH")           # magic, seq, code, bytes received
CRC = struct.Struct("<H")

NO_CLASS = -1  # Result.predicted of an outputs frame (`TO`): the model is not a classifier
UNKNOWN_SEQ = 0xFFFF
SEQ_LIMIT = 0xFFFF  # sequence numbers run 0 .. 65534; 65535 means "unknown" in error frames


class ErrorCode(IntEnum):
    """Why the device rejected a request (docs/protocol.md, table "Error")."""

    BAD_CRC = 1
    BAD_LENGTH = 2
    BAD_SIZE = 3
    BAD_MAGIC = 4
    BAD_HEX = 5
    TOO_LONG = 6
    SHORT = 7
    INVOKE = 8
    OVERRUN = 9

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


class FrameError(ValueError):
    """A protocol line that cannot be decoded (bad hex, CRC, magic or size)."""


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final XOR."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def crc16_fast(data: bytes, crc: int = 0xFFFF) -> int:
    """Same as :func:`crc16`, in C: ``binascii.crc_hqx`` is this CRC with a chosen initial value."""
    return binascii.crc_hqx(data, crc)


def _seal(frame: bytes) -> bytes:
    return frame + CRC.pack(crc16_fast(frame))


@dataclass(frozen=True)
class Result:
    """The device's answer to one image."""

    seq: int
    predicted: int            # the class a classifier picked; NO_CLASS in an outputs frame
    outputs: tuple[int, ...]  # the output tensor's values (int8, or a 16x8 model's int16)
    cycles: int


@dataclass(frozen=True)
class Info:
    """What the device runs: checked against the host's .tflite before any image is sent."""

    seq: int
    version: int
    input_size: int
    classes: int
    model_size: int
    model_crc: int
    arena_size: int
    arena_used: int
    cycles_per_second: int


@dataclass(frozen=True)
class ErrorReply:
    """The device rejected request ``seq`` (``UNKNOWN_SEQ`` when it could not read one)."""

    seq: int
    code: ErrorCode | int
    received: int

    @property
    def reason(self) -> str:
        name = self.code.label if isinstance(self.code, ErrorCode) else f"code {self.code}"
        return f"device rejected the frame: {name} ({self.received} bytes decoded)"


Reply = Union[Result, Info, ErrorReply]

# The tensor types frames carry: int8, and the int16 of a 16x8 model, little-endian as on the
# device. A frame's counts are values, its length fields bytes.
TENSOR_TYPES = ("int8", "int16")


def tensor_bytes(values: bytes | np.ndarray) -> bytes:
    """A tensor as frames carry it: an int16 array as little-endian 16-bit values, any other array as
    int8 (quantized values), bytes as they are."""
    if not isinstance(values, np.ndarray):
        return bytes(values)
    if values.dtype == np.int16:
        return values.astype("<i2").tobytes()
    return values.astype(np.int8).tobytes()


def _values_in(values: bytes | np.ndarray) -> int:
    return values.size if isinstance(values, np.ndarray) else len(values)


def _wire_type(dtype: str) -> np.dtype:
    if dtype not in TENSOR_TYPES:
        raise ValueError(f"frames carry {' or '.join(TENSOR_TYPES)} tensors, not {dtype}")
    return np.dtype(dtype).newbyteorder("<")


def _unpack_payload(payload: bytes, size: int | None) -> bytes:
    """A ``TP`` payload unpacked (PackBits, :mod:`zephyr_tinyml.packbits`: the codec of the embedded
    test inputs too); :class:`FrameError` *bad-size* unless it unpacks to exactly ``size`` bytes (to at
    most 65,535 without a size), as the firmware rejects it.
    """
    try:
        data = packbits.unpack(payload, size)
    except packbits.PackBitsError:
        raise FrameError(ErrorCode.BAD_SIZE.label) from None
    if len(data) > 0xFFFF:
        raise FrameError(ErrorCode.BAD_SIZE.label)
    return data


def encode_request(seq: int, payload: bytes | np.ndarray = b"", pack: bool = True, trace: bool = False) -> bytes:
    """The binary request frame: magic, seq, length, payload (packed when that is shorter), CRC.

    ``trace``: a trace request (never packed): the device runs the input op by op and prints each
    op's output tensor before its reply, so the host can name the op that differs.
    """
    if not 0 <= seq < SEQ_LIMIT:
        raise ValueError(f"sequence number {seq} outside 0..{SEQ_LIMIT - 1}")
    data = tensor_bytes(payload)
    magic = MAGIC_TRACE_REQUEST if trace else MAGIC_REQUEST
    if pack and data and not trace:
        # The UART is the slowest part of an exchange (QEMU's console takes one character per
        # main-loop turn), and quantized test inputs are mostly one background value.
        packed = packbits.pack(data)
        if len(packed) < len(data):
            magic, data = MAGIC_PACKED_REQUEST, packed
    if len(data) > 0xFFFF:
        raise ValueError(f"payload of {len(data)} bytes does not fit the 16-bit length field")
    return _seal(HEADER.pack(magic, seq, len(data)) + data)


def request_line(seq: int, payload: bytes | np.ndarray = b"", pack: bool = True, trace: bool = False) -> str:
    """One request as the text line the device reads (newline included)."""
    return REQUEST_MARKER + encode_request(seq, payload, pack, trace).hex() + "\n"


def decode_request(frame: bytes, input_size: int | None = None) -> tuple[int, bytes]:
    """``(seq, payload)`` of a binary request, unpacked; :class:`FrameError` names what is wrong.

    The host never needs this; the reference device in the tests does, with the same checks in the
    same order as the firmware (``input_size``: the only non-zero size the model accepts, in bytes).
    """
    if len(frame) < HEADER.size + CRC.size:
        raise FrameError(ErrorCode.SHORT.label)
    magic, seq, length = HEADER.unpack_from(frame)
    if magic not in (MAGIC_REQUEST, MAGIC_PACKED_REQUEST, MAGIC_TRACE_REQUEST):
        raise FrameError(ErrorCode.BAD_MAGIC.label)
    if length != len(frame) - HEADER.size - CRC.size:
        raise FrameError(ErrorCode.BAD_LENGTH.label)
    if crc16_fast(frame[:-CRC.size]) != CRC.unpack_from(frame, len(frame) - CRC.size)[0]:
        raise FrameError(ErrorCode.BAD_CRC.label)
    payload = frame[HEADER.size:-CRC.size]
    if magic == MAGIC_PACKED_REQUEST and payload:
        payload = _unpack_payload(payload, input_size)
    if input_size is not None and payload and len(payload) != input_size:
        raise FrameError(ErrorCode.BAD_SIZE.label)
    return seq, payload


def encode_result(seq: int, predicted: int, outputs: bytes | np.ndarray, cycles: int) -> bytes:
    """The binary result frame (used by the reference device in tests)."""
    data = tensor_bytes(outputs)
    return _seal(RESULT_HEAD.pack(MAGIC_RESULT, seq, predicted, _values_in(outputs)) + data
                 + struct.pack("<I", cycles & 0xFFFFFFFF))


def encode_outputs(seq: int, outputs: bytes | np.ndarray, cycles: int) -> bytes:
    """The binary outputs frame of a non-classifier (used by the reference device in tests)."""
    data = tensor_bytes(outputs)
    return _seal(OUTPUTS_HEAD.pack(MAGIC_OUTPUTS, seq, _values_in(outputs)) + data + struct.pack("<I", cycles & 0xFFFFFFFF))


def encode_info(info: Info) -> bytes:
    """The binary info frame (used by the reference device in tests)."""
    return _seal(INFO.pack(MAGIC_INFO, info.seq, info.version, info.input_size, info.classes,
                           info.model_size, info.model_crc, info.arena_size, info.arena_used,
                           info.cycles_per_second))


def encode_error(seq: int, code: ErrorCode | int, received: int) -> bytes:
    """The binary error frame (used by the reference device in tests)."""
    return _seal(ERROR.pack(MAGIC_ERROR, seq, int(code), min(received, 0xFFFF)))


def decode_reply(frame: bytes, dtype: str = "int8") -> Reply:
    """Decode a binary result, info or error frame; :class:`FrameError` if it is damaged.

    ``dtype``: the model's output type, which sizes the values of result and outputs frames.
    """
    wire = _wire_type(dtype)
    if len(frame) < 4 + CRC.size:
        raise FrameError(f"reply of {len(frame)} bytes is too short")
    if crc16_fast(frame[:-CRC.size]) != CRC.unpack_from(frame, len(frame) - CRC.size)[0]:
        raise FrameError("reply fails its CRC (corrupted on the way back)")
    body = frame[:-CRC.size]
    magic = body[:2]
    if magic == MAGIC_RESULT:
        if len(body) < RESULT_HEAD.size:
            raise FrameError("result frame too short")
        _, seq, predicted, count = RESULT_HEAD.unpack_from(body)
        if len(body) != RESULT_HEAD.size + count * wire.itemsize + 4:
            raise FrameError(f"result frame of {len(body)} bytes does not hold {count} {dtype} outputs")
        outputs = tuple(np.frombuffer(body, wire, count, RESULT_HEAD.size).tolist())
        (cycles,) = struct.unpack_from("<I", body, RESULT_HEAD.size + count * wire.itemsize)
        return Result(seq, predicted, outputs, cycles)
    if magic == MAGIC_OUTPUTS:
        if len(body) < OUTPUTS_HEAD.size:
            raise FrameError("outputs frame too short")
        _, seq, count = OUTPUTS_HEAD.unpack_from(body)
        if len(body) != OUTPUTS_HEAD.size + count * wire.itemsize + 4:
            raise FrameError(f"outputs frame of {len(body)} bytes does not hold {count} {dtype} outputs")
        outputs = tuple(np.frombuffer(body, wire, count, OUTPUTS_HEAD.size).tolist())
        (cycles,) = struct.unpack_from("<I", body, OUTPUTS_HEAD.size + count * wire.itemsize)
        return Result(seq, NO_CLASS, outputs, cycles)
    if magic == MAGIC_INFO:
        if len(body) != INFO.size:
            raise FrameError(f"info frame of {len(body)} bytes, expected {INFO.size}")
        _, *fields = INFO.unpack(body)
        return Info(*fields)
    if magic == MAGIC_ERROR:
        if len(body) != ERROR.size:
            raise FrameError(f"error frame of {len(body)} bytes, expected {ERROR.size}")
        _, seq, code, received = ERROR.unpack(body)
        try:
            code = ErrorCode(code)
        except ValueError:
            pass
        return ErrorReply(seq, code, received)
    raise FrameError(f"unknown reply magic {magic!r}")


def parse_device_line(line: str, dtype: str = "int8") -> Reply | None:
    """A line the device printed: a reply, ``None`` for ordinary console text (``dtype``: the
    model's output type, as for :func:`decode_reply`).

    Raises :class:`FrameError` for a protocol line that is damaged (bad hex, CRC or layout), so the
    caller can count it and retry instead of mistaking it for console text.
    """
    line = line.strip()
    if not line or line[0] not in (REPLY_MARKER, ERROR_MARKER):
        return None
    try:
        frame = bytes.fromhex(line[1:])
    except ValueError:
        raise FrameError("reply line is not valid hex") from None
    reply = decode_reply(frame, dtype)
    expected_marker = ERROR_MARKER if isinstance(reply, ErrorReply) else REPLY_MARKER
    if line[0] != expected_marker:
        raise FrameError(f"reply frame under the wrong marker {line[0]!r}")
    return reply
