"""Size reports that CI can store, and the comparison of two of them for a pull request.

One report (JSON, ``schema: zephyr-tinyml-size-report/1``) holds, for each model x board build, the
flash and RAM totals, the spec's budget and the split by component, plus the commit, the Zephyr
version and the toolchain that produced it. ``tinyml size --compare BASE.json`` compares a head
report with it and renders ONE pull-request comment: a hidden marker (so the workflow updates the
same comment on every push), the budget verdict first, one row per build with absolute sizes beside
the deltas (largest change first), and per build a collapsible table of component deltas that add up
to the total delta to the byte ("unattributed" holds what the linker adds itself).

Why our own and not twister's ``--compare-report``/``fpdiff``: those diff a whole image's totals or
symbol trees and warn only; neither says how much of a change is the model (weights, arena, test
inputs), TFLM or the kernels, nor gates on a model's per-board budget. Budgets fail the comparison
only on a real breach, and a reviewer can accept an intended one (``--accept`` or a
``Size-increase-accepted: <why>`` line in the pull-request text).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TinymlError
from .boards import canonical
from .build_folder import cmake_cache, module_revisions
from .pr_comment import MARKER
from .size import SizeReport, budget_limit

SCHEMA = "zephyr-tinyml-size-report/1"
ACCEPT_LINE = re.compile(r"^\s*Size-increase-accepted:\s*(?P<why>\S.*?)\s*$", re.MULTILINE | re.IGNORECASE)

# size.py's component names, as a pull-request reader reads them.
COMPONENT_NAMES: dict[str, str] = {
    "model": "model weights",
    "arena": "tensor arena",
    "test inputs": "test inputs",
    "other": "unattributed (linker padding, tables)",
}


def component_name(component: str) -> str:
    return COMPONENT_NAMES.get(component, component)


def build_facts(build_dir: Path) -> dict[str, str]:
    """The Zephyr version, the toolchain and the TFLM / CMSIS-NN module revisions of a CMake build folder
    ("" for what it does not say)."""
    build_dir = Path(build_dir)
    zephyr = ""
    version_h = build_dir / "zephyr" / "include" / "generated" / "version.h"
    if version_h.is_file():
        match = re.search(r'KERNEL_VERSION_STRING\s+"([^"]+)"', version_h.read_text(errors="replace"))
        zephyr = match.group(1) if match else ""
    version = ""
    cache = cmake_cache(build_dir)
    variant = cache.get("ZEPHYR_TOOLCHAIN_VARIANT", "")
    compiler = Path(cache["CMAKE_C_COMPILER"]).name if cache.get("CMAKE_C_COMPILER") else ""
    for path in sorted((build_dir / "CMakeFiles").glob("*/CMakeCCompiler.cmake")):
        match = re.search(r'set\(CMAKE_C_COMPILER_VERSION "([^"]+)"\)', path.read_text(errors="replace"))
        if match:
            version = match.group(1)
    toolchain = " ".join(part for part in (variant + ":" if variant else "", compiler, version) if part)
    modules = ", ".join(f"{name} {rev or 'unknown revision'}" for name, rev in module_revisions(build_dir).items())
    return {"zephyr": zephyr, "toolchain": toolchain, "modules": modules}


def build_entry(report: SizeReport, model: str, app: str, board: str, budget: Any,
                build_dir: Path) -> dict[str, Any]:
    """One build of a size report."""
    limits = None
    if budget is not None:
        limits = {region: limit for region in ("flash", "ram") if (limit := budget_limit(budget, region)) is not None}
    return {
        "model": model, "app": app, "board": board,
        "flash": report.flash, "ram": report.ram,
        "flash_size": report.flash_size, "ram_size": report.ram_size,
        "budget": limits,
        "components": {component_name(s.component): {"flash": s.flash, "ram": s.ram} for s in report.shares},
        **build_facts(build_dir),
    }


def report_document(builds: list[dict[str, Any]], commit: str) -> dict[str, Any]:
    return {"schema": SCHEMA, "commit": commit, "builds": builds}


def load_report(path: Path) -> dict[str, Any]:
    """A report written by ``tinyml size --format json``; a clear error for anything else."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise TinymlError(f"{path}: no such size report; write one with "
                          f"`tinyml size <model> --format json --out {path.name}`") from None
    except ValueError as err:
        raise TinymlError(f"{path}: not JSON ({err})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise TinymlError(f"{path}: schema {found!r}, expected {SCHEMA!r}; write it with this version's "
                          f"`tinyml size --format json --out FILE`")
    for n, build in enumerate(data.get("builds", [])):
        missing = [key for key in ("model", "board", "flash", "ram", "components") if key not in build]
        if missing:
            raise TinymlError(f"{path}: builds[{n}] lacks {', '.join(missing)}")
    return data


