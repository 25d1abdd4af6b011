"""fit: a model whose arena alone exceeds the board's RAM is refused before anything is compiled.

The host tier reads a devicetree header in the form Zephyr generates (the lines the check reads,
copied from a qemu_cortex_m0 build); the Zephyr tier configures samples/run_model for qemu_cortex_m0
(16 KB of RAM) with a zoo model and expects the refusal in seconds, not a link error after minutes.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from zephyr_tinyml.firmware.build import SAMPLE_APP, build_app
from zephyr_tinyml.firmware.fit import DoesNotFit, board_ram, check_fit, smallest_arena
from zephyr_tinyml.firmware.zephyr_env import find_zephyr, workspace_modules

REPO = Path(__file__).resolve().parents[1]
DSCNN = REPO / "samples" / "zoo" / "mnist_dscnn"

HEADER = """\
#define DT_N_S_soc_S_memory_20000000_REG_IDX_0_VAL_ADDRESS 536870912 /* 0x20000000 */
#define DT_N_S_soc_S_memory_20000000_REG_IDX_0_VAL_SIZE 16384 /* 0x4000 */
#define DT_CHOSEN_zephyr_sram                    DT_N_S_soc_S_memory_20000000
#define DT_CHOSEN_zephyr_sram_EXISTS             1
"""


def _configured(tmp_path: Path, header: str = HEADER) -> Path:
    generated = tmp_path / "build" / "zephyr" / "include" / "generated"
    generated.mkdir(parents=True)
    (generated / "devicetree_generated.h").write_text(header)
    return tmp_path / "build"


def test_board_ram_is_the_chosen_sram_node(tmp_path: Path) -> None:
    assert board_ram(_configured(tmp_path)) == 16384
    assert board_ram(tmp_path / "not-configured") is None


def test_smallest_arena_is_the_least_model_arena_h_can_pick() -> None:
    arena = json.loads((DSCNN / "tinyml_model.json").read_text())["arena"]
    sizes = [m["bytes"] for m in arena["device"].values()] + [arena["fallback_bytes"]]
    assert smallest_arena(DSCNN) == min(sizes) > 16384


def test_a_model_too_big_for_the_board_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DoesNotFit, match=r"cannot fit qemu_cortex_m0: its tensor arena alone is [\d,]+ bytes .* 16,384 bytes"):
        check_fit(_configured(tmp_path), DSCNN, "qemu_cortex_m0")
    check_fit(_configured(tmp_path / "big", HEADER.replace("16384", str(512 * 1024))), DSCNN, "qemu_cortex_m0")
    check_fit(tmp_path / "not-configured", DSCNN, "qemu_cortex_m0")     # nothing known: the link decides


@pytest.mark.zephyr
def test_the_build_stops_before_compiling(tmp_path: Path) -> None:
    zephyr, why = find_zephyr()
    if zephyr is None:
        pytest.skip(why)
    if not {"hal_nordic", "nordic"} & set(workspace_modules(zephyr)):
        pytest.skip("qemu_cortex_m0 needs the hal_nordic module, which this workspace lacks (west update)")
    start = time.monotonic()
    with pytest.raises(DoesNotFit):
        build_app(SAMPLE_APP, "qemu_cortex_m0", tmp_path / "build", DSCNN, zephyr=zephyr)
    assert time.monotonic() - start < 300
    assert not list((tmp_path / "build").rglob("*.obj"))      # nothing compiled
    shutil.rmtree(tmp_path / "build")
