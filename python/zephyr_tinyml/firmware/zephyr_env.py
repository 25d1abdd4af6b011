"""Find a Zephyr tree, its modules and a toolchain, so firmware builds need no shell setup.

Why: the pipeline runs from a plain checkout as often as from a west workspace, and the firmware
stage, the tests and twister all need the same answer to "which Zephyr, which modules, which
compiler".  Looked for in this order: ``$ZEPHYR_BASE``; a west workspace around the given directory
(walking up to a ``.west/`` folder); Zephyr's documented default workspace ``~/zephyrproject``.

Modules come from west when the workspace's manifest lists them, as Zephyr's own build would find
them; otherwise every ``zephyr/module.yml`` under the workspace's ``modules/`` folder is passed in
``ZEPHYR_MODULES``.  Without a Zephyr SDK, an ``arm-none-eabi-gcc`` on ``PATH`` is used as the
``gnuarmemb`` toolchain (see ``zephyr/toolchain/gnuarmemb.cmake`` for its picolibc).
"""

from __future__ import annotations

import configparser
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from west.configuration import MalformedConfig
from west.manifest import MalformedManifest, Manifest, ManifestImportFailed

DEFAULT_WORKSPACE = Path("~/zephyrproject")
# What west raises for a workspace whose config or manifest it cannot read (missing or malformed).
WEST_MANIFEST_ERRORS = (MalformedConfig, MalformedManifest, ManifestImportFailed, OSError, ValueError)


@dataclass(frozen=True)
class ZephyrEnv:
    """A usable Zephyr tree and the environment a build of it needs."""

    base: Path
    workspace: Path | None
    found_by: str
    modules: tuple[Path, ...] = ()
    toolchain: dict[str, str] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """``major.minor.patch`` from the tree's VERSION file."""
        values = {}
        for line in (self.base / "VERSION").read_text().splitlines():
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
        return ".".join(values.get(k, "0") for k in ("VERSION_MAJOR", "VERSION_MINOR", "PATCHLEVEL"))

    @property
    def twister(self) -> Path:
        return self.base / "scripts" / "twister"

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) plus what a Zephyr build needs."""
        env = dict(os.environ if base is None else base)
        env["ZEPHYR_BASE"] = str(self.base)
        if self.modules:
            env["ZEPHYR_MODULES"] = ";".join(str(m) for m in self.modules)
        for key, value in self.toolchain.items():
            env.setdefault(key, value)
        return env


def find_zephyr(start: Path | None = None,
                environ: Mapping[str, str] | None = None) -> tuple[ZephyrEnv | None, str]:
    """Locate Zephyr.  Returns ``(env, how it was found)`` or ``(None, why not)``."""
    environ = os.environ if environ is None else environ
    reasons = []

    if environ.get("ZEPHYR_BASE"):
        base = Path(environ["ZEPHYR_BASE"]).expanduser()
        if _is_zephyr(base):
            return _complete(base, _west_topdir(base), "ZEPHYR_BASE", environ), f"ZEPHYR_BASE={base}"
        reasons.append(f"ZEPHYR_BASE={base} is not a Zephyr tree (no VERSION or cmake/modules)")

    topdir = _west_topdir(Path.cwd() if start is None else start)
    if topdir is not None:
        base = _west_zephyr_base(topdir)
        if base is not None and _is_zephyr(base):
            return _complete(base, topdir, "west workspace", environ), f"west workspace {topdir}"
        reasons.append(f"west workspace {topdir} has no Zephyr tree")

    home = Path(environ.get("HOME", "~"))
    default = Path(str(DEFAULT_WORKSPACE).replace("~", str(home), 1))
    if _is_zephyr(default / "zephyr"):
        return (_complete(default / "zephyr", default if (default / ".west").is_dir() else None,
                          "~/zephyrproject", environ), f"default workspace {default}")
    reasons.append(f"no {default}/zephyr")

    return None, "Zephyr not found: " + "; ".join(reasons) + \
        ". Set ZEPHYR_BASE or run inside a west workspace (west init / west update)."


def _is_zephyr(path: Path) -> bool:
    return (path / "VERSION").is_file() and (path / "cmake" / "modules").is_dir()


def _west_topdir(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` holding ``.west/``."""
    start = start.expanduser().resolve()
    for candidate in (start, *start.parents):
        if (candidate / ".west").is_dir():
            return candidate
    return None


