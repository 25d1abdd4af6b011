"""Board names across Zephyr releases: the one place in Python that knows them.

Zephyr 3.7 names the hardware a build is for by *board target* (hardware model v2,
``board[@revision][/soc[/cpucluster][/variant]]``): ``mps2_an521`` became ``mps2/an521/cpu0``,
``mps3_an547`` became ``mps3/an547`` and, from Zephyr 4.0, ``mps3/corstone300/an547``. The QEMU
boards and ``nucleo_f446re`` kept their names, their full targets adding the SoC
(``qemu_cortex_m3/ti_lm3s6965``), and Zephyr still accepts the bare name for them.

Everything this project files under a board (the budgets of a model spec and of
``tinyml_model.json``, benchmark rows, the arena a board measured, build folders, the shared
Kconfig fragments ``zephyr/boards/<board>.conf``) uses the board's Zephyr 3.4 name, its *key*
(:func:`canonical`); a budget or a row written under the other name still applies
(:func:`same_board`, :func:`for_board`). What a build passes to ``-DBOARD`` depends on the Zephyr
it builds with (:func:`target_for`), read from that tree's own board files where it has them:
3.7+ ``boards/<vendor>/<board>/board.yml`` (board name, SoCs, variants) with the SoCs' CPU clusters
from ``soc/**/soc.yml``; 3.4 ``boards/<arch>/<board>/*.yaml`` (``identifier:``).

``zephyr/cmake/boards.cmake`` holds the same table for CMake (the fragment lookup, the QEMU options
and the budget check); ``tests/test_boards.py`` checks that the two agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import yaml

# The first release whose boards are board targets (hardware model v2).
HWM_V2 = (3, 7, 0)


def strip_revision(board: str) -> str:
    """The board without a revision: ``foo@1.0.0`` (3.4) and ``foo@1.0.0/soc/ns`` (3.7+)."""
    return re.sub(r"@[^/]*", "", board.strip())


def normalize(target: str) -> str:
    """A board target as Zephyr writes it in file names (NORMALIZED_BOARD_TARGET): slashes as ``_``."""
    return strip_revision(target).replace("/", "_")



@dataclass(frozen=True)
class Board:
    """One of our boards: its Zephyr 3.4 name and its board targets from Zephyr 3.7 on."""

    key: str
    # (first release, full board target), oldest first: the last one whose release is not newer
    # than a tree's version is that tree's name.
    targets: tuple[tuple[tuple[int, int, int], str], ...]

    @property
    def aliases(self) -> frozenset[str]:
        """Every name of this board: the 3.4 name, each full target and its normalized form."""
        names = {self.key}
        for _, target in self.targets:
            names.update({target, normalize(target)})
        return frozenset(names)

    def target(self, version: tuple[int, int, int]) -> str:
        """The full board target on a release of ``version`` (the 3.4 name before 3.7)."""
        chosen = self.key
        for since, target in self.targets:
            if version >= since:
                chosen = target
        return chosen


BOARDS: dict[str, Board] = {b.key: b for b in (
    Board("qemu_cortex_m3", (((3, 7, 0), "qemu_cortex_m3/ti_lm3s6965"),)),
    Board("qemu_cortex_m0", (((3, 7, 0), "qemu_cortex_m0/nrf51822"),)),
    Board("qemu_cortex_a9", (((3, 7, 0), "qemu_cortex_a9/xc7z007s"),)),
    Board("nucleo_f446re", (((3, 7, 0), "nucleo_f446re/stm32f446xx"),)),
    Board("mps2_an521", (((3, 7, 0), "mps2/an521/cpu0"),)),
    # Its non-secure target beside TF-M (secure models: samples/secure_model).
    Board("mps2_an521_ns", (((3, 7, 0), "mps2/an521/cpu0/ns"),)),
    Board("mps3_an547", (((3, 7, 0), "mps3/an547"), ((4, 0, 0), "mps3/corstone300/an547"))),
    # Hardware beside TF-M (secure models, `tinyml build --secure`; QEMU runs none of them). Their
    # targets from Zephyr 3.7's board.yml (board, SoC, CPU cluster of the ns variant) and the
    # <board>_<soc>[_<cluster>]_ns.yaml identifiers (tests/test_boards.py names the files).
    Board("b_u585i_iot02a_ns", (((3, 7, 0), "b_u585i_iot02a/stm32u585xx/ns"),)),
    Board("lpcxpresso55s69_ns", (((3, 7, 0), "lpcxpresso55s69/lpc55s69/cpu0/ns"),)),
    Board("nrf5340dk_nrf5340_cpuapp_ns", (((3, 7, 0), "nrf5340dk/nrf5340/cpuapp/ns"),)),
)}

_BY_ALIAS: dict[str, str] = {alias: board.key for board in BOARDS.values() for alias in board.aliases}

T = TypeVar("T")


def parse_version(version: str | tuple[int, ...]) -> tuple[int, int, int]:
    """``"3.7.0"``, ``"4.0.99"``, ``"v3.4.0-rc1"`` or a tuple -> ``(major, minor, patch)``."""
    if isinstance(version, tuple):
        return tuple((list(version) + [0, 0, 0])[:3])  # type: ignore[return-value]
    numbers = [int(n) for n in re.findall(r"\d+", str(version))[:3]]
    return tuple((numbers + [0, 0, 0])[:3])  # type: ignore[return-value]


def canonical(board: str) -> str:
    """The key we file ``board`` under: the 3.4 name of our boards, whichever name is given.

    Any other board is returned as given (without a revision): the project knows nothing to map.
    """
    name = strip_revision(board)
    return _BY_ALIAS.get(name, name)


def is_non_secure(board: str) -> bool:
    """Whether ``board`` names a non-secure target (one built beside TF-M): ``mps2_an521_ns``,
    ``mps2/an521/cpu0/ns``, ``nrf5340dk_nrf5340_cpuapp_ns``, and boards we do not know alike."""
    return normalize(canonical(board)).endswith("_ns")


def same_board(a: str, b: str) -> bool:
    """Whether two names name the same board: ``mps2_an521`` and ``mps2/an521/cpu0`` do.

    For boards we do not know, a bare board name and a target of that board (``nrf52840dk`` and
    ``nrf52840dk/nrf52840``) count as the same: Zephyr completes a bare name with the board's
    default qualifiers.
    """
    ka, kb = canonical(a), canonical(b)
    if ka == kb:
        return True
    if ka in BOARDS or kb in BOARDS:
        return False
    return ka.split("/")[0] == kb.split("/")[0] and ("/" not in ka or "/" not in kb)


def for_board(mapping: Mapping[str, T], board: str) -> T | None:
    """``mapping``'s value for ``board`` (budgets, rows), keyed by either of its names; None if none."""
    if board in mapping:
        return mapping[board]
    for key, value in mapping.items():
        if same_board(key, board):
            return value
    return None


