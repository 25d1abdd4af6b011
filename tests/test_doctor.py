"""``tinyml doctor``: real checks on this machine, and the verdict for each intended command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from zephyr_tinyml.doctor import Check, failures, interpreter_checks, python_checks, zephyr_support


def _doctor(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = dict(os.environ if env is None else env)
    environ["PYTHONPATH"] = str(ROOT / "python")
    environ["COLUMNS"] = "200"
    return subprocess.run([sys.executable, "-m", "zephyr_tinyml.cli", "doctor", *args], capture_output=True,
                          text=True, env=environ, timeout=120)


def test_host_pieces_are_all_here_and_the_interpreters_run():
    checks = python_checks() + interpreter_checks()
    assert all(c.ok for c in checks), [c for c in checks if not c.ok]
    names = {c.item for c in checks}
    assert {"Python", "tensorflow-cpu", "ai-edge-litert", "tflite-micro", "flatbuffers"} <= names
    assert any("ran sine model" in c.detail for c in checks if c.item == "host TFLM interpreter")


def test_without_zephyr_host_passes_and_build_fails_naming_the_fix(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in ("ZEPHYR_BASE", "ZEPHYR_TOOLCHAIN_VARIANT")}
    env["HOME"] = str(tmp_path)  # no ~/zephyrproject
    env["ZEPHYR_BASE"] = str(tmp_path / "nowhere")
    host = _doctor("--for", "host", env=env)
    assert host.returncode == 0, host.stdout + host.stderr
    assert "everything needed for 'host'" in host.stdout
    build = _doctor("--for", "build", env=env)
    assert build.returncode == 1
    assert "Zephyr not found" in build.stdout and "west init -l zephyr-tinyml" in build.stdout
    assert "missing: Zephyr" in build.stdout.replace("\n", " ")


def test_verdict_counts_only_what_the_command_needs():
    checks = [Check("host", "a", True, ""), Check("qemu", "QEMU", False, "not found", "apt-get install qemu-system-arm"),
              Check("firmware", "module cmsis-nn", False, "", required=False)]
    assert failures(checks, "host") == [] and failures(checks, "build") == []
    assert [c.item for c in failures(checks, "run")] == ["QEMU"]


def test_every_command_is_registered():
    """No command silently vanishes: the parser imports the later stages' commands plainly."""
    out = subprocess.run([sys.executable, "-m", "zephyr_tinyml.cli", "--help"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "python")}, timeout=60)
    for command in ("list", "build", "doctor", "size", "eval"):
        assert command in out.stdout, out.stdout


def test_zephyr_support_names_the_boards_of_the_release_found():
    """The names a user types on the Zephyr doctor found (recorded board facts: tests/test_boards.py)."""
    old = zephyr_support("3.4.99")
    assert old.ok and "mps2_an521," in old.detail and "mps2/an521" not in old.detail
    lts = zephyr_support("3.7.2")
    assert lts.ok and "mps2_an521 = mps2/an521/cpu0" in lts.detail and "mps3_an547 = mps3/an547" in lts.detail
    new = zephyr_support("4.4.2")
    assert new.ok and "mps3_an547 = mps3/corstone300/an547" in new.detail and "qemu_cortex_m3," in new.detail
    too_old = zephyr_support("2.7.6")
    assert not too_old.ok and "older than 3.4" in too_old.detail
