"""Which git commit a folder is checked out at.

One reader for the two places that name revisions in reports: the repository's own commit (size
reports, benchmark pages) and the commits of the TFLM and CMSIS-NN modules a firmware was built
from (a benchmark is only as reproducible as the module revisions it ran).
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def checked_out_commit(folder: Path, *, digits: int | None = None, mark_dirty: bool = False) -> str:
    """The commit checked out in ``folder`` ("" where it is not a git checkout or git is missing).

    ``digits`` shortens it (git's ``--short``); ``mark_dirty`` appends ``-dirty`` when tracked files
    have uncommitted changes, as ``git describe --dirty`` does.
    """
    revision = ["rev-parse", f"--short={digits}" if digits else "--verify", "HEAD"]
    try:
        sha = _git(folder, revision)
        dirty = _git(folder, ["status", "--porcelain", "--untracked-files=no"]) if mark_dirty else ""
    except (OSError, subprocess.CalledProcessError):
        return ""
    return sha + ("-dirty" if dirty else "")


def _git(folder: Path, args: list[str]) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                          check=True).stdout.strip()