def target_for(board: str, zephyr_version: str | tuple[int, ...], zephyr_base: Path | None = None,
               full: bool = False) -> str:
    """What to pass to ``-DBOARD`` for ``board`` (either name) on Zephyr ``zephyr_version``.

    Before 3.7 the 3.4 name. From 3.7 on the board target; for a board whose name did not change
    (``qemu_cortex_m3``) the bare name, which Zephyr completes (``full=True``: the whole target).
    With ``zephyr_base`` the tree's own board files decide where they can: whether it has
    board targets at all (a 3.6.99 tree may or may not), and which of a board's names it has
    (``mps3/an547`` or ``mps3/corstone300/an547`` in a tree between 3.7 and 4.0).
    A board we do not know is looked up in the tree under its other naming
    (``nrf5340dk_nrf5340_cpuapp`` <-> ``nrf5340dk/nrf5340/cpuapp``), else passed on as given.
    """
    version = parse_version(zephyr_version)
    v2 = is_hwm_v2(zephyr_base) if zephyr_base is not None else version >= HWM_V2
    key = canonical(board)
    known = BOARDS.get(key)
    if known is None:
        return _other_board(board, v2, zephyr_base)
    if not v2:
        return key
    target = known.target(max(version, HWM_V2))
    if zephyr_base is not None:
        present = set(tree_targets(zephyr_base, target.split("/")[0]))
        if target not in present:
            # The tree names the board otherwise than its version says (a development tree).
            target = next((t for _, t in reversed(known.targets) if t in present), target)
    if not full and target.split("/")[0] == key:
        return key
    return target


def _other_board(board: str, v2: bool, zephyr_base: Path | None) -> str:
    name = board.strip()
    if zephyr_base is None:
        return name
    plain = strip_revision(name)
    revision = re.search(r"@[^/]*", name)
    at = revision.group(0) if revision else ""
    if v2 and "/" not in plain:
        # An old name: the target that normalizes to it, of the longest board name it starts with.
        for board_name in _board_names(str(Path(zephyr_base).resolve())):
            if plain.startswith(board_name + "_"):
                for target in tree_targets(zephyr_base, board_name):
                    if normalize(target) == plain:
                        return board_name + at + target[len(board_name):]
    elif not v2 and "/" in plain:
        # A board target on a 3.4 tree: the identifier it normalizes to, if the tree has one.
        identifier = normalize(plain)
        if identifier in _identifiers(str(Path(zephyr_base).resolve())):
            return identifier + at
    return name


# ------------------------------------------------------------------------------------------
# A Zephyr tree's own board files
# ------------------------------------------------------------------------------------------
def is_hwm_v2(zephyr_base: Path) -> bool:
    """Whether the tree names boards by board target (``boards/<vendor>/<board>/board.yml``)."""
    return any(Path(zephyr_base).glob("boards/*/*/board.yml"))


