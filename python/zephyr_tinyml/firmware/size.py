"""Where the firmware's flash and RAM go, and whether they fit the board's budget.

Why our own reader rather than Zephyr's ``ram_report`` / ``rom_report``: those need a full build
tree and print trees of source paths; the pipeline needs a few numbers it can check against a
budget and put in a report: totals per memory region, and the share of the model's pieces
(weights, tensor arena, test inputs), TFLM, CMSIS-NN, the Zephyr kernel and the C/C++ runtime.

Totals come from the ELF (pyelftools): every allocated section counts in RAM when its run address
lies in a RAM region, and in flash when its load address lies in a flash region, so initialised
data counts in both, as the linker's ``--print-memory-usage`` counts it.  Regions come from the
"Memory Configuration" table of the linker map.  The split comes from the map's input sections
(Zephyr compiles with ``-ffunction-sections -fdata-sections``, so one input section is one
function or object); whatever the linker adds itself (padding, tables) is reported as "other".
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from .boards import canonical, for_board

ARENA_SYMBOL = "tensor_arena"
# TFLM's naming (g_<name>_model_data), used when no generated folder says which symbol is the model.
MODEL_SYMBOL_RE = re.compile(r"^g_\w+_model_data$")


def model_symbol(model_dir: Path | None) -> str | None:
    """The model array's symbol as the generated sources name it (tinyml_model.json), None if unknown."""
    if model_dir is None:
        return None
    facts = Path(model_dir) / "tinyml_model.json"
    if facts.is_file():
        return json.loads(facts.read_text()).get("model_symbol")
    header = Path(model_dir) / "model_data.h"
    if header.is_file():
        match = re.search(r"extern const unsigned char (\w+)\[\];", header.read_text())
        return match.group(1) if match else None
    return None


def model_budgets(model_dir: Path) -> dict[str, dict[str, int]]:
    """Per-board budgets the spec gave, as the generated folder records them."""
    facts = Path(model_dir) / "tinyml_model.json"
    return json.loads(facts.read_text()).get("budgets", {}) if facts.is_file() else {}

# Order matters: the first matching rule names the component.  Each rule is
# (component, regex over "archive(object) section").
COMPONENT_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern)) for name, pattern in (
        ("arena", r"tensor_arena"),
        ("model", r"model_data\.cc\.obj"),
        ("test inputs", r"test_(images|data)\.cc\.obj"),
        ("app", r"(libapp\.a|/app\.dir/|libtinyml\.a)"),
        ("TFLM kernels", r"tflite-micro.*/(kernels|signal)/"),
        ("CMSIS-NN", r"cmsis-nn|cmsis_nn"),
        ("TFLM core", r"tflite-micro|tflite_micro|tensorflow"),
        ("C++ runtime", r"lib(std|sup)c\+\+\.a|cpp_|/lib/cpp/"),
        ("libc", r"(/|^)libc\.a|libc__|picolibc|newlib|/lib/libc/|libc_"),
        ("libgcc", r"libgcc\.a"),
        ("Zephyr kernel", r"libkernel\.a|/kernel/"),
        ("Zephyr (arch, drivers, libs)", r"zephyr|lib(arch|drivers|soc|subsys|lib|isr_tables)"),
    ))


@dataclass(frozen=True)
class Region:
    """One memory region of the linker script, and how much of it the image uses."""

    name: str
    origin: int
    length: int
    used: int

    def contains(self, address: int) -> bool:
        return self.origin <= address < self.origin + self.length


@dataclass(frozen=True)
class Share:
    """Bytes of one component in flash and in RAM."""

    component: str
    flash: int
    ram: int


