"""Text-line transports to a board: a QEMU process, a serial port, or any pair of file descriptors.

Why a small interface of our own (``write_line`` / ``read_line(timeout)``): the evaluation
session must never block forever, whatever carries the lines; each transport therefore reads with
a deadline and returns ``None`` when nothing complete arrived in time.  The pytest-twister-harness
``dut`` fits the same interface with a few lines (see samples/mnist_eval/pytest/).
"""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from pathlib import Path
from typing import Mapping, Protocol

from ..errors import TinymlError
from ..firmware.build_folder import cmake_cache
from ..firmware.qemu import start_run_target, stop_process_group

# A console line longer than this without a newline is cut (garbage on a serial line).
MAX_LINE = 16 * 1024



def split_lines(buffer: bytearray, lines: list[str]) -> bytearray:
    """Move the complete lines of ``buffer`` into ``lines``; return what is left of a partial one.

    A partial line longer than MAX_LINE is flushed as a line of its own, so garbage without a
    newline can never grow the buffer without bound.
    """
    *complete, rest = buffer.split(b"\n")
    lines.extend(line.rstrip(b"\r").decode("ascii", "replace") for line in complete)
    rest = bytearray(rest)
    if len(rest) > MAX_LINE:
        lines.append(rest.decode("ascii", "replace"))
        rest.clear()
    return rest

class LinkError(TinymlError):
    """The connection to the device failed or closed (QEMU exited, port unplugged)."""


class Link(Protocol):
    """Lines to and from a device; every read has a timeout."""

    description: str

    def write_line(self, line: str) -> None: ...

    def read_line(self, timeout: float) -> str | None:
        """The next complete line without its newline, or ``None`` after ``timeout`` seconds."""
        ...

    def close(self) -> None: ...