@dataclass
class ComponentDelta:
    name: str
    base_flash: int
    head_flash: int
    base_ram: int
    head_ram: int

    @property
    def d_flash(self) -> int:
        return self.head_flash - self.base_flash

    @property
    def d_ram(self) -> int:
        return self.head_ram - self.base_ram


@dataclass
class BuildDelta:
    """One model x board: both sides (None where a side lacks the build) and the verdict."""

    model: str
    board: str
    base: dict[str, Any] | None
    head: dict[str, Any] | None
    components: list[ComponentDelta] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "new" if self.base is None else "removed" if self.head is None else "changed"

    def total(self, side: str, region: str) -> int:
        build = self.base if side == "base" else self.head
        return int(build[region]) if build else 0

    @property
    def d_flash(self) -> int:
        return self.total("head", "flash") - self.total("base", "flash")

    @property
    def d_ram(self) -> int:
        return self.total("head", "ram") - self.total("base", "ram")

    def breaches(self) -> list[str]:
        """The head build's budget overruns, each naming model, board, region and bytes over."""
        if self.head is None or not self.head.get("budget"):
            return []
        out = []
        for region, label in (("flash", "flash"), ("ram", "RAM")):
            limit = self.head["budget"].get(region)
            used = int(self.head[region])
            if limit is not None and used > limit:
                out.append(f"{self.model} on {self.board}: {label} {used:,} B is over its budget of "
                           f"{limit:,} B by {used - limit:,} B")
        return out


@dataclass
class Comparison:
    base_commit: str
    head_commit: str
    builds: list[BuildDelta]

    def breaches(self) -> list[str]:
        return [b for build in self.builds for b in build.breaches()]


