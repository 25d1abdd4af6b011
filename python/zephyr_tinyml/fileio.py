"""Atomic file writes and content hashing.

Every file the pipeline produces goes through :func:`write_atomic`, so an interrupted or failed run
never leaves a half-written model or source file behind for the next build to pick up.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Iterator


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def captured_fd(fd: int = 2) -> Iterator[io.StringIO]:
    """Capture what native code (TFLite, TFLM, absl) writes to ``fd`` while the block runs.

    Their C++ logging bypasses Python's ``sys.stderr``; the text is returned for error messages
    or parsing (TFLM's allocation report) instead of cluttering the user's terminal.
    """
    text = io.StringIO()
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(fd)
        try:
            os.dup2(capture.fileno(), fd)
            yield text
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            capture.seek(0)
            text.write(capture.read().decode("utf-8", "replace"))


def write_if_changed(path: Path, data: bytes | str) -> bool:
    """Write atomically unless the file already holds exactly ``data``; True when written.

    Keeping the timestamp of unchanged generated sources lets the firmware build stay incremental.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if path.is_file() and path.read_bytes() == payload:
        return False
    write_atomic(path, payload)
    return True


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's contents, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_hash(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (names and bytes, in sorted order)."""
    digest = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()
