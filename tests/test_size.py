"""size: region totals and the split by component, checked against what the linker itself reports.

The host tier reads a small GNU ld map written here; the Zephyr tier builds Zephyr's hello_world
and requires our totals to equal the linker's own ``--print-memory-usage`` lines.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zephyr_tinyml.firmware.size import (Share, SizeReport, check_budget, classify, iter_input_sections,
                                parse_memory_configuration, region_report, split_by_component,
                                to_json, to_markdown, to_table)
from zephyr_tinyml.model.spec import Budget
from conftest import ROOT
from zephyr_tinyml.firmware.zephyr_env import find_zephyr

MAP = """\
Memory Configuration

Name             Origin             Length             Attributes
FLASH            0x0000000000000000 0x0000000000040000 xr
RAM              0x0000000020000000 0x0000000000010000 xw
IDT_LIST         0x00000000fffff7ff 0x0000000000000800 wx
*default*        0x0000000000000000 0xffffffffffffffff

Linker script and memory map

LOAD zephyr/CMakeFiles/zephyr_final.dir/isr_tables.c.obj
text            0x0000000000000100     0x1000
 *(.text)
 .text.main     0x0000000000000100       0x40 app/libapp.a(main.cpp.obj)
                0x0000000000000100                main
 .text._ZN6tflite16MicroInterpreter6InvokeEv
                0x0000000000000140      0x200 modules/tflite-micro/libmodules__tflite-micro.a(micro_interpreter.cc.obj)
 .text._ZN6tflite3ops5micro4conv
                0x0000000000000340      0x300 modules/tflite-micro/libmodules__tflite-micro.a(conv.cc.obj)
 .text.z_impl_k_sleep
                0x0000000000000640       0x80 zephyr/kernel/libkernel.a(sched.c.obj)
 .text.memcpy   0x00000000000006c0       0x20 /usr/lib/picolibc/arm-none-eabi/lib/thumb/v7-m/nofp/libc.a(libc_string_memcpy.c.o)
 *fill*         0x00000000000006e0        0x4
rodata          0x0000000000001100     0x2000
 .rodata.g_mnist_model_data
                0x0000000000001100     0x1f00 app/libapp.a(model_data.cc.obj)
 .rodata._ZN6tinyml11kTestImagesE
                0x0000000000003000      0x100 app/libapp.a(test_images.cc.obj)
bss             0x0000000020000000     0x3000
 .bss._ZN12_GLOBAL__N_112tensor_arenaE
                0x0000000020000000     0x2e00 app/libapp.a(main.cpp.obj)
 .bss.z_main_stack
                0x0000000020002e00      0x200 zephyr/kernel/libkernel.a(init.c.obj)
