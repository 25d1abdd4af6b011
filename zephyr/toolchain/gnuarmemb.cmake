# SPDX-License-Identifier: Apache-2.0
#
# Include before find_package(Zephyr). Lets distro GNU Arm toolchains
# (ZEPHYR_TOOLCHAIN_VARIANT=gnuarmemb, e.g. Debian's gcc-arm-none-eabi +
# picolibc-arm-none-eabi + libstdc++-arm-none-eabi-picolibc) build C++ apps
# with the toolchain's picolibc: their newlib cannot host Zephyr's libc hooks.
#
# Does nothing for other variants (Zephyr SDK, LLVM, ...), when the user has set
# TOOLCHAIN_KCONFIG_DIR or TOOLCHAIN_HAS_PICOLIBC themselves, or when the
# toolchain has no picolibc.specs.

set(_tinyml_variant "${ZEPHYR_TOOLCHAIN_VARIANT}")
if(NOT _tinyml_variant)
  set(_tinyml_variant "$ENV{ZEPHYR_TOOLCHAIN_VARIANT}")
endif()

if(_tinyml_variant STREQUAL "gnuarmemb" AND NOT DEFINED TOOLCHAIN_KCONFIG_DIR)
  # Probe once per build directory; the answer is cached.
  if(NOT DEFINED CACHE{TINYML_TOOLCHAIN_PICOLIBC_SPECS})
    set(_tinyml_gcc_root "${GNUARMEMB_TOOLCHAIN_PATH}")
    if(NOT _tinyml_gcc_root)
      set(_tinyml_gcc_root "$ENV{GNUARMEMB_TOOLCHAIN_PATH}")
    endif()
    set(_tinyml_specs "")
    if(EXISTS "${_tinyml_gcc_root}/bin/arm-none-eabi-gcc")
      # gcc echoes the bare name back when it cannot find the file.
      execute_process(
        COMMAND "${_tinyml_gcc_root}/bin/arm-none-eabi-gcc" -print-file-name=picolibc.specs
        OUTPUT_VARIABLE _tinyml_specs
        OUTPUT_STRIP_TRAILING_WHITESPACE
        ERROR_QUIET)
    endif()
    if(NOT (IS_ABSOLUTE "${_tinyml_specs}" AND EXISTS "${_tinyml_specs}"))
      set(_tinyml_specs "")
    endif()
    set(TINYML_TOOLCHAIN_PICOLIBC_SPECS "${_tinyml_specs}" CACHE INTERNAL
        "picolibc.specs of the gnuarmemb toolchain, empty if it has none")
  endif()

  if(TINYML_TOOLCHAIN_PICOLIBC_SPECS)
    # A user's -DTOOLCHAIN_HAS_PICOLIBC=OFF wins over the probe.
    set(TOOLCHAIN_HAS_PICOLIBC ON CACHE BOOL "True if toolchain supports picolibc")
    if(TOOLCHAIN_HAS_PICOLIBC)
      set(TOOLCHAIN_KCONFIG_DIR "${CMAKE_CURRENT_LIST_DIR}/gnuarmemb")
      message(STATUS "zephyr-tinyml: gnuarmemb toolchain with picolibc (${TINYML_TOOLCHAIN_PICOLIBC_SPECS})")
    endif()
  endif()
endif()
