# SPDX-License-Identifier: Apache-2.0
#
# What every zephyr-tinyml app does before find_package(Zephyr), in one line:
#
#   include(<this repository>/zephyr/cmake/app.cmake)
#
# - zephyr/toolchain/gnuarmemb.cmake: distro GNU Arm toolchains build C++ apps with
#   their picolibc (see the file);
# - qemu.cmake: the QEMU options two boards need (mps2_an521: its CPU0's DSP extension;
#   qemu_cortex_a9 in mainline QEMU; see the file);
# - this repository as a Zephyr module (the runtime library, CONFIG_TINYML); in a west
#   workspace that already lists it, naming it again changes nothing;
# - the module's Kconfig fragment for the board, zephyr/boards/<board>.conf (QEMU icount
#   on the QEMU boards, the FPU on mps3_an547), found under the board's Zephyr 3.4 name
#   whichever name the build uses (boards.cmake), as the first of the EXTRA_CONF_FILE
#   list (Zephyr 3.4 and later merge it after prj.conf and the app's own
#   boards/<board>.conf; a -DEXTRA_CONF_FILE or -DOVERLAY_CONFIG given to the build
#   comes after it and wins).
#
# An app whose settings differ from the shared ones on a board appends its own fragment
# after this include: list(APPEND EXTRA_CONF_FILE ${CMAKE_CURRENT_LIST_DIR}/<file>.conf)
# (merged after the shared one, so it wins). An app's boards/<board>.conf is merged
# before the shared fragment: fine for settings the shared one does not touch, and its
# file name differs between releases (boards/mps2_an521.conf on 3.4,
# boards/mps2_an521_cpu0.conf on 3.7+).

get_filename_component(_tinyml_module_dir ${CMAKE_CURRENT_LIST_DIR}/../.. ABSOLUTE)

include(${_tinyml_module_dir}/zephyr/toolchain/gnuarmemb.cmake)
include(${CMAKE_CURRENT_LIST_DIR}/boards.cmake)
include(${CMAKE_CURRENT_LIST_DIR}/qemu.cmake)

list(APPEND ZEPHYR_EXTRA_MODULES ${_tinyml_module_dir})

tinyml_board_key(_tinyml_board_key)
if(_tinyml_board_key AND EXISTS ${_tinyml_module_dir}/zephyr/boards/${_tinyml_board_key}.conf)
  set(TINYML_BOARD_CONF ${_tinyml_module_dir}/zephyr/boards/${_tinyml_board_key}.conf)
  # In front of what the app or the user gave (zephyr_get(EXTRA_CONF_FILE ... MERGE)
  # puts this scope's list before the cache's and drops repeats).
  list(PREPEND EXTRA_CONF_FILE ${TINYML_BOARD_CONF})
  list(REMOVE_DUPLICATES EXTRA_CONF_FILE)
endif()

# A secure app (the model in the zephyr-tinyml TF-M partition: samples/secure_model,
# samples/mnist_eval with -DTINYML_SECURE=ON) calls tinyml_secure_board_conf() before
# find_package(Zephyr): it appends zephyr/tfm/boards/<key>.conf, the TF-M settings a board
# needs for the partition to fit beside TF-M (lpcxpresso55s69_ns: TF-M's 160 KB secure slot
# holds the partition only without TF-M's Crypto and Protected Storage services), after the
# app's own fragments; a -DEXTRA_CONF_FILE given to the build still comes last.
macro(tinyml_secure_board_conf)
  if(_tinyml_board_key AND EXISTS ${_tinyml_module_dir}/zephyr/tfm/boards/${_tinyml_board_key}.conf)
    list(APPEND EXTRA_CONF_FILE ${_tinyml_module_dir}/zephyr/tfm/boards/${_tinyml_board_key}.conf)
    list(REMOVE_DUPLICATES EXTRA_CONF_FILE)
  endif()
endmacro()