def tree_targets(zephyr_base: Path, board_name: str) -> list[str]:
    """The board targets (3.7+) or identifiers (3.4) the tree has for the board named ``board_name``.

    3.7+: ``qemu_cortex_m3`` -> ``["qemu_cortex_m3/ti_lm3s6965"]``; ``mps2`` ->
    ``["mps2/an385", "mps2/an521/cpu0", "mps2/an521/cpu0/ns", "mps2/an521/cpu1"]``.
    3.4: the identifiers of the board's folder: ``mps2_an521`` -> ``["mps2_an521",
    "mps2_an521_ns", "mps2_an521_remote"]``. Empty when the tree has no such board.
    """
    return list(_tree_targets(str(Path(zephyr_base).resolve()), board_name))


@lru_cache(maxsize=64)
def _tree_targets(base: str, board_name: str) -> tuple[str, ...]:
    root = Path(base)
    if is_hwm_v2(root):
        for board_yml in sorted(root.glob("boards/*/*/board.yml")):
            for board in _board_entries(board_yml):
                if board.get("name") == board_name:
                    clusters = soc_clusters(root)
                    return tuple(board_targets(board, clusters))
        return ()
    found: list[str] = []
    for folder in sorted(root.glob(f"boards/*/{board_name}")):
        for description in sorted(folder.glob("*.yaml")):
            identifier = _identifier(description)
            if identifier:
                found.append(identifier)
    return tuple(found)


def board_targets(board: Mapping, clusters: Mapping[str, Iterable[str]]) -> list[str]:
    """The targets of one ``board.yml`` board entry (hardware model v2).

    ``board/soc`` for a SoC without CPU clusters, ``board/soc/cluster`` for each cluster
    (``clusters``: SoC name -> its clusters, from ``soc.yml``), and ``<that>/variant`` for each
    variant (a variant naming a ``cpucluster`` belongs to that cluster's target only; nested
    variants add further levels).
    """
    name = board["name"]
    targets: list[str] = []
    for soc in board.get("socs") or []:
        bases = [f"{name}/{soc['name']}/{c}" for c in clusters.get(soc["name"], ())] or [f"{name}/{soc['name']}"]
        for base in bases:
            targets.append(base)
            cluster = base.split("/")[2] if base.count("/") == 2 else None
            targets.extend(_variant_targets(base, soc.get("variants") or [], cluster))
    return targets


def _variant_targets(base: str, variants: list, cluster: str | None) -> list[str]:
    found: list[str] = []
    for variant in variants:
        if variant.get("cpucluster") and variant["cpucluster"] != cluster:
            continue
        target = f"{base}/{variant['name']}"
        found.append(target)
        found.extend(_variant_targets(target, variant.get("variants") or [], cluster))
    return found


def soc_clusters(zephyr_base: Path) -> dict[str, list[str]]:
    """SoC name -> its CPU clusters, from every ``soc/**/soc.yml`` of a 3.7+ tree."""
    return {k: list(v) for k, v in _soc_clusters(str(Path(zephyr_base).resolve())).items()}


@lru_cache(maxsize=8)
def _soc_clusters(base: str) -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {}
    for soc_yml in sorted(Path(base).glob("soc/**/soc.yml")):
        try:
            data = yaml.safe_load(soc_yml.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        found.update(clusters_in_soc_yml(data))
    return found


def clusters_in_soc_yml(data: object) -> dict[str, tuple[str, ...]]:
    """SoC name -> CPU clusters of one parsed ``soc.yml`` (family / series / socs, at any level)."""
    found: dict[str, tuple[str, ...]] = {}
    if isinstance(data, dict):
        for soc in data.get("socs") or []:
            if isinstance(soc, dict) and "name" in soc:
                found[soc["name"]] = tuple(c["name"] for c in soc.get("cpuclusters") or [])
        for level in ("family", "series"):
            for item in data.get(level) or []:
                found.update(clusters_in_soc_yml(item))
    return found


def _board_entries(board_yml: Path) -> list[dict]:
    """The board entries of a ``board.yml`` (``board:`` or, for several, ``boards:``)."""
    try:
        data = yaml.safe_load(board_yml.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return []
    if isinstance(data.get("board"), dict):
        return [data["board"]]
    return [b for b in data.get("boards") or [] if isinstance(b, dict)]


@lru_cache(maxsize=8)
def _board_names(base: str) -> tuple[str, ...]:
    """Every board name of a 3.7+ tree, longest first (so a name's longest board prefix wins)."""
    names = {b["name"] for board_yml in Path(base).glob("boards/*/*/board.yml")
             for b in _board_entries(board_yml) if "name" in b}
    return tuple(sorted(names, key=lambda n: (-len(n), n)))


@lru_cache(maxsize=8)
def _identifiers(base: str) -> frozenset[str]:
    """Every board identifier of a 3.4 tree (``boards/<arch>/<board>/*.yaml``)."""
    return frozenset(filter(None, (_identifier(d) for d in Path(base).glob("boards/*/*/*.yaml"))))


def _identifier(description: Path) -> str | None:
    match = re.search(r"^identifier:\s*['\"]?([^\s'\"]+)", description.read_text(errors="replace"), re.MULTILINE)
    return match.group(1) if match else None
