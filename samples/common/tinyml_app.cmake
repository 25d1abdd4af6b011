# SPDX-License-Identifier: Apache-2.0
#
# Build settings every zephyr-tinyml app shares. Include it after
# find_package(Zephyr); it adds this folder's headers (tinyml_runtime.h) and the
# generated model sources in TINYML_GENERATED_DIR to the app:
#   tinyml_app(<generated dir> [IMAGES])   IMAGES: also compile test_images.cc

# Zephyr 3.x passes no -fno-rtti to GCC even with CONFIG_CPP_RTTI=n, and
# thread-safe function statics (__cxa_guard_*) pull in the exception runtime
# and unwinder: together about 8 KB of flash. TFLM needs neither.
if(NOT CONFIG_CPP_RTTI)
  zephyr_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fno-rtti>)
endif()
zephyr_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fno-threadsafe-statics>)

# TFLM's static-memory tensor layout, as TFLM's own Makefile builds for MCUs:
# smaller TfLiteTensor structs in the arena. One file of the Zephyr 3.x module
# is written against the dynamic layout (TfLiteIntArrayCreate, which the macro
# removes) and nothing the interpreter links uses it: it keeps the old layout.
zephyr_compile_definitions(TF_LITE_STATIC_MEMORY)
if(TARGET modules__tflite-micro AND EXISTS ${ZEPHYR_TFLITE_MICRO_MODULE_DIR}/tensorflow/lite/array.cc)
  set_source_files_properties(${ZEPHYR_TFLITE_MICRO_MODULE_DIR}/tensorflow/lite/array.cc
    TARGET_DIRECTORY modules__tflite-micro PROPERTIES COMPILE_OPTIONS -UTF_LITE_STATIC_MEMORY)
endif()

function(tinyml_app generated_dir)
  cmake_parse_arguments(ARG "IMAGES" "" "" ${ARGN})
  set(required model_data.cc)
  if(ARG_IMAGES)
    list(APPEND required test_images.cc)
  endif()
  foreach(source ${required})
    if(NOT EXISTS ${generated_dir}/${source})
      message(FATAL_ERROR "No ${generated_dir}/${source}: run `tinyml build <model>` "
                          "(or `west tinyml build <model>`) to generate the model sources first")
    endif()
    target_sources(app PRIVATE ${generated_dir}/${source})
  endforeach()
  target_include_directories(app PRIVATE ${generated_dir} ${CMAKE_CURRENT_FUNCTION_LIST_DIR})
endfunction()
