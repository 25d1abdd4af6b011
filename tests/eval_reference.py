"""A reference device for the evaluation protocol: the firmware's loop in Python, on a socketpair.

Why: the host's retry, timeout and accounting rules must be tested against faults a healthy
firmware never produces (lost, late, damaged replies; a device that dies).  This device answers
with real host TFLM on the real generated model, and misbehaves exactly where a test tells it to.
"""

from __future__ import annotations

import socket
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from zephyr_tinyml.device import protocol as proto
from zephyr_tinyml.device.link import FdLink

Infer = Callable[[bytes], np.ndarray]  # int8 input bytes -> int8 outputs
Tracer = Callable[[int, bytes], str]   # seq, int8 input bytes -> the OPTRACE lines a trace request prints


@dataclass
class Faults:
    """What to do wrong, per sequence number and attempt (1-based) of that number.

    ``drop``: no reply; ``corrupt``: flip one hex digit of the reply; ``late``: reply after
    ``late_seconds``; ``reject``: answer with an error frame (bad-crc); ``noise``: console text
    before every reply; ``die_after``: stop answering after that many frames.
    """

    drop: dict[int, set[int]] = field(default_factory=dict)
    corrupt: dict[int, set[int]] = field(default_factory=dict)
    late: dict[int, set[int]] = field(default_factory=dict)
    reject: dict[int, set[int]] = field(default_factory=dict)
    late_seconds: float = 0.3
    noise: bool = False
    die_after: int | None = None


class ReferenceDevice:
    """Serves one socket end in a thread; the test talks to the other end through an :class:`FdLink`."""

    def __init__(self, infer: Infer, input_size: int, classes: int, model: bytes, faults: Faults | None = None,
                 tracer: Tracer | None = None):
        self.infer, self.input_size, self.classes, self.model = infer, input_size, classes, model
        self.tracer = tracer
        self.faults = faults or Faults()
        self.host_sock, self.device_sock = socket.socketpair()
        self.link = FdLink(self.host_sock.fileno(), self.host_sock.fileno(), "reference device")
        self.attempts: dict[int, int] = defaultdict(int)
        self.frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self.link.close()
        self.host_sock.close()
        self._thread.join(timeout=5)
        self.device_sock.close()

    def _send(self, text: str) -> None:
        try:
            self.device_sock.sendall(text.encode("ascii"))
        except OSError:
            self._stop.set()

    def _serve(self) -> None:
        self.device_sock.settimeout(0.05)
        self._send("*** Booting Zephyr OS (reference device) ***\n")
        buffer = b""
        while not self._stop.is_set():
            try:
                chunk = self.device_sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                self._handle(line.decode("ascii", "replace").strip())

    def _handle(self, line: str) -> None:
        if not line.startswith(proto.REQUEST_MARKER):
            return
        self.frames += 1
        if self.faults.die_after is not None and self.frames > self.faults.die_after:
            return
        try:
            frame = bytes.fromhex(line[1:])
        except ValueError:
            self._send(proto.ERROR_MARKER + proto.encode_error(proto.UNKNOWN_SEQ, proto.ErrorCode.BAD_HEX, 0).hex()
                       + "\n")
            return
        seq = int.from_bytes(frame[2:4], "little") if len(frame) >= 4 else proto.UNKNOWN_SEQ
        try:
            seq, payload = proto.decode_request(frame, self.input_size)
        except proto.FrameError as exc:
            code = next(c for c in proto.ErrorCode if c.label == str(exc))
            self._send(proto.ERROR_MARKER + proto.encode_error(seq, code, len(frame)).hex() + "\n")
            return
        self.attempts[seq] += 1
        attempt = self.attempts[seq]
        faults = self.faults
        if attempt in faults.drop.get(seq, ()):
            return
        if attempt in faults.reject.get(seq, ()):
            self._send(proto.ERROR_MARKER + proto.encode_error(seq, proto.ErrorCode.BAD_CRC, len(frame)).hex() + "\n")
            return
        if not payload:
            reply = proto.encode_info(proto.Info(seq, proto.VERSION, self.input_size, self.classes, len(self.model),
                                                 proto.crc16_fast(self.model), 16384, 10000, 12_000_000))
        else:
            if frame[:2] == proto.MAGIC_TRACE_REQUEST and self.tracer is not None:
                self._send(self.tracer(seq, payload))
            outputs = self.infer(payload)
            reply = proto.encode_result(seq, int(np.argmax(outputs)), outputs, 1000 + seq)
        text = proto.REPLY_MARKER + reply.hex()
        if attempt in faults.corrupt.get(seq, ()):
            position = 5
            text = text[:position] + ("0" if text[position] != "0" else "1") + text[position + 1:]
        if faults.noise:
            self._send("console: unrelated printk output\n")
        if attempt in faults.late.get(seq, ()):
            threading.Timer(faults.late_seconds, self._send, (text + "\n",)).start()
            return
        self._send(text + "\n")
