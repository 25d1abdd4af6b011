"""Board names across Zephyr releases (firmware/boards.py, zephyr/cmake/boards.cmake, app.cmake).

Host tier, no Zephyr needed: the facts below were read from Zephyr's own board files, and the small
trees built from them stand in for a Zephyr checkout. The CMake side runs in CMake's script mode
(``cmake -P``) with the variables each release gives an app before and after find_package(Zephyr).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from zephyr_tinyml.errors import FirmwareError
from zephyr_tinyml.firmware import boards
from zephyr_tinyml.firmware.boards import (BOARDS, canonical, clusters_in_soc_yml, for_board, is_hwm_v2,
                                           is_non_secure, normalize, same_board, target_for, tree_targets)
from zephyr_tinyml.firmware.build import _check_build_dir
from zephyr_tinyml.firmware.size_compare import compare

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------------
# Recorded facts. Upstream zephyrproject-rtos/zephyr, the file and (for the stored copies) the
# commit each was read at; a release is named where the file's contents date it.
# ------------------------------------------------------------------------------------------

# Zephyr 3.4 (the 3.4.99 tree, boards/arm/<board>/<board>*.yaml `identifier:`): board name = target.
IDENTIFIERS_3_4 = {
    # boards/arm/mps2_an521/mps2_an521.yaml, mps2_an521_ns.yaml, mps2_an521_remote.yaml
    "mps2_an521": ["mps2_an521", "mps2_an521_ns", "mps2_an521_remote"],
    # boards/arm/mps3_an547/mps3_an547.yaml, mps3_an547_ns.yaml
    "mps3_an547": ["mps3_an547", "mps3_an547_ns"],
    "qemu_cortex_m3": ["qemu_cortex_m3"],   # boards/arm/qemu_cortex_m3/qemu_cortex_m3.yaml
    "qemu_cortex_m0": ["qemu_cortex_m0"],   # boards/arm/qemu_cortex_m0/qemu_cortex_m0.yaml
    "qemu_cortex_a9": ["qemu_cortex_a9"],   # boards/arm/qemu_cortex_a9/qemu_cortex_a9.yaml
    "nucleo_f446re": ["nucleo_f446re"],     # boards/arm/nucleo_f446re/nucleo_f446re.yaml
}
# The non-secure targets beside TF-M (secure models), keyed by our name; the 3.4.99 tree's
# boards/arm/<folder>/<identifier>.yaml: the board's folder and all its identifiers.
NS_IDENTIFIERS_3_4 = {
    "mps2_an521_ns": ("mps2_an521", IDENTIFIERS_3_4["mps2_an521"]),
    # boards/arm/b_u585i_iot02a/b_u585i_iot02a.yaml, b_u585i_iot02a_ns.yaml
    "b_u585i_iot02a_ns": ("b_u585i_iot02a", ["b_u585i_iot02a", "b_u585i_iot02a_ns"]),
    # boards/arm/lpcxpresso55s69/lpcxpresso55s69_cpu0.yaml, _cpu1.yaml, _ns.yaml
    "lpcxpresso55s69_ns": ("lpcxpresso55s69", ["lpcxpresso55s69_cpu0", "lpcxpresso55s69_cpu1",
                                               "lpcxpresso55s69_ns"]),
    # boards/arm/nrf5340dk_nrf5340/nrf5340dk_nrf5340_cpuapp.yaml, _cpuapp_ns.yaml, _cpunet.yaml
    "nrf5340dk_nrf5340_cpuapp_ns": ("nrf5340dk_nrf5340", ["nrf5340dk_nrf5340_cpuapp", "nrf5340dk_nrf5340_cpuapp_ns",
                                                          "nrf5340dk_nrf5340_cpunet"]),
}

# Zephyr 3.7 (hardware model v2), boards/<vendor>/<board>/board.yml. The versions without
# `full_name:` (which later releases added).
BOARD_YML_3_7 = {
    # boards/qemu/cortex_m3/board.yml @ 350d6ed5767b5a0f2d245d98a484430567640d33
    "qemu/cortex_m3": "board:\n  name: qemu_cortex_m3\n  vendor: qemu\n  socs:\n  - name: ti_lm3s6965\n",
    # boards/arm/mps2/board.yml @ 8d6425a6587030891f3bb539104b2081c0e8993e
    "arm/mps2": ("board:\n  name: mps2\n  vendor: arm\n  socs:\n  - name: an385\n  - name: an521\n"
                 "    variants:\n    - name: ns\n      cpucluster: cpu0\n"),
    # boards/arm/mps3/board.yml as of v3.7.0 (SoC an547, variant ns); no stored copy of that version,
    # its target is the stored boards/arm/mps3/mps3_an547.yaml @ 7ec79c9536eaf242c1a9119dfc66c56a465059e8
    # (`identifier: mps3/an547`).
    "arm/mps3": "board:\n  name: mps3\n  vendor: arm\n  socs:\n  - name: an547\n    variants:\n    - name: ns\n",
    # The three boards below have one board.yml version of each shape; the SoC is the same in 3.7.
    "qemu/cortex_m0": "board:\n  name: qemu_cortex_m0\n  vendor: nordic\n  socs:\n  - name: nrf51822\n",
    "qemu/cortex_a9": "board:\n  name: qemu_cortex_a9\n  vendor: qemu\n  socs:\n  - name: xc7z007s\n",
    "st/nucleo_f446re": "board:\n  name: nucleo_f446re\n  vendor: st\n  socs:\n    - name: stm32f446xx\n",
}
# The TF-M boards' board.yml: the stored versions (later than 3.7: they carry `full_name:`, and
# nrf5340dk a nested `shop` variant) less what 3.7 did not have; the board, SoC, ns variant and its
# CPU cluster, which make the target, are those of the 3.7 targets below. Stored:
# boards/st/b_u585i_iot02a/board.yml @ 3de45ee86b170e74afaa1cc07eb985ac97a0f951,
# boards/nxp/lpcxpresso55s69/board.yml @ 07d5b2e3b9ae50ed56cb6c95b0239267488f14d3,
# boards/nordic/nrf5340dk/board.yml @ 137bdc6b6e696e4c4e95f465b96a41a3da5d38be.
BOARD_YML_TFM = {
    "st/b_u585i_iot02a": ("board:\n  name: b_u585i_iot02a\n  vendor: st\n  socs:\n    - name: stm32u585xx\n"
                          "      variants:\n        - name: ns\n"),
    "nxp/lpcxpresso55s69": ("board:\n  name: lpcxpresso55s69\n  vendor: nxp\n  socs:\n  - name: lpc55s69\n"
                            "    variants:\n    - name: \"ns\"\n      cpucluster: 'cpu0'\n"),
    "nordic/nrf5340dk": ("board:\n  name: nrf5340dk\n  vendor: nordic\n  socs:\n  - name: 'nrf5340'\n"
                         "    variants:\n    - name: 'ns'\n      cpucluster: 'cpuapp'\n"),
}
# Their SoCs' CPU clusters: soc/nxp/lpc/soc.yml @ 4f12333492cea00814db5b4cb45669a30c5c6d9a and
# soc/nordic/soc.yml @ 0148abc21836ad1b1913447e05e606d38b68978e (the parts for these SoCs); the
# STM32 SoCs have none but the dual-core H7s (soc/st/stm32/soc.yml, family st_stm32).
SOC_YML_TFM = {
    "nxp/lpc": ("family:\n- name: lpc\n  series:\n  - name: lpc55xxx\n    socs:\n    - name: lpc55s69\n"
                "      cpuclusters:\n      - name: cpu0\n      - name: cpu1\n"),
    "nordic": ("family:\n  - name: nordic_nrf\n    series:\n      - name: nrf53\n        socs:\n"
               "          - name: nrf5340\n            cpuclusters:\n              - name: cpuapp\n"
               "              - name: cpunet\n"),
    "st/stm32": "family:\n- name: st_stm32\n  series:\n  - name: stm32u5x\n    socs:\n    - name: stm32u585xx\n",
}
# The non-secure targets on Zephyr 3.7+, as twister's identifiers say: boards/arm/mps2/mps2_an521_cpu0_ns.yaml,
# boards/st/b_u585i_iot02a/b_u585i_iot02a_stm32u585xx_ns.yaml @ 060c2c3a29aec3256da8f5bf7759569079fb45b6,
# boards/nxp/lpcxpresso55s69/lpcxpresso55s69_lpc55s69_cpu0_ns.yaml @ 00ad2a422374566696c3c75e224e03577afabca0,
# boards/nordic/nrf5340dk/nrf5340dk_nrf5340_cpuapp_ns.yaml @ 060c2c3a29aec3256da8f5bf7759569079fb45b6.
NS_TARGETS = {
    "mps2_an521_ns": "mps2/an521/cpu0/ns",
    "b_u585i_iot02a_ns": "b_u585i_iot02a/stm32u585xx/ns",
    "lpcxpresso55s69_ns": "lpcxpresso55s69/lpc55s69/cpu0/ns",
    "nrf5340dk_nrf5340_cpuapp_ns": "nrf5340dk/nrf5340/cpuapp/ns",
}

# soc/arm/soc.yml as of v3.7.0: the AN521's two CPU clusters (cpu0: the secure M33 Zephyr's mps2_an521 ran on).
SOC_YML_3_7 = ("family:\n- name: arm\n  series:\n  - name: mps2\n    socs:\n    - name: an385\n    - name: an521\n"
               "      cpuclusters:\n      - name: cpu0\n      - name: cpu1\n  - name: mps3\n    socs:\n"
               "    - name: an547\n")

# Zephyr 4.4: the newest stored versions.
BOARD_YML_4_4 = {
    # boards/qemu/cortex_m3/board.yml (as in 3.7: the newest stored copy)
    "qemu/cortex_m3": BOARD_YML_3_7["qemu/cortex_m3"],
    # boards/arm/mps2/board.yml @ 684bc3b5ab983103d02a99f65850bda93d627644
    "arm/mps2": ("board:\n  name: mps2\n  full_name: V2M MPS2\n  vendor: arm\n  socs:\n  - name: an385\n"
                 "  - name: an521\n    variants:\n    - name: ns\n      cpucluster: cpu0\n"),
    # boards/arm/mps3/board.yml @ d59c1cf03c8ea3c52fdeaf6197c651add1b40aec (from 4.0: SoC corstone300,
    # the FPGA image a variant)
    "arm/mps3": ("board:\n  name: mps3\n  full_name: MPS3 AN547\n  vendor: arm\n  socs:\n"
                 "  - name: 'corstone300'\n    variants:\n    - name: 'an547'\n      variants:\n      - name: 'ns'\n"
                 "    - name: 'an552'\n      variants:\n      - name: 'ns'\n"
                 "    - name: 'fvp'\n      variants:\n      - name: 'ns'\n"),
    # boards/qemu/cortex_m0/board.yml @ 4d0b43fcbddc7eff92227a70bc1ee1c223ec6ee3
    "qemu/cortex_m0": ("board:\n  name: qemu_cortex_m0\n  full_name: QEMU Emulation for ARM Cortex-M0\n"
                       "  vendor: nordic\n  socs:\n  - name: nrf51822\n"),
    # boards/qemu/cortex_a9/board.yml @ 4d0b43fcbddc7eff92227a70bc1ee1c223ec6ee3
    "qemu/cortex_a9": ("board:\n  name: qemu_cortex_a9\n  full_name: QEMU Emulation for Cortex-A9\n"
                       "  vendor: qemu\n  socs:\n  - name: xc7z007s\n"),
    # boards/st/nucleo_f446re/board.yml @ 2c3af6ec124181657f7581f939764d65b2265549
    "st/nucleo_f446re": ("board:\n  name: nucleo_f446re\n  full_name: Nucleo F446RE\n  vendor: st\n"
                         "  socs:\n    - name: stm32f446xx\n"),
}
# soc/arm/soc.yml @ a2f2a4394ad9641a3ad80e931368582fdd20828a (the part for mps2 and mps3)
SOC_YML_4_4 = ("family:\n- name: arm\n  series:\n  - name: mps2\n    socs:\n    - name: an385\n    - name: an521\n"
               "      cpuclusters:\n      - name: cpu0\n      - name: cpu1\n  - name: mps3\n    socs:\n"
               "    - name: corstone300\n    - name: corstone310\n")

# What each release calls our boards: the full board target, and (twister's platform identifier,
# from the stored <board>*.yaml files named) the name twister knows.
TARGETS = {
    "3.4.0": {key: key for key in IDENTIFIERS_3_4},
    "3.7.0": {
        "qemu_cortex_m3": "qemu_cortex_m3/ti_lm3s6965",
        "qemu_cortex_m0": "qemu_cortex_m0/nrf51822",
        "qemu_cortex_a9": "qemu_cortex_a9/xc7z007s",
        "nucleo_f446re": "nucleo_f446re/stm32f446xx",
        # boards/arm/mps2/mps2_an521_cpu0.yaml @ 170e610e0d53772712a70faaba13abefca396b98: identifier: mps2/an521/cpu0
        "mps2_an521": "mps2/an521/cpu0",
        "mps3_an547": "mps3/an547",
    },
    "4.4.0": {
        # boards/qemu/cortex_m3/qemu_cortex_m3_ti_lm3s6965.yaml @ ceb1b35ad12dfc39399f3817b34d2efe02811540
        "qemu_cortex_m3": "qemu_cortex_m3/ti_lm3s6965",
        "qemu_cortex_m0": "qemu_cortex_m0/nrf51822",   # qemu_cortex_m0_nrf51822.yaml
        "qemu_cortex_a9": "qemu_cortex_a9/xc7z007s",
        "nucleo_f446re": "nucleo_f446re/stm32f446xx",   # nucleo_f446re_stm32f446xx.yaml
        "mps2_an521": "mps2/an521/cpu0",
        # boards/arm/mps3/mps3_corstone300_an547.yaml @ 3092d96e5bb8e19a808cd16189277197332d8cd3
        "mps3_an547": "mps3/corstone300/an547",
    },
}


def _v2_tree(root: Path, board_ymls: dict[str, str], soc_yml: str) -> Path:
    for folder, text in board_ymls.items():
        (root / "boards" / folder).mkdir(parents=True)
        (root / "boards" / folder / "board.yml").write_text(text)
    (root / "soc" / "arm").mkdir(parents=True)
    (root / "soc" / "arm" / "soc.yml").write_text(soc_yml)
    (root / "VERSION").write_text("VERSION_MAJOR = 4\n")
    return root


def _v1_tree(root: Path) -> Path:
    for board, identifiers in IDENTIFIERS_3_4.items():
        folder = root / "boards" / "arm" / board
        folder.mkdir(parents=True)
        for identifier in identifiers:
            (folder / f"{identifier}.yaml").write_text(f"identifier: {identifier}\narch: arm\n")
    return root


# ------------------------------------------------------------------------------------------
# Each of the six boards resolves both ways, on each release
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", sorted(TARGETS))
@pytest.mark.parametrize("key", sorted(IDENTIFIERS_3_4))
def test_each_board_resolves_both_ways(version: str, key: str) -> None:
    target = TARGETS[version][key]
    assert target_for(key, version, full=True) == target
    assert target_for(target, version, full=True) == target   # either name in, this release's out
    assert canonical(target) == key and canonical(key) == key
    assert same_board(key, target) and same_board(target, key)
    assert canonical(target.replace("/", "_")) == key            # NORMALIZED_BOARD_TARGET too


def test_a_renamed_board_needs_its_target_and_the_others_keep_their_name() -> None:
    """What a build passes to -DBOARD: the bare name where Zephyr still takes it."""
    assert target_for("mps2_an521", "3.7.0") == "mps2/an521/cpu0"
    assert target_for("mps3_an547", "3.7.0") == "mps3/an547"
    assert target_for("mps3_an547", "4.0.0") == "mps3/corstone300/an547"
    assert target_for("mps3/corstone300/an547", "3.4.99") == "mps3_an547"
    for key in ("qemu_cortex_m3", "qemu_cortex_m0", "qemu_cortex_a9", "nucleo_f446re"):
        assert target_for(key, "4.4.0") == key
        assert target_for(TARGETS["4.4.0"][key], "3.4.99") == key
    assert target_for("qemu_cortex_m3@1.0.0", "3.4.0") == "qemu_cortex_m3"   # a revision is not a board


def test_other_boards_pass_through() -> None:
    assert canonical("nrf52840dk/nrf52840") == "nrf52840dk/nrf52840"
    assert target_for("qemu_x86", "4.4.0") == "qemu_x86"
    assert same_board("nrf52840dk", "nrf52840dk/nrf52840")       # Zephyr completes a bare name
    assert not same_board("nrf5340dk/nrf5340/cpuapp", "nrf5340dk/nrf5340/cpunet")
    assert not same_board("mps2_an521", "mps2_an521_ns") and not same_board("mps2/an521/cpu0", "mps2/an521/cpu1")
    assert not same_board("mps2_an521", "mps3_an547")


@pytest.mark.parametrize("key", sorted(NS_TARGETS))
def test_each_non_secure_target_resolves_both_ways(key: str) -> None:
    """The TF-M boards: the 3.4 name up to 3.6, the whole target (never a bare name) from 3.7 on."""
    target = NS_TARGETS[key]
    assert key in BOARDS and key in NS_IDENTIFIERS_3_4[key][1]
    for version, expected in (("3.4.0", key), ("3.7.0", target), ("4.4.0", target)):
        for name in (key, target, normalize(target)):
            assert target_for(name, version) == target_for(name, version, full=True) == expected
    assert canonical(target) == canonical(normalize(target)) == canonical(key) == key
    assert same_board(key, target) and is_non_secure(key) and is_non_secure(target)
    secure_side = {"mps2_an521_ns": "mps2_an521"}.get(key, target.rsplit("/", 1)[0])
    assert not same_board(key, secure_side) and not is_non_secure(secure_side)


def test_non_secure_boards_we_do_not_know() -> None:
    assert is_non_secure("vnd/board/soc/ns") and is_non_secure("board_soc_ns")
    assert not is_non_secure("qemu_cortex_m3") and not is_non_secure("nrf5340dk/nrf5340/cpunet")


# ------------------------------------------------------------------------------------------
# A tree's own board files
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version, board_ymls, soc_yml", [("3.7.0", BOARD_YML_3_7, SOC_YML_3_7),
                                                           ("4.4.0", BOARD_YML_4_4, SOC_YML_4_4)])
def test_board_targets_read_from_a_v2_tree(tmp_path: Path, version: str, board_ymls: dict, soc_yml: str) -> None:
    tree = _v2_tree(tmp_path, board_ymls, soc_yml)
    assert is_hwm_v2(tree)
    mps2 = tree_targets(tree, "mps2")
    assert mps2 == ["mps2/an385", "mps2/an521/cpu0", "mps2/an521/cpu0/ns", "mps2/an521/cpu1"]
    assert tree_targets(tree, "qemu_cortex_m3") == ["qemu_cortex_m3/ti_lm3s6965"]
    for key, target in TARGETS[version].items():
        assert target in tree_targets(tree, target.split("/")[0])
        # The tree, not only the version, picks the name: an unreleased 3.99 tree has the 4.0 one.
        assert target_for(key, "3.99.0" if key == "mps3_an547" and version == "4.4.0" else version, tree,
                          full=True) == target


def test_non_secure_targets_read_from_a_v2_tree(tmp_path: Path) -> None:
    tree = _v2_tree(tmp_path, {**BOARD_YML_3_7, **BOARD_YML_TFM}, SOC_YML_3_7)
    for folder, text in SOC_YML_TFM.items():
        (tree / "soc" / folder).mkdir(parents=True)
        (tree / "soc" / folder / "soc.yml").write_text(text)
    assert tree_targets(tree, "b_u585i_iot02a") == ["b_u585i_iot02a/stm32u585xx", "b_u585i_iot02a/stm32u585xx/ns"]
    assert tree_targets(tree, "lpcxpresso55s69") == ["lpcxpresso55s69/lpc55s69/cpu0", "lpcxpresso55s69/lpc55s69/cpu0/ns",
                                                     "lpcxpresso55s69/lpc55s69/cpu1"]
    assert tree_targets(tree, "nrf5340dk") == ["nrf5340dk/nrf5340/cpuapp", "nrf5340dk/nrf5340/cpuapp/ns",
                                               "nrf5340dk/nrf5340/cpunet"]
    for key, target in NS_TARGETS.items():
        assert target_for(key, "3.7.0", tree) == target
        # Without the table row only the names that are normalized targets would be found: the 3.4 names
        # b_u585i_iot02a_ns and lpcxpresso55s69_ns drop the SoC (and the cluster), hence the rows.
        found = boards._other_board(key, True, tree)
        assert found == (target if normalize(target) == key else key)


def test_board_targets_read_from_a_3_4_tree(tmp_path: Path) -> None:
    tree = _v1_tree(tmp_path)
    assert not is_hwm_v2(tree)
    assert tree_targets(tree, "mps2_an521") == IDENTIFIERS_3_4["mps2_an521"]
    # Even a 3.6.99 version: a tree without board.yml files names boards the 3.4 way.
    assert target_for("mps2/an521/cpu0", "3.6.99", tree) == "mps2_an521"


def test_an_unknown_old_name_is_found_in_a_v2_tree(tmp_path: Path) -> None:
    """A board we have no table row for: its old name is the normalized form of one of its targets."""
    tree = _v2_tree(tmp_path, {
        "vnd/dual": ("board:\n  name: dual\n  vendor: vnd\n  socs:\n  - name: socx\n"
                     "    variants:\n    - name: ns\n      cpucluster: app\n")},
        "socs:\n- name: socx\n  cpuclusters:\n  - name: app\n  - name: net\n")
    assert tree_targets(tree, "dual") == ["dual/socx/app", "dual/socx/app/ns", "dual/socx/net"]
    assert target_for("dual_socx_app_ns", "4.4.0", tree) == "dual/socx/app/ns"
    assert target_for("dual_socx_net@2.0.0", "4.4.0", tree) == "dual@2.0.0/socx/net"
    assert target_for("dual_nothing", "4.4.0", tree) == "dual_nothing"


def test_clusters_of_a_soc_yml() -> None:
    assert clusters_in_soc_yml(yaml.safe_load(SOC_YML_4_4))["an521"] == ("cpu0", "cpu1")
    assert clusters_in_soc_yml(yaml.safe_load(SOC_YML_4_4))["corstone300"] == ()


def test_the_3_4_99_workspace_if_present() -> None:
    """The workspace the Zephyr tier builds with, when this machine has it: its own files agree."""
    base = Path("~/zephyrproject/zephyr").expanduser()
    if not (base / "boards").is_dir():
        pytest.skip(f"no Zephyr tree at {base}")
    version = boards.parse_version((base / "VERSION").read_text().replace("\n", " "))
    for key in IDENTIFIERS_3_4:
        target = target_for(key, version, base, full=True)
        assert canonical(target) == key
        assert target in tree_targets(base, target.split("/")[0])
    for key, (folder, identifiers) in NS_IDENTIFIERS_3_4.items():
        assert target_for(key, version, base) == key
        assert tree_targets(base, folder) == identifiers


# ------------------------------------------------------------------------------------------
# Budgets, build folders and size reports keyed by either name
# ------------------------------------------------------------------------------------------
def test_a_budget_keyed_by_either_name_applies_under_the_other() -> None:
    old = {"mps2_an521": {"flash": 1, "ram": 2}, "qemu_cortex_m3": {"flash": 3, "ram": 4}}
    new = {"mps3/corstone300/an547": {"flash": 5, "ram": 6}}
    for version in TARGETS:
        assert for_board(old, TARGETS[version]["mps2_an521"]) == {"flash": 1, "ram": 2}
        assert for_board(old, TARGETS[version]["qemu_cortex_m3"]) == {"flash": 3, "ram": 4}
    assert for_board(new, "mps3_an547") == for_board(new, "mps3/an547") == {"flash": 5, "ram": 6}
    assert for_board(old, "mps2_an521_ns") is None and for_board(old, "mps3_an547") is None


def test_a_build_folder_configured_with_a_qualified_target_is_the_same_board(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    build = tmp_path / "build"
    build.mkdir()
    (build / "CMakeCache.txt").write_text(f"CMAKE_HOME_DIRECTORY:INTERNAL={app}\n"
                                          "CACHED_BOARD:STRING=mps2/an521/cpu0\n")
    _check_build_dir(build, app, "mps2_an521")
    _check_build_dir(build, app, "mps2/an521/cpu0")
    with pytest.raises(FirmwareError, match="holds a build for mps2/an521/cpu0"):
        _check_build_dir(build, app, "mps2_an521_ns")
    (build / "CMakeCache.txt").write_text(f"CMAKE_HOME_DIRECTORY:INTERNAL={app}\n"
                                          "CACHED_BOARD:STRING=qemu_cortex_m3/ti_lm3s6965\n")
    _check_build_dir(build, app, "qemu_cortex_m3")
    with pytest.raises(FirmwareError):
        _check_build_dir(build, app, "qemu_cortex_m0")


def test_size_reports_of_either_naming_pair_up() -> None:
    def report(board: str, flash: int) -> dict:
        return {"builds": [{"model": "mnist", "board": board, "flash": flash, "ram": 1,
                            "components": {"model weights": {"flash": flash, "ram": 1}}}]}

    comparison = compare(report("mps2_an521", 100), report("mps2/an521/cpu0", 120))
    assert [(d.board, d.d_flash) for d in comparison.builds] == [("mps2_an521", 20)]


# ------------------------------------------------------------------------------------------
# The CMake side: the shared fragment each release's build picks, and the same table as Python's
# ------------------------------------------------------------------------------------------
def _cmake_script(tmp_path: Path, variables: dict[str, str], body: str) -> str:
    if shutil.which("cmake") is None:
        pytest.skip("cmake is not installed")
    script = tmp_path / "probe.cmake"
    script.write_text(body)
    proc = subprocess.run(["cmake", *(f"-D{k}={v}" for k, v in variables.items()), "-P", str(script)],
                          check=False, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    return proc.stderr.strip()    # message() writes to stderr


APP_CMAKE = REPO / "zephyr" / "cmake" / "app.cmake"
APP_PROBE = ("include({app})\n"
             "message(\"${{EXTRA_CONF_FILE}}|${{QEMU_EXTRA_FLAGS}}|${{ZEPHYR_EXTRA_MODULES}}\")\n")

# The variables an app sees on each release: before find_package(Zephyr) (the BOARD the build was
# given, or on a rerun the cached one) and after it (3.7+: the board's name alone and its qualifiers).
def _release_variables(target: str) -> list[dict[str, str]]:
    seen = [{"BOARD": target}, {"CACHED_BOARD": target, "BOARD": target}, {"BOARD": target + "@1.0.0"}]
    if "/" in target:
        name, _, qualifiers = target.partition("/")
        seen.append({"BOARD": name, "BOARD_QUALIFIERS": "/" + qualifiers,
                     "NORMALIZED_BOARD_TARGET": target.replace("/", "_")})
        seen.append({"BOARD": name})   # 3.7+, a board whose bare name Zephyr completes
    return seen


@pytest.mark.parametrize("version", sorted(TARGETS))
def test_each_release_build_picks_the_shared_fragment(tmp_path: Path, version: str) -> None:
    """app.cmake, as a sample includes it, on each release's names: the board's one shared fragment."""
    for key, target in TARGETS[version].items():
        for variables in _release_variables(target):
            if variables == {"BOARD": target.split("/")[0]} and target.split("/")[0] != key:
                continue   # mps2, mps3 alone are not targets
            out = _cmake_script(tmp_path, variables, APP_PROBE.format(app=APP_CMAKE))
            extra_conf, qemu_flags, modules = out.split("|")
            assert extra_conf == str(REPO / "zephyr" / "boards" / f"{key}.conf"), (variables, out)
            assert ("sse-200.CPU0_DSP=on" in qemu_flags) == (key == "mps2_an521"), (variables, out)
            assert Path(modules) == REPO


@pytest.mark.parametrize("version", ["3.4.0", "3.7.0"])
def test_each_non_secure_target_picks_its_fragment(tmp_path: Path, version: str) -> None:
    for key, target in NS_TARGETS.items():
        name = key if version == "3.4.0" else target
        for variables in _release_variables(name):
            if variables == {"BOARD": name.split("/")[0]} and "/" in name:
                continue   # the bare board name is the secure (or default) target, not this one
            extra_conf, qemu_flags, _ = _cmake_script(tmp_path, variables, APP_PROBE.format(app=APP_CMAKE)).split("|")
            assert extra_conf == str(REPO / "zephyr" / "boards" / f"{key}.conf"), (variables, extra_conf)
            assert "sse-200" not in qemu_flags


def test_a_secure_app_gets_the_boards_tfm_settings(tmp_path: Path) -> None:
    """tinyml_secure_board_conf(): zephyr/tfm/boards/<key>.conf after the shared fragment, under either name."""
    probe = "include({app})\ntinyml_secure_board_conf()\nmessage(\"${{EXTRA_CONF_FILE}}\")\n".format(app=APP_CMAKE)
    tfm_fragments = {p.stem for p in (REPO / "zephyr" / "tfm" / "boards").glob("*.conf")}
    assert tfm_fragments and tfm_fragments <= set(NS_TARGETS)
    for key, target in NS_TARGETS.items():
        for board in (key, target):
            expected = [str(REPO / "zephyr" / "boards" / f"{key}.conf")]
            if key in tfm_fragments:
                expected.append(str(REPO / "zephyr" / "tfm" / "boards" / f"{key}.conf"))
            assert _cmake_script(tmp_path, {"BOARD": board}, probe).split(";") == expected, board


def test_a_fragment_given_to_the_build_comes_after_the_shared_one(tmp_path: Path) -> None:
    out = _cmake_script(tmp_path, {"BOARD": "mps2/an521/cpu0", "EXTRA_CONF_FILE": "/x/mine.conf"},
                        APP_PROBE.format(app=APP_CMAKE))
    assert out.split("|")[0] == f"{REPO / 'zephyr' / 'boards' / 'mps2_an521.conf'};/x/mine.conf"
    out = _cmake_script(tmp_path, {"BOARD": "qemu_x86"}, APP_PROBE.format(app=APP_CMAKE))
    assert out.split("|")[0] == ""    # no shared fragment for a board we have none for


def test_cmake_and_python_know_the_same_names(tmp_path: Path) -> None:
    names = sorted({alias for board in BOARDS.values() for alias in board.aliases}
                   | {"qemu_x86", "nrf52840dk/nrf52840"})
    body = (f"include({REPO / 'zephyr' / 'cmake' / 'boards.cmake'})\n"
            "foreach(name " + " ".join(names) + ")\n"
            "  set(BOARD ${name})\n  tinyml_board_key(key)\n  message(\"${name}=${key}\")\n"
            "endforeach()\n")
    out = _cmake_script(tmp_path, {}, body)
    cmake_keys = dict(line.split("=") for line in out.splitlines())
    for name in names:
        expected = canonical(name) if canonical(name) in BOARDS else name.replace("/", "_")
        assert cmake_keys[name] == expected, name


def test_the_shared_fragments() -> None:
    """One per board, under its key; icount on the QEMU boards (the benchmark's instruction counts)."""
    fragments = {p.stem: p.read_text() for p in (REPO / "zephyr" / "boards").glob("*.conf")}
    assert set(fragments) == set(BOARDS)
    for key, text in fragments.items():
        settings = {line for line in text.splitlines() if line and not line.startswith("#")}
        icount = {"CONFIG_QEMU_ICOUNT=y", "CONFIG_QEMU_ICOUNT_SHIFT=6"}
        hardware = {"nucleo_f446re", "b_u585i_iot02a_ns", "lpcxpresso55s69_ns", "nrf5340dk_nrf5340_cpuapp_ns"}
        expected = set() if key in hardware else {"mps3_an547": icount | {"CONFIG_FPU=y"}}.get(key, icount)
        assert settings == expected, key


def test_every_sample_includes_app_cmake_and_repeats_no_shared_setting() -> None:
    """A sample's own boards/<board>.conf only for what differs from the shared fragment."""
    for cmakelists in (REPO / "samples").glob("*/CMakeLists.txt"):
        text = cmakelists.read_text()
        assert "zephyr/cmake/app.cmake)" in text, cmakelists
        assert text.index("zephyr/cmake/app.cmake") < text.index("find_package(Zephyr"), cmakelists
        for own in (cmakelists.parent / "boards").glob("*.conf"):
            shared = REPO / "zephyr" / "boards" / f"{canonical(own.stem)}.conf"
            if shared.is_file():
                def settings(path: Path) -> set[str]:
                    return {line.split("=")[0] for line in path.read_text().splitlines() if line.startswith("CONFIG_")}
                assert not settings(own) & settings(shared), f"{own} repeats {shared}"
