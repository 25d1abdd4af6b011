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
    # Whether this Zephyr still keeps C++ away from a toolchain's picolibc (lib/libc/Kconfig's
    # `depends on !(CPP && ("$(TOOLCHAIN_HAS_PICOLIBC)" = "y"))`, as in Zephyr 3.4): only then is
    # the toolchain Kconfig below needed. Read from the tree itself, not from its version number;
    # when the tree cannot be read, the Kconfig is used (it keeps Zephyr's own gnuarmemb Kconfig).
    set(_tinyml_base "${ZEPHYR_BASE}")
    if(NOT _tinyml_base)
      set(_tinyml_base "$ENV{ZEPHYR_BASE}")
    endif()
    set(_tinyml_cpp_excluded TRUE)
    if(EXISTS "${_tinyml_base}/lib/libc/Kconfig")
      file(STRINGS "${_tinyml_base}/lib/libc/Kconfig" _tinyml_exclusion REGEX "CPP && .*TOOLCHAIN_HAS_PICOLIBC")
      if(NOT _tinyml_exclusion)
        set(_tinyml_cpp_excluded FALSE)
      endif()
    endif()
    if(TOOLCHAIN_HAS_PICOLIBC AND _tinyml_cpp_excluded)
      set(TOOLCHAIN_KCONFIG_DIR "${CMAKE_CURRENT_LIST_DIR}/gnuarmemb")
      message(STATUS "zephyr-tinyml: gnuarmemb toolchain with picolibc (${TINYML_TOOLCHAIN_PICOLIBC_SPECS})")
    elseif(TOOLCHAIN_HAS_PICOLIBC)
      message(STATUS "zephyr-tinyml: gnuarmemb toolchain with picolibc (${TINYML_TOOLCHAIN_PICOLIBC_SPECS}), "
                     "which this Zephyr offers to C++ itself")
    endif()
  endif()
endif()
