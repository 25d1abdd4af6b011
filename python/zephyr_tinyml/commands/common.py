"""What several commands share: the repository's commit for reports."""

from __future__ import annotations

from pathlib import Path

from ..gitrev import checked_out_commit


def commit_of(folder: Path) -> str:
    """The git commit checked out in ``folder``, with ``-dirty`` when it has uncommitted changes; "" outside git."""
    return checked_out_commit(folder, mark_dirty=True)
