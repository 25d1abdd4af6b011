"""The tensor arena the device allocates: measured on a 32-bit device per kernel build, not guessed.

Why not host TFLM's figure: the host is 64-bit, so TFLM's own structures in the arena (tensor
headers, node and registration tables) are larger there, and the host runs the reference kernels,
whose scratch buffers differ from CMSIS-NN's, whose scratch buffers in turn depend on the path it
compiles (plain C, DSP SIMD, Helium MVE). So the arena is a fact of (model, kernel build) on a 32-bit
target, measured on one: the self test finds the smallest arena in which ``AllocateTensors()``
succeeds (``arena_needed=``, ``CONFIG_TINYML_ARENA_PROBE``; ``arena_used_bytes()`` alone is too
small, since TFLM's memory planner holds temporary buffers that are freed before it reports),
``tinyml build --run`` records it here and regenerates ``model_arena.h``, and the header picks, at
compile time, the figure measured for the kernels the image is built with
(``zephyr/include/tinyml/kernels.h``). A kernel build never measured gets host TFLM's figure plus
the spec's margin, and the header says so.

Everything in ``model_arena.h`` comes from the ``arena`` entry of ``tinyml_model.json``, so a
header regenerated after a measurement is the same, byte for byte, as one generated from scratch
with that measurement.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TinymlError
from ..fileio import write_if_changed

ARENA_HEADER = "model_arena.h"
FACTS = "tinyml_model.json"

# Margin over the device's own measurement: what a TFLM revision change may add (a few structs).
# The measurement itself is exact for the image it ran in (the rerun proves the allocated size).
DEVICE_MARGIN_PERCENT = 1.0

# Kernel builds, as kernels.h names them (the SUMMARY line's kernels= field), with their C macro.
KERNEL_BUILDS: dict[str, str] = {
    "reference": "TINYML_KERNELS_REFERENCE",
    "cmsis-nn": "TINYML_KERNELS_CMSIS_NN",
    "cmsis-nn-dsp": "TINYML_KERNELS_CMSIS_NN_DSP",
    "cmsis-nn-mve": "TINYML_KERNELS_CMSIS_NN_MVE",
}


@dataclass(frozen=True)
class DeviceArena:
    """One kernel build's arena on a 32-bit board: the smallest that ``AllocateTensors()`` accepts
    (``needed``, a multiple of 16) and ``arena_used_bytes()`` afterwards (``used``, for reports), with
    the tflite-micro commit the image was built with ("" where not known): TFLM revisions differ in
    what they keep in the arena (CMSIS-NN 6's Helium scratch buffers: mnist needs 9,856 bytes with
    Zephyr 3.7's pair against 9,536 with 3.4's)."""

    needed: int
    used: int
    board: str
    tflm: str = ""

    @property
    def size(self) -> int:
        return device_arena_size(self.needed)


def aligned(size: int, alignment: int = 16) -> int:
    return -(-size // alignment) * alignment


def host_arena_size(measured: int, margin_percent: float, alignment: int) -> int:
    """Arena for a kernel build never measured on a device: host TFLM's bytes, its margin, aligned."""
    return aligned(math.ceil(measured * (1.0 + margin_percent / 100.0)), alignment)


def device_arena_size(needed: int, alignment: int = 16) -> int:
    """The device's measurement plus :data:`DEVICE_MARGIN_PERCENT`, rounded up to ``alignment``."""
    return aligned(math.ceil(needed * (1.0 + DEVICE_MARGIN_PERCENT / 100.0)), alignment)


def arena_facts(host_measured: int, margin_percent: float, alignment: int,
                device: dict[str, DeviceArena]) -> dict[str, Any]:
    """The ``arena`` entry of ``tinyml_model.json``."""
    return {
        "host_measured_bytes": host_measured,
        "host_margin_percent": margin_percent,
        "alignment": alignment,
        "fallback_bytes": host_arena_size(host_measured, margin_percent, alignment),
        "device_margin_percent": DEVICE_MARGIN_PERCENT,
        "device": {kernels: {"needed_bytes": d.needed, "used_bytes": d.used, "bytes": d.size, "board": d.board,
                             **({"tflite_micro": d.tflm} if d.tflm else {})}
                   for kernels, d in sorted(device.items())},
    }


def device_measurements(facts: dict[str, Any]) -> dict[str, DeviceArena]:
    """The measured kernel builds of an ``arena`` entry.

    Entries without ``needed_bytes`` (recorded by 0.x versions from ``arena_used_bytes()`` alone,
    which can be too small) are dropped, so the next ``--run`` measures them again.
    """
    return {kernels: DeviceArena(int(d["needed_bytes"]), int(d["used_bytes"]), str(d["board"]),
                                 str(d.get("tflite_micro", "")))
            for kernels, d in facts.get("device", {}).items() if "needed_bytes" in d}


def arena_sizes(arena: dict[str, Any]) -> list[int]:
    """Every ``kTensorArenaSize`` :func:`arena_h` writes for an ``arena`` entry: one per measured
    kernel build, and host TFLM's figure for the others."""
    return [d.size for d in device_measurements(arena).values()] + [int(arena["fallback_bytes"])]