"""


def test_memory_configuration() -> None:
    regions = parse_memory_configuration(MAP)
    assert [(r.name, r.origin, r.length) for r in regions] == [
        ("FLASH", 0, 0x40000), ("RAM", 0x20000000, 0x10000), ("IDT_LIST", 0xFFFFF7FF, 0x800)]


def test_input_sections_with_wrapped_names() -> None:
    sections = list(iter_input_sections(MAP))
    assert ("text", ".text._ZN6tflite3ops5micro4conv", 0x300,
            "modules/tflite-micro/libmodules__tflite-micro.a(conv.cc.obj)") in sections
    assert ("bss", ".bss._ZN12_GLOBAL__N_112tensor_arenaE", 0x2E00,
            "app/libapp.a(main.cpp.obj)") in sections
    assert len(sections) == 10  # nine input sections and one fill


@pytest.mark.parametrize("section, obj, component", [
    (".bss._ZN12_GLOBAL__N_112tensor_arenaE", "app/libapp.a(main.cpp.obj)", "arena"),
    (".text.main", "app/libapp.a(main.cpp.obj)", "app"),
    (".rodata.g_mnist_model_data", "app/libapp.a(model_data.cc.obj)", "model"),
    (".rodata.x", "app/libapp.a(test_images.cc.obj)", "test inputs"),
    (".rodata.x", "modules/zephyr-tinyml/libtinyml.a(test_data.cc.obj)", "test inputs"),
    (".rodata.g_x_model_data", "modules/zephyr-tinyml/libtinyml.a(model_data.cc.obj)", "model"),
    (".text.x", "modules/zephyr-tinyml/libtinyml.a(runtime.cpp.obj)", "app"),
    (".text.x", "modules/tflite-micro/libmodules__tflite-micro.a(conv.cc.obj)", "TFLM core"),
    (".text.x", "modules/tflite-micro/CMakeFiles/x.dir/ws/modules/lib/tflite-micro/"
                "tensorflow/lite/micro/kernels/conv.cc.obj", "TFLM kernels"),
    (".text.arm_convolve_s8", "modules/cmsis-nn/libmodules__cmsis-nn.a(arm_convolve_s8.c.obj)", "CMSIS-NN"),
    (".text.memcpy", "/usr/lib/picolibc/arm-none-eabi/lib/libc.a(memcpy.c.o)", "libc"),
    (".text.x", "/usr/lib/picolibc/arm-none-eabi/lib/libstdc++.a(new_op.o)", "C++ runtime"),
    (".text.z_impl_k_sleep", "zephyr/kernel/libkernel.a(sched.c.obj)", "Zephyr kernel"),
    (".text.x", "zephyr/arch/arch/arm/core/libarch__arm__core.a(fault.c.obj)", "Zephyr (arch, drivers, libs)"),
])
def test_classify(section: str, obj: str, component: str) -> None:
    assert classify(section, obj) == component


def test_split_adds_up_to_the_totals() -> None:
    placement = {"text": (True, False), "rodata": (True, False), "bss": (False, True)}
    shares = {s.component: s for s in split_by_component(MAP, placement, 0x3100, 0x3000)}
    assert shares["model"].flash == 0x1F00
    assert shares["arena"].ram == 0x2E00
    assert shares["test inputs"].flash == 0x100
    assert sum(s.flash for s in shares.values()) == 0x3100
    assert sum(s.ram for s in shares.values()) == 0x3000


def report(flash: int, ram: int) -> SizeReport:
    return SizeReport(elf="zephyr.elf", flash=flash, ram=ram, flash_size=262144, ram_size=65536,
                      regions=(), shares=(Share("model", 9000, 0), Share("arena", 0, 11776)))


def test_budget() -> None:
    assert check_budget(report(81920, 18432), Budget(flash=81920, ram=18432)) == []
    problems = check_budget(report(96104, 19932), {"flash": 81920, "ram": 18432})
    assert problems == ["flash 96,104 B exceeds the budget of 81,920 B by 14,184 B",
                        "ram 19,932 B exceeds the budget of 18,432 B by 1,500 B"]


def test_renderers() -> None:
    r = report(70000, 17000)
    md = to_markdown(r)
    assert "| model | 9,000 | 0 |" in md and "**70,000** of 262,144" in md
    assert json.loads(to_json(r))["ram"] == 17000
    assert to_table(r).row_count == 3


# ------------------------------------------------------------------------------------------
# Zephyr tier: a real ELF and map
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["qemu_cortex_m3", "qemu_cortex_a9"])
def hello_world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Zephyr's hello_world on an XIP Cortex-M and on the Cortex-A9, whose image is loaded into RAM."""
    zephyr, why = find_zephyr()
    if zephyr is None:
        pytest.skip(why)
    if shutil.which("cmake") is None or shutil.which("ninja") is None:
        pytest.skip("cmake and ninja are needed to build Zephyr's hello_world")
    build = tmp_path_factory.mktemp("hello_world")
    env = zephyr.env()
    cmd = ["cmake", "-G", "Ninja", "-S", str(zephyr.base / "samples" / "hello_world"),
           "-B", str(build), f"-DBOARD={request.param}", f"-DPython3_EXECUTABLE={sys.executable}"]
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    out = subprocess.run(["cmake", "--build", str(build)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return build / "zephyr" / "zephyr.elf", out


@pytest.mark.zephyr
def test_totals_match_the_linker(hello_world: tuple[Path, str]) -> None:
    elf, log = hello_world
    unit = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}     # ld prints round sizes in KB ... GB
    linker = {m.group(1): int(m.group(2)) * unit[m.group(3)]
              for m in re.finditer(r"^\s*(\w+):\s+(\d+) (B|KB|MB|GB)\s", log, re.MULTILINE)}
    r = region_report(elf)
    assert r.flash == linker["FLASH"]
    assert r.ram == linker["RAM"]
    assert sum(s.flash for s in r.shares) == r.flash
    assert sum(s.ram for s in r.shares) == r.ram
    if linker["FLASH"]:
        assert r.share("Zephyr kernel").flash > 0
    else:   # the Cortex-A9 without XIP: nothing in flash, the kernel's code counts in RAM where it is loaded
        assert r.share("Zephyr kernel").ram > 0 and all(s.flash == 0 for s in r.shares)


def test_model_symbol_comes_from_the_generated_sources(tmp_path: Path) -> None:
    from zephyr_tinyml.firmware.size import _symbol_key, model_symbol

    assert model_symbol(ROOT / "samples" / "mnist" / "generated") == "g_mnist_model_data"
    (tmp_path / "model_data.h").write_text("extern const unsigned char g_kws_model_data[];\n")
    assert model_symbol(tmp_path) == "g_kws_model_data"
    (tmp_path / "tinyml_model.json").write_text(json.dumps({"model_symbol": "my_model"}))
    assert model_symbol(tmp_path) == "my_model"
    assert _symbol_key("my_model", "my_model") == "model_data"
    assert _symbol_key("g_mnist_model_data", "my_model") is None   # another model's array is not this one
    assert _symbol_key("g_mnist_model_data") == "model_data"       # no folder: TFLM's naming
    assert _symbol_key("_ZN6tinyml12kTestOutputsE") == "test_images"


# TF-M's linker scripts, reduced: the STM32U5 BL2's FLASH_NOHDP (8 KB) is declared over the start of
# FLASH_OTP, where .BL2_OTP goes; the secure image's entry veneers have a region of their own.
TFM_LIKE_LD = """\
MEMORY
{
  FLASH        (rx)  : ORIGIN = 0x0c014000, LENGTH = 0x00016000
  FLASH_NOHDP  (rx)  : ORIGIN = 0x0c02a000, LENGTH = 0x00002000
  FLASH_OTP    (r)   : ORIGIN = 0x0c02b000, LENGTH = 0x00001000
  VENEERS      (rx)  : ORIGIN = 0x0c02c000, LENGTH = 0x00000380
  RAM          (rwx) : ORIGIN = 0x30030000, LENGTH = 0x0000fc00
}
SECTIONS
{
  .text : { *(.text*) } > FLASH
  .nohdp : { *(.nohdp*) } > FLASH_NOHDP
  .otp : { *(.otp*) } > FLASH_OTP
  .gnu.sgstubs : { *(.sgstubs*) } > VENEERS
  .data : { *(.data*) } > RAM AT > FLASH
  .bss : { *(.bss*) } > RAM
}
"""
TFM_LIKE_C = """\
__attribute__((section(".nohdp"))) const char nohdp[0x30e] = {1};
__attribute__((section(".otp"))) const char otp[0x2f4] = {1};
__attribute__((section(".sgstubs"))) const char stubs[0x40] = {1};
char data[0x20] = {1};
char bss[0x100];
int main(void) { return data[0] + bss[0]; }
"""


def test_overlapping_regions_and_tfm_veneers(tmp_path: Path) -> None:
    """A section counts in the innermost region it lies in, once; the regions' sizes count overlaps once;
    TF-M's VENEERS region is flash (the secure image's non-secure-callable entry points)."""
    gcc = shutil.which("arm-none-eabi-gcc")
    if gcc is None:
        pytest.skip("arm-none-eabi-gcc is not installed")
    (tmp_path / "t.ld").write_text(TFM_LIKE_LD)
    (tmp_path / "t.c").write_text(TFM_LIKE_C)
    elf = tmp_path / "t.elf"
    subprocess.run([gcc, "-mcpu=cortex-m33", "-mthumb", "-Os", "-nostdlib", "-nostartfiles", "-e", "main",
                    "-T", "t.ld", "-Wl,-Map=t.map", "-o", str(elf), "t.c"], cwd=tmp_path, check=True)
    report = region_report(elf)
    used = {r.name: r.used for r in report.regions}
    assert used["FLASH_NOHDP"] == 0x30e and used["FLASH_OTP"] == 0x2f4 and used["VENEERS"] == 0x40
    assert used["RAM"] == 0x120
    assert report.flash == sum(used[n] for n in ("FLASH", "FLASH_NOHDP", "FLASH_OTP", "VENEERS"))
    assert used["FLASH"] >= 0x20                              # the code and .data's initial values
    assert report.flash_size == 0x16000 + 0x2000 + 0x380      # FLASH_OTP lies inside FLASH_NOHDP
    assert report.ram_size == 0xfc00