@dataclass(frozen=True)
class SizeReport:
    """Totals, regions and the split by component of one linked image."""

    elf: str
    flash: int
    ram: int
    flash_size: int
    ram_size: int
    regions: tuple[Region, ...]
    shares: tuple[Share, ...]
    symbols: dict[str, int] = field(default_factory=dict)

    def share(self, component: str) -> Share:
        for share in self.shares:
            if share.component == component:
                return share
        return Share(component, 0, 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------
# Reading the ELF and the map
# ------------------------------------------------------------------------------------------
def region_report(elf: Path, map_file: Path | None = None, model_dir: Path | None = None) -> SizeReport:
    """Measure ``elf``; ``map_file`` (default: next to it) gives the regions and the split;
    ``model_dir`` (the generated sources) names the model's symbol."""
    symbol_name = model_symbol(model_dir)
    elf = Path(elf)
    map_file = Path(map_file) if map_file else elf.with_suffix(".map")
    map_text = map_file.read_text(errors="replace")
    regions = parse_memory_configuration(map_text)
    flash_regions = [r for r in regions if _is_flash(r.name)]
    ram_regions = [r for r in regions if _is_ram(r.name)]
    if not flash_regions or not ram_regions:
        raise ValueError(f"{map_file}: no FLASH/RAM regions in its Memory Configuration table")

    placement: dict[str, tuple[bool, bool]] = {}
    ends = {r.name: r.origin for r in regions}
    symbols: dict[str, int] = {}
    with open(elf, "rb") as handle:
        image = ELFFile(handle)
        segments = [s for s in image.iter_segments() if s["p_type"] == "PT_LOAD"]
        for section in image.iter_sections():
            if not section["sh_flags"] & SH_FLAGS.SHF_ALLOC or section["sh_size"] == 0:
                continue
            vma, size = section["sh_addr"], section["sh_size"]
            lma = _load_address(section, segments)
            ram_region = _containing(ram_regions, vma)
            flash_region = None
            # Stored in flash: a section with contents whose load address is there, unless it is loaded
            # where it runs in RAM (LMA = VMA: a board without XIP, e.g. qemu_cortex_a9, whose whole
            # image is loaded into RAM; its linker script's FLASH region may still span that address).
            if section["sh_type"] != "SHT_NOBITS" and not (ram_region is not None and lma == vma):
                flash_region = _containing(flash_regions, lma)
            placement[section.name] = (flash_region is not None, ram_region is not None)
            if ram_region is not None:
                ends[ram_region.name] = max(ends[ram_region.name], vma + size)
            if flash_region is not None:
                ends[flash_region.name] = max(ends[flash_region.name], lma + size)
        symtab = image.get_section_by_name(".symtab")
        if symtab is not None:
            for symbol in symtab.iter_symbols():
                key = _symbol_key(symbol.name, symbol_name)
                if key and symbol["st_size"]:
                    symbols[key] = symbols.get(key, 0) + symbol["st_size"]

    # Used = end of the last byte placed in the region, as ld's --print-memory-usage counts it
    # (alignment gaps included), so the totals match the figures every Zephyr build prints.
    regions = tuple(Region(r.name, r.origin, r.length, ends[r.name] - r.origin) for r in regions)
    flash = sum(r.used for r in regions if _is_flash(r.name))
    ram = sum(r.used for r in regions if _is_ram(r.name))

    shares = split_by_component(map_text, placement, flash, ram, _ObjectIndex(map_file.parent.parent))
    return SizeReport(elf=str(elf), flash=flash, ram=ram,
                      flash_size=_span(flash_regions), ram_size=_span(ram_regions),
                      regions=regions, shares=shares, symbols=symbols)


def _symbol_key(name: str, model: str | None = None) -> str | None:
    """Which of the model's pieces a symbol is, by name (C++ names are mangled, so substrings)."""
    if name == model if model else MODEL_SYMBOL_RE.match(name):
        return "model_data"
    if ARENA_SYMBOL in name:
        return "tensor_arena"
    if any(part in name for part in ("kTestImages", "kTestLabels", "kTestPixels", "kTestInputs", "kTestOutputs", "kTestPacked")):
        return "test_images"
    return None


def parse_memory_configuration(map_text: str) -> tuple[Region, ...]:
    """The ``Memory Configuration`` table of a GNU ld map (name, origin, length)."""
    regions = []
    in_table = False
    for line in map_text.splitlines():
        if line.startswith("Memory Configuration"):
            in_table = True
            continue
        if in_table and line.startswith("Linker script and memory map"):
            break
        fields = line.split()
        if in_table and len(fields) >= 3 and fields[1].startswith("0x") and fields[0] != "*default*":
            regions.append(Region(fields[0], int(fields[1], 16), int(fields[2], 16), 0))
    return tuple(regions)


_OUTPUT_SECTION = re.compile(r"^(?P<name>[^\s*][^\s]*)(?:\s+0x[0-9a-f]+\s+0x[0-9a-f]+.*)?$")
_INPUT_SECTION = re.compile(r"^ (?P<name>[^\s*][^\s]*|COMMON|\*fill\*)?\s*$|"
                            r"^ (?P<name2>[^\s]+)\s+0x(?P<addr>[0-9a-f]+)\s+0x(?P<size>[0-9a-f]+)(?:\s+(?P<obj>.*))?$")
_CONTINUATION = re.compile(r"^\s+0x(?P<addr>[0-9a-f]+)\s+0x(?P<size>[0-9a-f]+)(?:\s+(?P<obj>.*))?$")


def iter_input_sections(map_text: str) -> Iterable[tuple[str, str, int, str]]:
    """``(output section, input section, size, object)`` for each input section in the map."""
    text = map_text.split("Linker script and memory map", 1)[-1]
    output = ""
    pending: str | None = None
    for line in text.splitlines():
        if not line.strip():
            pending = None
            continue
        if not line.startswith(" "):
            match = _OUTPUT_SECTION.match(line)
            if match and not line.startswith(("LOAD ", "OUTPUT(", "START GROUP", "END GROUP")):
                output = match.group("name")
            pending = None
            continue
        if pending is not None:
            cont = _CONTINUATION.match(line)
            if cont:
                yield output, pending, int(cont.group("size"), 16), cont.group("obj") or ""
                pending = None
                continue
            pending = None
        if line.startswith("  "):
            continue  # symbol lines, assignments, patterns
        match = _INPUT_SECTION.match(line)
        if not match:
            continue
        if match.group("name2") is not None:
            if match.group("name2").startswith(("*(", "KEEP(", "SORT")):
                continue
            yield output, match.group("name2"), int(match.group("size"), 16), match.group("obj") or ""
        elif match.group("name"):
            pending = match.group("name")  # long name; address and size on the next line


def classify(input_section: str, obj: str) -> str:
    """The component an input section belongs to (see :data:`COMPONENT_RULES`)."""
    subject = f"{obj} {input_section}"
    for component, pattern in COMPONENT_RULES:
        if pattern.search(subject):
            return component
    return "other"


class _ObjectIndex:
    """Full source-derived paths of archive members, from a CMake build folder.

    The map names an object in an archive by its file name only (``lib.a(conv.cc.obj)``); the
    object's path under ``CMakeFiles/<target>.dir/`` still says where its source lives (e.g.
    ``.../tensorflow/lite/micro/kernels/conv.cc.obj``), which is what tells kernels from core.
    """

    _MEMBER = re.compile(r"^(?P<archive>.*/lib(?P<target>[^/]+)\.a)\((?P<member>[^)]+)\)$")

    def __init__(self, build_dir: Path) -> None:
        self.build_dir = build_dir
        self.index: dict[str, dict[str, str]] = {}

    def resolve(self, obj: str) -> str:
        match = self._MEMBER.match(obj)
        if match is None or Path(match.group("archive")).is_absolute():
            return obj
        archive = match.group("archive")
        if archive not in self.index:
            target_dir = (self.build_dir / archive).parent / "CMakeFiles" / f"{match.group('target')}.dir"
            members: dict[str, str] = {}
            if target_dir.is_dir():
                for path in target_dir.rglob("*.obj"):
                    members.setdefault(path.name, path.relative_to(target_dir).as_posix())
            self.index[archive] = members
        member = self.index[archive].get(match.group("member"))
        return f"{archive}({member})" if member else obj


def split_by_component(map_text: str, placement: Mapping[str, tuple[bool, bool]],
                       flash_total: int, ram_total: int,
                       objects: _ObjectIndex | None = None) -> tuple[Share, ...]:
    """Sum input sections per component; the remainder up to the totals is "other".

    Merged string sections (``.str1.1``) are listed in the map before the linker drops duplicate
    strings, so their listed sizes add up to more than the image holds: each component gets its
    listed strings scaled down to what is left of the flash total after everything else.
    """
    flash: dict[str, int] = {}
    ram: dict[str, int] = {}
    strings: dict[str, int] = {}
    for output, section, size, obj in iter_input_sections(map_text):
        in_flash, in_ram = placement.get(output, (False, False))
        if not (in_flash or in_ram) or size == 0:
            continue
        if objects is not None:
            obj = objects.resolve(obj)
        component = "other" if section == "*fill*" else classify(section, obj)
        if in_flash and not in_ram and _MERGED_STRINGS.search(section):
            strings[component] = strings.get(component, 0) + size
            continue
        if in_flash:
            flash[component] = flash.get(component, 0) + size
        if in_ram:
            ram[component] = ram.get(component, 0) + size
    listed = sum(strings.values())
    if listed:
        scale = min(1.0, max(0, flash_total - sum(flash.values())) / listed)
        for component, size in strings.items():
            flash[component] = flash.get(component, 0) + int(size * scale)
    flash["other"] = flash.get("other", 0) + flash_total - sum(flash.values())
    ram["other"] = ram.get("other", 0) + ram_total - sum(ram.values())
    order = [name for name, _ in COMPONENT_RULES] + ["other"]
    return tuple(Share(name, flash.get(name, 0), ram.get(name, 0)) for name in order
                 if flash.get(name, 0) or ram.get(name, 0))


_MERGED_STRINGS = re.compile(r"\.str\d*\.\d+$|^\.rodata\.str")


def _load_address(section: Any, segments: list[Any]) -> int:
    """Where a section is stored in the image (its LMA), from the segment that holds it."""
    vma = section["sh_addr"]
    for segment in segments:
        if segment["p_vaddr"] <= vma < segment["p_vaddr"] + max(segment["p_memsz"], 1) \
                and section["sh_offset"] >= segment["p_offset"]:
            return segment["p_paddr"] + (vma - segment["p_vaddr"])
    return vma


def _containing(regions: Iterable[Region], address: int) -> Region | None:
    """The region ``address`` lies in; where regions overlap, the one starting last (the inner one).

    A linker script may declare a region over the start of the next: TF-M's STM32U5 BL2 has
    FLASH_NOHDP at 0x0c02a000 (8 KB) and FLASH_OTP at 0x0c02b000, where its .BL2_OTP section goes.
    """
    inside = [r for r in regions if r.contains(address)]
    return max(inside, key=lambda r: r.origin) if inside else None


def _span(regions: Iterable[Region]) -> int:
    """Bytes the regions cover together, overlaps counted once."""
    total, end = 0, None
    for region in sorted(regions, key=lambda r: r.origin):
        start, stop = region.origin, region.origin + region.length
        if end is not None and start < end:
            start = end
        if stop > start:
            total += stop - start
            end = stop
    return total


def _is_flash(name: str) -> bool:
    # VENEERS: TF-M's secure image's non-secure-callable entry points, in secure flash.
    return name.upper() in ("FLASH", "ROM", "VENEERS") or name.upper().startswith("FLASH")


def _is_ram(name: str) -> bool:
    upper = name.upper()
    return upper in ("RAM", "SRAM") or upper.startswith(("SRAM", "RAM"))


# ------------------------------------------------------------------------------------------
# Budgets
# ------------------------------------------------------------------------------------------
def check_budget(report: SizeReport, budget: Any) -> list[str]:
    """Violations of ``budget`` (anything with ``flash``/``ram`` attributes or keys), empty if none."""
    problems = []
    for region, used in (("flash", report.flash), ("ram", report.ram)):
        limit = budget_limit(budget, region)
        if limit is not None and used > limit:
            problems.append(f"{region} {used:,} B exceeds the budget of {limit:,} B by {used - limit:,} B")
    return problems


# ------------------------------------------------------------------------------------------
# Renderers
# ------------------------------------------------------------------------------------------
def _rows(report: SizeReport) -> list[tuple[str, int, int]]:
    return [(s.component, s.flash, s.ram) for s in report.shares]


def budget_limit(budget: Any, region: str) -> int | None:
    """A budget's bytes for ``region`` ("flash" or "ram"): from a spec's Budget or a mapping; None if unset."""
    if budget is None:
        return None
    value = budget.get(region) if isinstance(budget, Mapping) else getattr(budget, region, None)
    return None if value is None else int(value)


def budget_rows(report: SizeReport, budget: Any) -> list[tuple[str, int, int | None, str]]:
    """(region, used, budget, verdict) for flash and RAM; verdict is "over by N" or "N free"."""
    rows = []
    for region, used in (("flash", report.flash), ("RAM", report.ram)):
        limit = budget_limit(budget, region.lower())
        verdict = "-" if limit is None else (f"over by {used - limit:,}" if used > limit else f"{limit - used:,} free")
        rows.append((region, used, limit, verdict))
    return rows


def model_share(report: SizeReport) -> list[tuple[str, int, int]]:
    """The model's part of the image: weights, arena, TFLM code (core + kernels), test inputs."""
    tflm = [s for s in report.shares if s.component.startswith("TFLM")]
    return [("model weights", report.share("model").flash, report.share("model").ram),
            ("tensor arena", report.share("arena").flash, report.share("arena").ram),
            ("TFLM code", sum(s.flash for s in tflm), sum(s.ram for s in tflm)),
            ("test inputs", report.share("test inputs").flash, report.share("test inputs").ram)]


def to_table(report: SizeReport, title: str | None = None, budget: Any = None) -> Any:
    """A rich Table: one row per component, the totals against the regions, then the budget check."""
    from rich.table import Table

    table = Table(title=title or f"Memory use of {Path(report.elf).name}")
    table.add_column("component")
    table.add_column("flash B", justify="right")
    table.add_column("RAM B", justify="right")
    for component, flash, ram in _rows(report):
        table.add_row(component, f"{flash:,}", f"{ram:,}")
    table.add_section()
    table.add_row("total", f"{report.flash:,} / {report.flash_size:,}",
                  f"{report.ram:,} / {report.ram_size:,}", style="bold")
    if budget is not None:
        table.add_section()
        for region, used, limit, verdict in budget_rows(report, budget):
            style = "bold red" if verdict.startswith("over") else "green"
            column = (f"budget {limit:,}: {verdict}" if limit is not None else "no budget")
            table.add_row(f"{region} budget", column if region == "flash" else "",
                          column if region == "RAM" else "", style=style)
    return table


def to_markdown(report: SizeReport, budget: Any = None, title: str | None = None) -> str:
    """Markdown for pull requests: budget check first, then the model's share and the full split."""
    lines = [f"### {title}\n"] if title else []
    if budget is not None:
        lines += ["| region | used B | budget B | |", "| --- | ---: | ---: | --- |"]
        lines += [f"| {r} | {u:,} | {'-' if l is None else f'{l:,}'} | {v} |" for r, u, l, v in budget_rows(report, budget)]
        lines.append("")
    lines += ["| model's share | flash B | RAM B |", "| --- | ---: | ---: |"]
    lines += [f"| {c} | {f:,} | {r:,} |" for c, f, r in model_share(report)]
    lines += ["", "| component | flash B | RAM B |", "| --- | ---: | ---: |"]
    lines += [f"| {c} | {f:,} | {r:,} |" for c, f, r in _rows(report)]
    lines.append(f"| **total** | **{report.flash:,}** of {report.flash_size:,} | "
                 f"**{report.ram:,}** of {report.ram_size:,} |")
    return "\n".join(lines) + "\n"


def to_json(report: SizeReport, budget: Any = None) -> str:
    data = report.to_dict()
    if budget is not None:
        data["budget"] = [{"region": r, "used": u, "budget": l, "verdict": v} for r, u, l, v in budget_rows(report, budget)]
    data["model_share"] = [{"component": c, "flash": f, "ram": r} for c, f, r in model_share(report)]
    return json.dumps(data, indent=2)


# ------------------------------------------------------------------------------------------
# Build-system hook: the module's zephyr/CMakeLists.txt runs this after linking when
# TINYML_BUDGET_CHECK is on, so twister fails a build that is over its budget.
# ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    import argparse

    import yaml

    parser = argparse.ArgumentParser(prog="python -m zephyr_tinyml.firmware.size",
                                     description="Memory use of a Zephyr image, checked against a budget.")
    parser.add_argument("elf", type=Path)
    parser.add_argument("--map", type=Path, help="linker map (default: next to the ELF)")
    parser.add_argument("--spec", type=Path, help="model spec whose budgets: to check")
    parser.add_argument("--model-dir", type=Path, help="generated model folder: its tinyml_model.json gives the "
                                                       "model symbol and the budgets")
    parser.add_argument("--board", help="board name for the spec's budgets")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = parser.parse_args(argv)

    report = region_report(args.elf, args.map, args.model_dir)
    if args.spec:
        budgets = (yaml.safe_load(args.spec.read_text()) or {}).get("budgets", {})
    else:
        budgets = model_budgets(args.model_dir) if args.model_dir else {}
    source = args.spec or (args.model_dir / "tinyml_model.json" if args.model_dir else None)
    # The build passes its whole board target (mps2/an521/cpu0 on Zephyr 3.7+); budgets are keyed
    # by either name, and the messages use the key (mps2_an521).
    board = canonical(args.board or "")
    budget = for_board(budgets, args.board) if args.board else None
    print(to_markdown(report, budget), end="")
    if args.json:
        args.json.write_text(to_json(report, budget))
    if not (source and args.board):
        return 0
    if budget is None:
        print(f"budget: none for {board} in {source}; not checked")
        return 0
    problems = check_budget(report, budget)
    for problem in problems:
        print(f"BUDGET EXCEEDED ({board}): {problem}")
    if not problems:
        print(f"budget OK ({board}): flash {report.flash:,} <= {budget['flash']:,} B, "
              f"RAM {report.ram:,} <= {budget['ram']:,} B")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
