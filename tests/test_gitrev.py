"""The commit a folder is checked out at, as reports name it (a real git repository in tmp_path)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from zephyr_tinyml.commands.common import commit_of
from zephyr_tinyml.gitrev import checked_out_commit


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture()
def repository(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.txt").write_text("one\n")
    _git(tmp_path, "add", "a.txt")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "one")
    return tmp_path


def test_full_short_and_dirty(repository: Path) -> None:
    sha = _git(repository, "rev-parse", "HEAD")
    assert checked_out_commit(repository) == sha
    assert checked_out_commit(repository, digits=12) == sha[:12]
    assert commit_of(repository) == sha
    (repository / "a.txt").write_text("two\n")
    assert commit_of(repository) == sha + "-dirty"
    assert checked_out_commit(repository) == sha  # only asked for, it marks nothing
    (repository / "untracked.txt").write_text("new\n")
    (repository / "a.txt").write_text("one\n")
    assert commit_of(repository) == sha  # untracked files do not make a checkout dirty


def test_not_a_checkout(tmp_path: Path) -> None:
    assert checked_out_commit(tmp_path / "missing") == ""
    assert commit_of(tmp_path) in ("", checked_out_commit(tmp_path))  # tmp_path may lie inside a checkout
