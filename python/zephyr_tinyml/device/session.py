"""Request/response over a :class:`~zephyr_tinyml.device.link.Link`: sequence numbers, retries, timeouts.

Why apart from the transports and from the evaluation: the fault rules (docs/protocol.md, "Host
rules") are the part that must be right for no result to be lost or counted twice, and they are
tested on their own against a reference device, without QEMU.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import TinymlError
from .link import Link
from .protocol import (ErrorReply, FrameError, Info, Result, SEQ_LIMIT, UNKNOWN_SEQ, VERSION,
                       parse_device_line, request_line)

DEFAULT_TIMEOUT = 5.0
DEFAULT_RETRIES = 3
FIRST_TIMEOUT = 30.0     # adaptive timeout: before the first inference reply
ADAPTIVE_FACTOR = 4.0    # adaptive timeout: times the slowest reply so far


class DeviceError(TinymlError):
    """The device did not answer the handshake, or runs something else than expected."""


@dataclass
class Exchange:
    """The outcome of one request: the accepted reply, or ``None`` and why every attempt failed."""

    seq: int
    reply: Result | Info | None
    attempts: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.reply is not None


@dataclass
class LinkStats:
    """Counts over a whole session, for the report (and for tests of the fault rules)."""

    requests: int = 0
    frames_sent: int = 0
    retries: int = 0
    timeouts: int = 0
    error_replies: Counter = field(default_factory=Counter)  # by error label
    corrupt_replies: int = 0
    stale_replies: int = 0
    console_lines: int = 0

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["error_replies"] = dict(self.error_replies)
        return data


class Session:
    """Strict request/response: one outstanding request, resent with the same sequence number.

    ``timeout`` bounds each attempt; ``retries`` bounds the attempts after the first. A ``timeout``
    of None adapts to the model: an inference takes from microseconds to seconds (a generator on
    a 12 MHz Cortex-M3: 4.5 s), so until the first result arrives an attempt waits
    ``first_timeout``, afterwards ``ADAPTIVE_FACTOR`` times the slowest reply so far, at least
    ``DEFAULT_TIMEOUT``. ``output_type``: the model's output type ("int8", or "int16" for a 16x8
    model), which sizes the values in its replies.
    """

    def __init__(self, link: Link, timeout: float | None = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES,
                 console_tail: int = 50, first_timeout: float = FIRST_TIMEOUT, output_type: str = "int8"):
        self.link = link
        self.output_type = output_type
        self.timeout = timeout
        self.first_timeout = first_timeout
        self.slowest = 0.0          # seconds, the slowest inference reply so far
        self.retries = retries
        self.stats = LinkStats()
        self.console: deque[str] = deque(maxlen=console_tail)  # last non-protocol lines, for error messages
        self.captured: list[str] | None = None   # while tracing: every non-protocol line
        self._seq = 0

    def next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) % SEQ_LIMIT
        return seq

    def request(self, payload: bytes | np.ndarray = b"", timeout: float | None = None,
                retries: int | None = None, trace: bool = False) -> Exchange:
        """Send ``payload`` (empty: info request) until a matching reply comes or attempts run out."""
        want = Info if len(payload) == 0 else Result
        timeout = self.attempt_timeout() if timeout is None else timeout
        retries = self.retries if retries is None else retries
        seq = self.next_seq()
        line = request_line(seq, payload, trace=trace)
        exchange = Exchange(seq, None, 0)
        self.stats.requests += 1
        for attempt in range(retries + 1):
            if attempt:
                self.stats.retries += 1
            exchange.attempts += 1
            self.stats.frames_sent += 1
            self.link.write_line(line)
            sent = time.monotonic()
            reply, problem = self._await(seq, want, timeout)
            if reply is not None:
                exchange.reply = reply
                if want is Result:
                    self.slowest = max(self.slowest, time.monotonic() - sent)
                return exchange
            exchange.problems.append(f"attempt {attempt + 1}: {problem}")
        return exchange

    def trace(self, payload: bytes | np.ndarray) -> tuple[Exchange, list[str]]:
        """A trace request for one input: its exchange and the console lines the device printed
        meanwhile (the ``OPTRACE`` lines of every op's output, ``firmware/op_trace.py`` reads them).

        One attempt only (a resent trace would print it twice); the wait restarts with every line
        the device prints, since a large model's trace takes a slow UART many seconds.
        """
        self.captured = []
        try:
            exchange = self.request(payload, retries=0, trace=True)
            return exchange, self.captured
        finally:
            self.captured = None

    def attempt_timeout(self) -> float:
        """Seconds one attempt waits: the fixed ``timeout``, or the adaptive one (see the class)."""
        if self.timeout is not None:
            return self.timeout
        if not self.slowest:
            return self.first_timeout
        return max(DEFAULT_TIMEOUT, ADAPTIVE_FACTOR * self.slowest)

    def _await(self, seq: int, want: type, timeout: float) -> tuple[Result | Info | None, str]:
        """Read until the reply to ``seq``, a rejection of it, a damaged reply, or the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            line = self.link.read_line(remaining) if remaining > 0 else None
            if line is None:
                self.stats.timeouts += 1
                return None, f"no reply within {timeout:g} s"
            try:
                reply = parse_device_line(line, self.output_type)
            except FrameError as exc:
                self.stats.corrupt_replies += 1
                return None, f"damaged reply ({exc})"
            if reply is None:
                self.stats.console_lines += 1
                self.console.append(line)
                if self.captured is not None:
                    self.captured.append(line)
                    deadline = time.monotonic() + timeout
                continue
            if isinstance(reply, ErrorReply):
                if reply.seq not in (seq, UNKNOWN_SEQ):
                    self.stats.stale_replies += 1
                    continue
                label = reply.code.label if hasattr(reply.code, "label") else str(reply.code)
                self.stats.error_replies[label] += 1
                return None, reply.reason
            if reply.seq != seq:
                self.stats.stale_replies += 1
                continue
            if not isinstance(reply, want):
                return None, f"device sent a {type(reply).__name__} frame to a {want.__name__} request"
            return reply, ""

    def handshake(self, boot_timeout: float = 30.0, interval: float = 1.0) -> Info:
        """Ask for the info frame until the device answers (it may still be booting)."""
        deadline = time.monotonic() + boot_timeout
        problems: list[str] = []
        while time.monotonic() < deadline:
            exchange = self.request(b"", timeout=min(interval, max(0.05, deadline - time.monotonic())),
                                    retries=0)
            if exchange.reply is not None:
                info = exchange.reply
                assert isinstance(info, Info)
                if info.version != VERSION:
                    raise DeviceError(f"the device speaks protocol version {info.version}, this host {VERSION}: "
                                      f"rebuild and flash samples/mnist_eval from this checkout")
                return info
            problems.extend(exchange.problems)
        console = "\n".join(self.console) or "(nothing)"
        raise DeviceError(f"{self.link.description}: no answer to the info request within {boot_timeout:g} s. "
                          f"Is samples/mnist_eval running there (not another app), on the console UART? "
                          f"Last console lines:\n{console}")
