"""PackBits (as in TIFF): the one run-length codec of the project, host side.

A header byte *h* < 128 is followed by *h* + 1 literal bytes; *h* > 128 by one byte that is
repeated 257 - *h* times (2 to 128); 128 is a no-op.  Test inputs are mostly one background value
(MNIST's 784 pixels have about 600 zeros), so they shrink about 3.5 times.

Why one codec: the same data (a model's test inputs) is packed in two places, the inputs
``tinyml build`` embeds in flash (``kTestPacked`` in the generated test_data.cc, expanded by
``FillInput()`` in zephyr/include/tinyml/test_report.h) and the ``TP`` frames ``tinyml eval`` sends
over the UART (docs/protocol.md, expanded by samples/mnist_eval/src/frame.cpp).  One format means
one encoder here and one decoder on the device, ``tinyml::UnpackBits()`` in
zephyr/include/tinyml/packbits.h, instead of two codecs under the same name that disagree.

A base-layer module: no imports from the rest of the package.
"""

from __future__ import annotations

MAX_RUN = 128        # longest run one header byte repeats (header 129)
MAX_LITERALS = 128   # most literal bytes after one header byte (header 127)


class PackBitsError(ValueError):
    """Packed data that is damaged: cut short, or not unpacking to the expected size."""


def bound(size: int) -> int:
    """Largest encoding of ``size`` bytes: one header byte per 128 literals (the firmware's buffer)."""
    return size + (size + MAX_LITERALS - 1) // MAX_LITERALS


def pack(data: bytes) -> bytes:
    """``data`` PackBits-packed: runs of two or more equal bytes as 2 bytes, other bytes as literals."""
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        run = 1
        while i + run < n and run < MAX_RUN and data[i + run] == data[i]:
            run += 1
        if run >= 2:
            out += bytes((257 - run, data[i]))
            i += run
            continue
        start = i
        while i < n and i - start < MAX_LITERALS and not (i + 1 < n and data[i + 1] == data[i]):
            i += 1
        out.append(i - start - 1)
        out += data[start:i]
    return bytes(out)


def unpack(data: bytes, size: int | None = None) -> bytes:
    """Inverse of :func:`pack`; :class:`PackBitsError` if ``data`` is cut short or, when ``size`` is
    given, does not unpack to exactly ``size`` bytes (checked as it grows: damaged data never
    expands past ``size``).  Accepts exactly what the device's ``tinyml::UnpackBits()`` accepts.
    """
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        header = data[i]
        i += 1
        if header < 128:
            count = header + 1
            if n - i < count:
                raise PackBitsError(f"literal run of {count} bytes cut short at byte {i - 1}")
            out += data[i:i + count]
            i += count
        elif header > 128:
            if i >= n:
                raise PackBitsError(f"repeat header at byte {i - 1} without its byte")
            out += bytes((data[i],)) * (257 - header)
            i += 1
        if size is not None and len(out) > size:
            raise PackBitsError(f"unpacks to more than {size} bytes")
    if size is not None and len(out) != size:
        raise PackBitsError(f"unpacks to {len(out)} bytes, not {size}")
    return bytes(out)
