"""Starting and stopping QEMU: one place for the process a QEMU board's ``run`` target starts.

Every QEMU run goes through the build's own ``run`` target (``cmake --build <dir> --target run``),
so each board's QEMU options (machine, CPU, ``-icount``) come from Zephyr, not from us. The run
gets a process group of its own: stopping it stops ninja and the QEMU under it together.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, Mapping

from ..errors import FirmwareError

# Lines after which the app prints nothing more (see zephyr/lib/tinyml/self_test.cpp).
END_OF_RUN = re.compile(r"^SUMMARY |PROJECT EXECUTION FAILED|ZEPHYR FATAL ERROR")


def start_run_target(build_dir: Path, env: Mapping[str, str] | None, stdin: int | IO | None = None,
                     stdout: int | IO | None = subprocess.PIPE) -> subprocess.Popen:
    """Start the build's ``run`` target in a process group of its own (stop it with :func:`stop_process_group`)."""
    return subprocess.Popen(["cmake", "--build", str(build_dir), "--target", "run"], stdin=stdin, stdout=stdout,
                            stderr=subprocess.STDOUT, env=dict(env) if env else None, start_new_session=True)


def run_until_end(build_dir: Path, env: Mapping[str, str], timeout: float = 120.0,
                  end: re.Pattern[str] = END_OF_RUN) -> str:
    """Run a QEMU board's build (its ``run`` target) until the app's last line; returns the output.

    QEMU never exits on its own, so the run stops at the first line ``end`` matches (the summary or
    a failure line; an app whose last words come later, such as samples/secure_model's SecureFault,
    passes its own), or after ``timeout`` seconds, which is an error.
    """
    proc = start_run_target(build_dir, env)
    lines: list[str] = []
    finished = False
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    # Raw reads of the pipe, split into lines here: a buffered readline() would keep the lines after
    # the first of a chunk in Python's buffer, where select() cannot see them, and the summary that
    # arrived together with the last output line would wait for output that never comes.
    fd, pending, eof = proc.stdout.fileno(), b"", False
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while not finished and time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, min(1.0, deadline - time.monotonic()))):
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                eof = True
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                line = raw.decode(errors="replace").rstrip("\r")
                lines.append(line)
                if end.search(line):
                    finished = True
                    break
    exit_status = proc.poll()   # None while QEMU still runs (it never exits by itself)
    if eof and exit_status is None:
        try:                    # the output ended: the process is on its way out
            exit_status = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            exit_status = None
    _stop(proc)
    if pending.strip() and not finished:
        lines.append(pending.decode(errors="replace").rstrip("\r"))   # a last line without its newline
    output = "\n".join(lines) + "\n"
    if not finished:
        why = (f"did not finish within {timeout:.0f} s" if exit_status is None
               else f"ended (exit status {exit_status}) before the app's SUMMARY line")
        raise FirmwareError(f"QEMU run of {build_dir} {why}; "
                            f"last output:\n{''.join(l + chr(10) for l in lines[-20:])}")
    return output


def _stop(proc: subprocess.Popen) -> None:
    """Stop ninja and the QEMU it started (same process group), and close its output pipe."""
    stop_process_group(proc)
    if proc.stdout is not None:
        proc.stdout.close()


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group ``proc`` leads (ninja and the QEMU under it), SIGKILL after 5 s."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
