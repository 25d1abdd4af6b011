"""Reading a Zephyr build folder: its CMake cache and its Kconfig values.

One reader for what several steps ask of a build folder (which app and board it holds, whether
it runs in QEMU, which kernels Kconfig chose, how QEMU's console was configured).
"""

from __future__ import annotations

import re
from pathlib import Path

from ..gitrev import checked_out_commit


def cmake_cache(build_dir: Path) -> dict[str, str]:
    """Every ``NAME:TYPE=value`` entry of ``CMakeCache.txt``; empty when the folder is not configured."""
    cache = Path(build_dir) / "CMakeCache.txt"
    if not cache.is_file():
        return {}
    values = {}
    for match in re.finditer(r"^([A-Za-z_][\w.+-]*)(?::\w+)?=(.*)$", cache.read_text(errors="replace"), re.MULTILINE):
        values[match.group(1)] = match.group(2)
    return values


def cached(build_dir: Path, name: str) -> str | None:
    """A variable's value in the build folder's CMake cache, None when absent."""
    return cmake_cache(build_dir).get(name)


def build_config(build_dir: Path) -> dict[str, str]:
    """The Kconfig values of a build (``zephyr/.config``), e.g. ``CONFIG_QEMU_TARGET`` -> ``y``."""
    path = Path(build_dir) / "zephyr" / ".config"
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("CONFIG_"):
            values[key] = value.strip('"')
    return values


def is_qemu_build(build_dir: Path) -> bool:
    """Whether the board of this build runs in QEMU (``mps2_an521`` does too, not only ``qemu_*``)."""
    return build_config(build_dir).get("CONFIG_QEMU_TARGET") == "y"


def module_dirs(build_dir: Path) -> dict[str, Path]:
    """The Zephyr modules the build used, by name (CMake's ``zephyr_modules.txt``: "name":"path":"cmake")."""
    listing = Path(build_dir) / "zephyr_modules.txt"
    if not listing.is_file():
        return {}
    modules = {}
    for line in listing.read_text(errors="replace").splitlines():
        parts = re.findall(r'"([^"]*)"', line)
        if len(parts) >= 2:
            modules[parts[0]] = Path(parts[1])
    return modules


def module_revisions(build_dir: Path, names: tuple[str, ...] = ("tflite-micro", "cmsis-nn")) -> dict[str, str]:
    """The git commit (12 digits) each named module of the build was checked out at, "" where its
    folder is not a git checkout. Why: a benchmark is only as reproducible as the TFLM and CMSIS-NN
    revisions it ran, and Zephyr's release does not fix them (a west.yml may override them)."""
    dirs = module_dirs(build_dir)
    return {name: checked_out_commit(dirs[name], digits=12) for name in names if name in dirs}
