# SPDX-License-Identifier: Apache-2.0
#
# Include before find_package(Zephyr) (app.cmake does): what the samples need from QEMU
# on two boards (Zephyr's `run` target, twister's QEMU handler and `west tinyml eval`
# all start QEMU through that target, so all of them get it).
#
# mps2_an521 (QEMU_EXTRA_FLAGS): QEMU models Arm's AN521 as the FPGA image has it, CPU0 (where
# Zephyr's mps2_an521 runs) without the DSP extension and CPU1 with it.
# CONFIG_TINYML_CMSIS_NN_DSP_PATHS compiles CMSIS-NN's DSP paths for that M33
# (`--kernels cmsis-nn-dsp`); this turns the extension on in QEMU's CPU0, so
# those paths run, are checked bit for bit and counted there. Images without
# DSP instructions (Zephyr's default, the reference kernels, CMSIS-NN's C
# paths) run exactly as without it (checked with QEMU 7.2, Debian 12's).

# The board under its Zephyr 3.4 name, whichever name the build uses (mps2_an521 on 3.4,
# mps2/an521/cpu0 on 3.7+; before or after find_package: boards.cmake).
include(${CMAKE_CURRENT_LIST_DIR}/boards.cmake)
tinyml_board_key(_tinyml_board)
if(_tinyml_board STREQUAL "mps2_an521")
  list(APPEND QEMU_EXTRA_FLAGS -global sse-200.CPU0_DSP=on)
endif()

# qemu_cortex_a9: Zephyr starts Xilinx's QEMU fork (the Zephyr SDK's
# qemu-system-xilinx-aarch64). Without it, and with mainline QEMU installed,
# Zephyr's lookup (QEMU_BIN_PATH) finds qemu-zynq/ instead, which runs the same
# image on mainline QEMU's model of the Zynq-7000 (see that script).
if(_tinyml_board STREQUAL "qemu_cortex_a9" AND NOT DEFINED CACHE{QEMU} AND "$ENV{QEMU_BIN_PATH}" STREQUAL "")
  find_program(TINYML_XILINX_QEMU qemu-system-xilinx-aarch64)
  find_program(TINYML_MAINLINE_QEMU_ARM qemu-system-arm)
  if(NOT TINYML_XILINX_QEMU AND TINYML_MAINLINE_QEMU_ARM)
    set(ENV{QEMU_BIN_PATH} ${CMAKE_CURRENT_LIST_DIR}/qemu-zynq)
    message(STATUS "zephyr-tinyml: qemu_cortex_a9 in mainline QEMU (machine xilinx-zynq-a9): "
                   "no Xilinx QEMU (qemu-system-xilinx-aarch64) installed")
  endif()
endif()
