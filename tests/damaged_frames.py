"""Request lines damaged the ways a serial link damages them, keyed by the error the device must give.

Shared by the decoder's host test (test_frame_native.py) and the firmware test in QEMU
(test_eval_qemu.py), so both hold the device to the same table.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from zephyr_tinyml.device import protocol as proto


def _flip(line: str, at: int) -> str:
    return line[:at] + ("0" if line[at] != "0" else "1") + line[at + 1:]


def _cut(line: str) -> str:
    """The first half of a request line: a frame truncated in transit."""
    return line[:len(line) // 2] + "\n"


def _bad_hex(line: str) -> str:
    return line[:60] + "xy" + line[62:]


DAMAGED: dict[str, Callable[[int, np.ndarray], str]] = {
    "bad-crc": lambda seq, image: _flip(proto.request_line(seq, image), 101),
    "bad-length": lambda seq, image: _cut(proto.request_line(seq, image)),
    "bad-size": lambda seq, image: proto.request_line(seq, image[:100]),
    "bad-hex": lambda seq, image: _bad_hex(proto.request_line(seq, image)),
    "bad-magic": lambda seq, image: "@5858" + proto.request_line(seq, image)[5:],
    # Longer than the receive ring (2 KB for MNIST, at most 4 KB): the device drops the tail of the
    # line and must still answer it.
    "too-long": lambda seq, image: proto.request_line(seq, image)[:-1] + "00" * 2000 + "\n",
}
