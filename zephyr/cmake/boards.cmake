# SPDX-License-Identifier: Apache-2.0
#
# Which board a build is for, under the names Zephyr 3.4 and Zephyr 3.7+ give it.
#
# Zephyr 3.7 names boards by "board target" (hardware model v2): mps2_an521 became
# mps2/an521/cpu0, mps3_an547 became mps3/an547 (3.7) and mps3/corstone300/an547 (4.0
# on); qemu_cortex_m3, qemu_cortex_m0, qemu_cortex_a9 and nucleo_f446re keep their names,
# their full targets adding the SoC (qemu_cortex_m3/ti_lm3s6965). After
# find_package(Zephyr) a 3.7+ build's BOARD is the board's name alone (mps2), the rest in
# BOARD_QUALIFIERS (/an521/cpu0) and NORMALIZED_BOARD_TARGET (mps2_an521_cpu0).
#
#   tinyml_board_target(<var>)  the board target, without a @revision: after
#                               find_package on 3.7+ BOARD + BOARD_QUALIFIERS, otherwise
#                               the BOARD the build was configured or is being configured
#                               for (mps2_an521 on 3.4, mps2/an521/cpu0 on 3.7+)
#   tinyml_board_key(<var>)     the Zephyr 3.4 name of the module's boards, whichever name
#                               the build uses (mps2_an521 for all three above): the name
#                               of the shared fragment zephyr/boards/<key>.conf and of the
#                               QEMU options of qemu.cmake. Another board's key is its
#                               target with slashes as underscores (as
#                               NORMALIZED_BOARD_TARGET).
#
# python/zephyr_tinyml/firmware/boards.py holds the same table for the Python side;
# tests/test_boards.py runs these functions and checks that the two agree.

# Normalized 3.7+ targets (slashes as underscores) whose 3.4 name differs.
set(_tinyml_board_key_qemu_cortex_m3_ti_lm3s6965 qemu_cortex_m3)
set(_tinyml_board_key_qemu_cortex_m0_nrf51822 qemu_cortex_m0)
set(_tinyml_board_key_qemu_cortex_a9_xc7z007s qemu_cortex_a9)
set(_tinyml_board_key_nucleo_f446re_stm32f446xx nucleo_f446re)
set(_tinyml_board_key_mps2_an521_cpu0 mps2_an521)
set(_tinyml_board_key_mps2_an521_cpu0_ns mps2_an521_ns)
set(_tinyml_board_key_mps3_corstone300_an547 mps3_an547)
set(_tinyml_board_key_b_u585i_iot02a_stm32u585xx_ns b_u585i_iot02a_ns)
set(_tinyml_board_key_lpcxpresso55s69_lpc55s69_cpu0_ns lpcxpresso55s69_ns)
# mps3/an547 (Zephyr 3.7 to 3.99) normalizes to mps3_an547 itself, and
# nrf5340dk/nrf5340/cpuapp/ns to nrf5340dk_nrf5340_cpuapp_ns.

function(tinyml_board_target out)
  if(DEFINED NORMALIZED_BOARD_TARGET)
    # Zephyr 3.7+, after find_package(Zephyr): BOARD is the board's name alone.
    set(target "${BOARD}${BOARD_QUALIFIERS}")
  elseif(CACHED_BOARD)
    # A configured build folder (CMake reruns): the board it was configured for.
    set(target "${CACHED_BOARD}")
  elseif(BOARD)
    set(target "${BOARD}")
  else()
    set(target "$ENV{BOARD}")
  endif()
  # A revision: board@1.0.0 (3.4), board@1.0.0/soc/cluster (3.7+).
  string(REGEX REPLACE "@[^/]*" "" target "${target}")
  set(${out} "${target}" PARENT_SCOPE)
endfunction()

function(tinyml_board_key out)
  tinyml_board_target(target)
  string(REPLACE "/" "_" key "${target}")
  if(DEFINED _tinyml_board_key_${key})
    set(key "${_tinyml_board_key_${key}}")
  endif()
  set(${out} "${key}" PARENT_SCOPE)
endfunction()