def _west_zephyr_base(topdir: Path) -> Path | None:
    """``zephyr.base`` from the workspace's west config, else ``<topdir>/zephyr``."""
    config = configparser.ConfigParser()
    config.read(topdir / ".west" / "config")
    base = config.get("zephyr", "base", fallback=None) or "zephyr"
    path = topdir / base
    return path if path.is_dir() else None


def _complete(base: Path, topdir: Path | None, found_by: str,
              environ: Mapping[str, str]) -> ZephyrEnv:
    modules: tuple[Path, ...] = ()
    if not environ.get("ZEPHYR_MODULES") and topdir is not None and not _west_lists_modules(topdir):
        modules = _scan_modules(topdir)
    return ZephyrEnv(base=base.resolve(), workspace=topdir, found_by=found_by, modules=modules,
                     toolchain=_toolchain(environ))


def _west_lists_modules(topdir: Path) -> bool:
    """True when west's manifest names at least one cloned project with a zephyr/module.yml."""
    try:
        manifest = Manifest.from_topdir(topdir=os.fspath(topdir))
    except WEST_MANIFEST_ERRORS:  # a workspace whose manifest west cannot read: scan instead
        return False
    for project in manifest.projects[1:]:  # [0] is the manifest repository itself
        if (Path(project.abspath) / "zephyr" / "module.yml").is_file() and project.is_cloned():
            return True
    return False


def _scan_modules(topdir: Path) -> tuple[Path, ...]:
    """Every ``modules/**/zephyr/module.yml`` up to three levels down (e.g. modules/lib/foo)."""
    root = topdir / "modules"
    found = []
    for depth in ("*", "*/*", "*/*/*"):
        for module_yml in sorted(root.glob(f"{depth}/zephyr/module.yml")):
            found.append(module_yml.parent.parent.resolve())
    return tuple(found)


def _toolchain(environ: Mapping[str, str]) -> dict[str, str]:
    """Toolchain variables to add when the environment names none and no Zephyr SDK is installed."""
    if environ.get("ZEPHYR_TOOLCHAIN_VARIANT") or environ.get("ZEPHYR_SDK_INSTALL_DIR"):
        return {}
    home = Path(environ.get("HOME", str(Path.home())))
    if any(home.glob("zephyr-sdk-*")) or any(Path("/opt").glob("zephyr-sdk-*")):
        return {}
    gcc = shutil.which("arm-none-eabi-gcc", path=environ.get("PATH"))
    if gcc is None:
        return {}
    return {"ZEPHYR_TOOLCHAIN_VARIANT": "gnuarmemb",
            "GNUARMEMB_TOOLCHAIN_PATH": str(Path(gcc).resolve().parent.parent)}


def workspace_modules(env: ZephyrEnv, environ: Mapping[str, str] | None = None) -> dict[str, Path]:
    """The Zephyr modules a build of ``env`` sees, by module name (``zephyr/module.yml``'s ``name``,
    else the folder name): ``ZEPHYR_MODULES``, else the scanned ``modules/`` folder, else the cloned
    projects of the west manifest."""
    environ = os.environ if environ is None else environ
    paths: list[Path] = []
    if environ.get("ZEPHYR_MODULES"):
        paths = [Path(p) for p in environ["ZEPHYR_MODULES"].split(";") if p]
    elif env.modules:
        paths = list(env.modules)
    elif env.workspace is not None:
        paths = _west_module_paths(env.workspace)
    found: dict[str, Path] = {}
    for path in paths:
        found[_module_name(path)] = path
    return found


def _west_module_paths(topdir: Path) -> list[Path]:
    try:
        manifest = Manifest.from_topdir(topdir=os.fspath(topdir))
    except WEST_MANIFEST_ERRORS:
        return list(_scan_modules(topdir))
    return [Path(p.abspath) for p in manifest.projects[1:]
            if (Path(p.abspath) / "zephyr" / "module.yml").is_file()]


def _module_name(path: Path) -> str:
    """``name:`` of the module's ``zephyr/module.yml``, else its folder name (Zephyr's own rule)."""
    import yaml

    module_yml = path / "zephyr" / "module.yml"
    try:
        data = yaml.safe_load(module_yml.read_text()) or {}
    except (OSError, yaml.YAMLError):
        data = {}
    name = data.get("name") if isinstance(data, dict) else None
    return str(name) if name else path.name