class FdLink:
    """Lines over a readable and a writable file descriptor (pipes, sockets, ptys).

    Reads are non-blocking with ``select``: a device that stops mid-line cannot hang the host.
    """

    def __init__(self, read_fd: int, write_fd: int, description: str):
        self.description = description
        self._read_fd, self._write_fd = read_fd, write_fd
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)  # a device that stops reading must not block a write forever
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._eof = False
        self._selector = selectors.DefaultSelector()
        self._selector.register(read_fd, selectors.EVENT_READ)

    def write_line(self, line: str) -> None:
        data = line.encode("ascii") if line.endswith("\n") else (line + "\n").encode("ascii")
        view = memoryview(data)
        deadline = time.monotonic() + 10.0
        while view:
            try:
                written = os.write(self._write_fd, view)
            except BlockingIOError:
                written = 0
            except (BrokenPipeError, ConnectionResetError, OSError) as exc:
                raise LinkError(f"{self.description}: the device stopped reading ({exc})") from None
            view = view[written:]
            if view and time.monotonic() > deadline:
                raise LinkError(f"{self.description}: the device did not take a {len(data)}-byte line in 10 s")
            if view:
                time.sleep(0.001)

    def read_line(self, timeout: float) -> str | None:
        deadline = time.monotonic() + max(0.0, timeout)
        while not self._lines:
            if self._eof:
                raise LinkError(f"{self.description}: the device closed the connection")
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._selector.select(remaining):
                return None
            self._fill()
        return self._lines.pop(0)

    def _fill(self) -> None:
        try:
            chunk = os.read(self._read_fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # a pty whose other side closed reads EIO
            chunk = b""
        if not chunk:
            self._eof = True
            if self._buffer:
                self._lines.append(self._buffer.decode("ascii", "replace"))
                self._buffer.clear()
            return
        self._buffer = split_lines(self._buffer + chunk, self._lines)

    def close(self) -> None:
        self._selector.close()


class QemuLink(FdLink):
    """A Zephyr QEMU build, run with its console UART on pipes this process holds.

    Started through the build's own ``run`` target, so every board's QEMU options (machine, CPU,
    ``-icount``) come from Zephyr, not from us.  A normal build's console is QEMU's stdio: our
    pipes to the process.  A build configured for twister (``QEMU_PIPE=<path>``) uses the named
    pipes ``<path>.in`` / ``<path>.out`` instead, which we create and open as twister would; so one
    build folder serves twister, the tests and ``tinyml eval``.
    """

    def __init__(self, build_dir: Path, env: Mapping[str, str] | None = None):
        build_dir = Path(build_dir)
        cache = cmake_cache(build_dir)
        if not cache:
            raise LinkError(f"{build_dir} is not a configured Zephyr build (no CMakeCache.txt)")
        if cache.get("QEMU_PTY", "").upper() in ("ON", "1", "TRUE", "YES", "Y"):
            raise LinkError(f"{build_dir} was configured with QEMU_PTY; use another --build-dir")
        pipe = cache.get("QEMU_PIPE")
        if not pipe:
            self.process = start_run_target(build_dir, env, stdin=subprocess.PIPE)
            assert self.process.stdin is not None and self.process.stdout is not None
            read_fd, write_fd = self.process.stdout.fileno(), self.process.stdin.fileno()
            self._fifos: list[int] = []
        else:
            base = pipe.strip()
            for suffix in (".in", ".out"):
                path = base + suffix
                if os.path.exists(path):
                    os.unlink(path)
                os.mkfifo(path)
            # O_RDWR opens a FIFO without waiting for the other side (QEMU opens its ends the same way).
            read_fd = os.open(base + ".out", os.O_RDWR | os.O_NONBLOCK)
            write_fd = os.open(base + ".in", os.O_RDWR | os.O_NONBLOCK)
            self._fifos = [read_fd, write_fd]
            with open(build_dir / "tinyml-qemu.log", "wb") as log:
                self.process = start_run_target(build_dir, env, stdin=subprocess.DEVNULL, stdout=log)
        super().__init__(read_fd, write_fd, f"QEMU ({build_dir})")

    def read_line(self, timeout: float) -> str | None:
        try:
            line = super().read_line(timeout)
        except LinkError:
            line = None
        if line is None and self.process.poll() is not None:
            raise LinkError(f"{self.description}: QEMU exited (status {self.process.returncode})")
        return line

    def close(self) -> None:
        super().close()
        proc = self.process
        stop_process_group(proc)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        for fd in self._fifos:
            os.close(fd)
        self._fifos = []


class SerialLink:
    """A board's UART through pyserial (``--port /dev/ttyACM0``); reads time out like the others."""

    def __init__(self, port: str, baud: int = 115200):
        import serial

        self.description = f"{port} at {baud} baud"
        try:
            self._serial = serial.Serial(port, baud, timeout=0.05, write_timeout=10)
        except serial.SerialException as exc:
            raise LinkError(f"cannot open {port}: {exc}. Check the cable, the port name (ls /dev/ttyACM* "
                            f"/dev/ttyUSB*) and that no terminal program holds it.") from None
        self._serial.reset_input_buffer()
        self._buffer = bytearray()
        self._lines: list[str] = []

    def write_line(self, line: str) -> None:
        import serial

        try:
            self._serial.write(line.encode("ascii") if line.endswith("\n") else (line + "\n").encode("ascii"))
            self._serial.flush()
        except serial.SerialException as exc:
            raise LinkError(f"{self.description}: write failed ({exc})") from None

    def read_line(self, timeout: float) -> str | None:
        import serial

        deadline = time.monotonic() + max(0.0, timeout)
        while not self._lines:
            if time.monotonic() >= deadline:
                return None
            try:
                chunk = self._serial.read(max(1, self._serial.in_waiting))
            except serial.SerialException as exc:
                raise LinkError(f"{self.description}: read failed ({exc})") from None
            if not chunk:
                continue
            self._buffer = split_lines(self._buffer + chunk, self._lines)
        return self._lines.pop(0)

    def close(self) -> None:
        self._serial.close()