def compare(base: dict[str, Any], head: dict[str, Any]) -> Comparison:
    """Pair the builds of two reports by (model, board); largest change first.

    A board is paired under its key (``mps2/an521/cpu0`` with ``mps2_an521``: firmware/boards.py), so a
    base built with Zephyr 3.4's names compares with a head built with 3.7's.
    """
    def index(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
        return {(b["model"], canonical(b["board"])): b for b in report.get("builds", [])}

    base_builds, head_builds = index(base), index(head)
    deltas = []
    for key in sorted(set(base_builds) | set(head_builds)):
        b, h = base_builds.get(key), head_builds.get(key)
        names = list(dict.fromkeys([*(h or {}).get("components", {}), *(b or {}).get("components", {})]))
        components = []
        for name in names:
            bc = (b or {}).get("components", {}).get(name, {})
            hc = (h or {}).get("components", {}).get(name, {})
            components.append(ComponentDelta(name, int(bc.get("flash", 0)), int(hc.get("flash", 0)),
                                             int(bc.get("ram", 0)), int(hc.get("ram", 0))))
        components.sort(key=lambda c: (-(abs(c.d_flash) + abs(c.d_ram)), names.index(c.name)))
        deltas.append(BuildDelta(key[0], key[1], b, h, components))
    deltas.sort(key=lambda d: (-(abs(d.d_flash) + abs(d.d_ram)), d.model, d.board))
    return Comparison(str(base.get("commit", "")), str(head.get("commit", "")), deltas)


def accepted_reason(accept: str | None, pr_body: str | None) -> str | None:
    """Why an over-budget build is accepted: ``--accept`` or the pull request's accept line."""
    if accept:
        return accept
    match = ACCEPT_LINE.search(pr_body or "")
    return match.group("why") if match else None


def _signed(n: int) -> str:
    return f"+{n:,}" if n > 0 else f"{n:,}" if n < 0 else "0"


def _percent(delta: int, base: int) -> str:
    if delta == 0:
        return "0 %"
    return f"{delta / base * 100:+.2f} %" if base else "new"


def _budget_cell(build: dict[str, Any] | None, region: str) -> str:
    if build is None or not build.get("budget") or build["budget"].get(region) is None:
        return "no budget"
    limit, used = build["budget"][region], int(build[region])
    room = limit - used
    verdict = f"{room:,} B free" if room >= 0 else f"**over by {-room:,} B**"
    return f"{used / limit * 100:.1f} % of {limit:,} ({verdict})"


def _short(commit: str) -> str:
    """The first 12 hex digits, keeping a suffix such as ``-dirty``."""
    if not commit:
        return "(unknown)"
    sha, dash, rest = commit.partition("-")
    return sha[:12] + dash + rest


def render_markdown(comparison: Comparison, accepted: str | None = None, run_url: str | None = None) -> str:
    """The pull-request comment (starts with :data:`MARKER`, which the workflow finds it by)."""
    breaches = comparison.breaches()
    lines = [MARKER, f"## Flash and RAM: {_short(comparison.head_commit)} against base {_short(comparison.base_commit)}", ""]
    if breaches and accepted:
        lines.append(f"**Over budget, accepted** ({accepted}):")
        lines += [f"- {b}" for b in breaches]
    elif breaches:
        lines.append("**Over budget** (this check fails; to accept an intended increase, label the pull request "
                     "`size-increase-accepted` or add a line `Size-increase-accepted: <why>` to its description):")
        lines += [f"- {b}" for b in breaches]
    else:
        budgeted = sum(1 for b in comparison.builds if b.head and b.head.get("budget"))
        lines.append(f"Every build is within its budget ({budgeted} of {len(comparison.builds)} builds have one).")
    lines += ["", "| model | board | flash B | Δ flash | RAM B | Δ RAM | flash budget | RAM budget |",
              "| --- | --- | ---: | ---: | ---: | ---: | --- | --- |"]
    for d in comparison.builds:
        if d.status == "removed":
            lines.append(f"| {d.model} | {d.board} | removed (was {d.total('base', 'flash'):,}) | | "
                         f"removed (was {d.total('base', 'ram'):,}) | | | |")
            continue
        flash, ram = d.total("head", "flash"), d.total("head", "ram")
        if d.status == "new":
            dflash = dram = "new"
        else:
            dflash = f"{_signed(d.d_flash)} ({_percent(d.d_flash, d.total('base', 'flash'))})"
            dram = f"{_signed(d.d_ram)} ({_percent(d.d_ram, d.total('base', 'ram'))})"
        lines.append(f"| {d.model} | {d.board} | {flash:,} | {dflash} | {ram:,} | {dram} | "
                     f"{_budget_cell(d.head, 'flash')} | {_budget_cell(d.head, 'ram')} |")
    for d in comparison.builds:
        if d.status == "removed":
            continue
        lines += ["", f"<details><summary>{d.model} on {d.board}: by component "
                      f"(flash {_signed(d.d_flash)} B, RAM {_signed(d.d_ram)} B)</summary>", "",
                  "| component | flash B | Δ flash | RAM B | Δ RAM |", "| --- | ---: | ---: | ---: | ---: |"]
        for c in d.components:
            lines.append(f"| {c.name} | {c.head_flash:,} | {_signed(c.d_flash)} | {c.head_ram:,} | {_signed(c.d_ram)} |")
        lines.append(f"| **total** | **{d.total('head', 'flash'):,}** | **{_signed(d.d_flash)}** | "
                     f"**{d.total('head', 'ram'):,}** | **{_signed(d.d_ram)}** |")
        facts = ", ".join(f"{k} {d.head[k]}" for k in ("zephyr", "toolchain") if d.head and d.head.get(k))
        if facts:
            lines += ["", f"Built with {facts}."]
        lines += ["", "</details>"]
    footer = f"base {comparison.base_commit or '(unknown)'}, head {comparison.head_commit or '(unknown)'}"
    if run_url:
        footer += f"; [the run that measured this]({run_url})"
    lines += ["", f"<sub>`tinyml size --compare`: {footer}.</sub>", ""]
    return "\n".join(lines)


def comparison_json(comparison: Comparison, accepted: str | None = None) -> dict[str, Any]:
    return {
        "schema": "zephyr-tinyml-size-comparison/1",
        "base_commit": comparison.base_commit, "head_commit": comparison.head_commit,
        "breaches": comparison.breaches(), "accepted": accepted,
        "builds": [{
            "model": d.model, "board": d.board, "status": d.status,
            "flash": d.total("head", "flash"), "ram": d.total("head", "ram"),
            "base_flash": d.total("base", "flash"), "base_ram": d.total("base", "ram"),
            "delta_flash": d.d_flash, "delta_ram": d.d_ram,
            "budget": (d.head or {}).get("budget"),
            "components": [{"component": c.name, "flash": c.head_flash, "ram": c.head_ram,
                            "delta_flash": c.d_flash, "delta_ram": c.d_ram} for c in d.components],
        } for d in comparison.builds],
    }
