"""zephyr_env: where Zephyr is found, and what a build gets in its environment."""

from __future__ import annotations

from pathlib import Path

from zephyr_tinyml.firmware.zephyr_env import find_zephyr


def make_zephyr(root: Path) -> Path:
    """A directory that passes for a Zephyr tree (VERSION + cmake/modules)."""
    (root / "cmake" / "modules").mkdir(parents=True)
    (root / "VERSION").write_text("VERSION_MAJOR = 3\nVERSION_MINOR = 4\nPATCHLEVEL = 99\n")
    return root


def make_module(path: Path) -> Path:
    (path / "zephyr").mkdir(parents=True)
    (path / "zephyr" / "module.yml").write_text("build:\n  cmake: .\n")
    return path


def test_zephyr_base_wins(tmp_path: Path) -> None:
    base = make_zephyr(tmp_path / "somewhere" / "zephyr")
    env, why = find_zephyr(start=tmp_path, environ={"ZEPHYR_BASE": str(base), "HOME": str(tmp_path)})
    assert env is not None and env.base == base.resolve()
    assert env.found_by == "ZEPHYR_BASE" and "ZEPHYR_BASE" in why
    assert env.version == "3.4.99"
    assert env.env({})["ZEPHYR_BASE"] == str(base.resolve())


def test_west_workspace_around_the_checkout(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / ".west").mkdir(parents=True)
    (ws / ".west" / "config").write_text("[manifest]\npath = app\n\n[zephyr]\nbase = zephyr\n")
    make_zephyr(ws / "zephyr")
    tflm = make_module(ws / "modules" / "lib" / "tflite-micro")
    checkout = ws / "app" / "samples"
    checkout.mkdir(parents=True)

    env, why = find_zephyr(start=checkout, environ={"HOME": str(tmp_path), "PATH": ""})
    assert env is not None and env.workspace == ws.resolve() and env.found_by == "west workspace"
    # No manifest west can read here, so the modules are scanned and passed explicitly.
    assert env.modules == (tflm.resolve(),)
    assert env.env({})["ZEPHYR_MODULES"] == str(tflm.resolve())


def test_default_workspace(tmp_path: Path) -> None:
    make_zephyr(tmp_path / "zephyrproject" / "zephyr")
    env, why = find_zephyr(start=tmp_path / "elsewhere", environ={"HOME": str(tmp_path), "PATH": ""})
    assert env is not None and env.found_by == "~/zephyrproject"


def test_not_found_says_why(tmp_path: Path) -> None:
    env, why = find_zephyr(start=tmp_path, environ={"HOME": str(tmp_path), "PATH": "",
                                                    "ZEPHYR_BASE": str(tmp_path / "nope")})
    assert env is None
    assert "nope" in why and "Set ZEPHYR_BASE" in why


def test_distro_gcc_becomes_gnuarmemb(tmp_path: Path) -> None:
    make_zephyr(tmp_path / "zephyrproject" / "zephyr")
    bindir = tmp_path / "gcc" / "bin"
    bindir.mkdir(parents=True)
    gcc = bindir / "arm-none-eabi-gcc"
    gcc.write_text("#!/bin/sh\n")
    gcc.chmod(0o755)
    env, _ = find_zephyr(start=tmp_path, environ={"HOME": str(tmp_path), "PATH": str(bindir)})
    assert env is not None
    assert env.toolchain == {"ZEPHYR_TOOLCHAIN_VARIANT": "gnuarmemb",
                             "GNUARMEMB_TOOLCHAIN_PATH": str((tmp_path / "gcc").resolve())}
    # A variant the user chose is left alone.
    env, _ = find_zephyr(start=tmp_path, environ={"HOME": str(tmp_path), "PATH": str(bindir),
                                                  "ZEPHYR_TOOLCHAIN_VARIANT": "zephyr"})
    assert env is not None and env.toolchain == {}
