"""Before compiling: can the model's tensor arena fit the board's RAM at all?

A model that cannot fit a board fails only at the very end of a build, at the link ("region RAM
overflowed"), after TFLM has been compiled for minutes. Once CMake has configured the build, the
devicetree says how much RAM the board has (the ``zephyr,sram`` chosen node, which Zephyr's linker
script makes the RAM region), and the generated ``tinyml_model.json`` says which arena sizes
``model_arena.h`` can allocate (one per measured kernel build, and host TFLM's figure for the
others). When even the smallest of them exceeds the board's RAM, the link must fail: the build stops
before compiling anything, and says so.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import TinymlError
from ..model.arena import arena_sizes
from ..model.codegen import MODEL_FACTS


def board_ram(build_dir: Path) -> int | None:
    """Bytes of the ``zephyr,sram`` chosen node of a configured build; None when not found."""
    header = build_dir / "zephyr" / "include" / "generated" / "devicetree_generated.h"
    try:
        text = header.read_text()
    except OSError:
        return None
    chosen = re.search(r"^#define DT_CHOSEN_zephyr_sram\s+(\w+)", text, re.MULTILINE)
    if chosen is None:
        return None
    size = re.search(rf"^#define {chosen.group(1)}_REG_IDX_0_VAL_SIZE\s+(\d+)", text, re.MULTILINE)
    return int(size.group(1)) if size else None


def smallest_arena(generated_dir: Path) -> int | None:
    """The smallest ``kTensorArenaSize`` that ``model_arena.h`` can pick, from ``tinyml_model.json``."""
    try:
        return min(arena_sizes(json.loads((generated_dir / MODEL_FACTS).read_text())["arena"]))
    except (OSError, ValueError, KeyError):
        return None


class DoesNotFit(TinymlError):
    """The model's arena alone exceeds the board's RAM (raised by the build before compiling)."""

    def __init__(self, board: str, arena: int, ram: int, generated_dir: Path):
        self.board, self.arena, self.ram = board, arena, ram
        super().__init__(f"the model cannot fit {board}: its tensor arena alone is {arena:,} bytes "
                         f"({generated_dir / 'model_arena.h'}) and {board} has {ram:,} bytes of RAM (devicetree "
                         f"chosen zephyr,sram). Choose a board with more RAM or a smaller model (nothing was compiled)")


def check_fit(build_dir: Path, generated_dir: Path, board: str) -> None:
    """Raise :class:`DoesNotFit` when the model cannot fit ``board`` whatever else the image holds."""
    ram, arena = board_ram(build_dir), smallest_arena(generated_dir)
    if ram is not None and arena is not None and arena > ram:
        raise DoesNotFit(board, arena, ram, generated_dir)