def previous_measurements(folder: Path, model_sha256: str) -> dict[str, DeviceArena]:
    """Device measurements recorded in ``folder`` for this very model (by its sha256), else none.

    A changed model has a different arena, so measurements of another model are dropped.
    """
    path = Path(folder) / FACTS
    if not path.is_file():
        return {}
    try:
        facts = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if facts.get("model_sha256") != model_sha256:
        return {}
    return device_measurements(facts.get("arena", {}))


def arena_h(stamp: str, arena: dict[str, Any]) -> str:
    """``model_arena.h``: ``kTensorArenaSize`` for the kernel build being compiled."""
    device = device_measurements(arena)
    fallback = arena["fallback_bytes"]
    fallback_block = (
        f"// Not measured on a device for this kernel build: host TFLM's {arena['host_measured_bytes']} bytes "
        f"(64-bit, reference\n// kernels) + {arena['host_margin_percent']:g} %, rounded up to {arena['alignment']}. "
        f"`west tinyml build --run` on a QEMU board of\n// this core measures it and regenerates this file.\n"
        f"constexpr size_t kTensorArenaSize = {fallback};\n"
        f"constexpr size_t kArenaMeasuredDeviceBytes = 0;\n")
    blocks = []
    for kernels, macro in KERNEL_BUILDS.items():
        d = device.get(kernels)
        if d is not None:
            blocks.append((f"TINYML_POINTERS_32BIT && TINYML_KERNELS == {macro}",
                           f"// {kernels} kernels: AllocateTensors() needs {d.needed} bytes on {d.board} "
                           + (f"with tflite-micro {d.tflm} " if d.tflm else "")
                           + f"(arena_used_bytes() {d.used}),\n"
                           f"// + {arena['device_margin_percent']:g} %, rounded up to {arena['alignment']}.\n"
                           f"constexpr size_t kTensorArenaSize = {d.size};\n"
                           f"constexpr size_t kArenaMeasuredDeviceBytes = {d.needed};\n"))
    if blocks:
        body = "".join(f"#{'if' if i == 0 else 'elif'} {condition}\n{text}" for i, (condition, text) in enumerate(blocks))
        body += f"#else\n{fallback_block}#endif\n"
    else:
        body = fallback_block
    return f"""{stamp}
#ifndef TINYML_MODEL_ARENA_H_
#define TINYML_MODEL_ARENA_H_

#include <cstddef>

#include "tinyml/kernels.h"

namespace tinyml {{

// The tensor arena for the kernel build being compiled (tinyml/kernels.h): what a 32-bit device
// measured for it (the smallest arena AllocateTensors() accepted), plus a small margin.
{body}
constexpr size_t kArenaMeasuredHostBytes = {arena['host_measured_bytes']};

}}  // namespace tinyml

#endif  // TINYML_MODEL_ARENA_H_
"""


def record_device_arena(folder: Path, kernels: str, needed: int, used: int, board: str, tflm: str = "") -> bool:
    """Record a device's arena measurement in ``folder``; True when ``model_arena.h`` changed.
    ``tflm``: the tflite-micro commit the image was built with ("" where not known).

    Raises :class:`TinymlError` for a kernel build name this version does not know (an app or
    runtime from another version) or a folder without generated sources.
    """
    if kernels not in KERNEL_BUILDS:
        raise TinymlError(f"the firmware reported kernels={kernels!r}, which zephyr-tinyml does not know "
                          f"({', '.join(KERNEL_BUILDS)}); rebuild the app with this version's runtime")
    path = Path(folder) / FACTS
    if not path.is_file():
        raise TinymlError(f"no {path}: run `west tinyml build <model>` to generate the model sources first")
    facts = json.loads(path.read_text())
    arena = facts["arena"]
    device = device_measurements(arena)
    if needed < used or needed % 16:
        raise TinymlError(f"the firmware reported arena_needed={needed} with arena_used={used}: the needed size "
                          f"is a multiple of 16 and at least the used bytes; rebuild the app with this version's runtime")
    previous = device.get(kernels)
    if previous == DeviceArena(needed, used, board, tflm):
        return False
    if previous is not None and (previous.board, previous.tflm) != (board, tflm) and previous.needed >= needed:
        # One arena per kernel build serves every board of that build and every TFLM revision
        # (the Zephyr releases a user may build with): another board's or revision's run that
        # needs no more keeps the recorded one (and the sources unchanged, whatever the order
        # they ran in); one that needs more replaces it.
        return False
    device[kernels] = DeviceArena(needed, used, board, tflm)
    facts["arena"] = arena_facts(arena["host_measured_bytes"], arena["host_margin_percent"],
                                 arena["alignment"], device)
    stamp = "".join(f"// {line}\n" for line in facts["generated_by_lines"])
    changed = write_if_changed(Path(folder) / ARENA_HEADER, arena_h(stamp, facts["arena"]))
    write_if_changed(path, json.dumps(facts, indent=1, sort_keys=True) + "\n")
    return changed
