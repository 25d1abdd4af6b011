# SPDX-License-Identifier: Apache-2.0
#
# A non-secure app whose model runs in the zephyr-tinyml secure partition: include this file
# after find_package(Zephyr), with TINYML_MODEL_DIR naming the generated model folder and
# CONFIG_BUILD_WITH_TFM=y (a board target ending in _ns / /ns). It hands TF-M's build the
# partition (zephyr/tfm/tinyml_partition: its manifest list, its folder, and where the model,
# TFLM and CMSIS-NN are) through the TFM_CMAKE_OPTIONS that Zephyr's TF-M module forwards,
# so neither TF-M nor Zephyr is patched. The app itself gets only the model's headers (sizes,
# labels, test data): model_data.cc is compiled into the secure image alone.

if(NOT CONFIG_BUILD_WITH_TFM)
  message(FATAL_ERROR "zephyr-tinyml: a secure model needs TF-M (CONFIG_BUILD_WITH_TFM=y): "
                      "build for a non-secure board target such as mps2_an521_ns")
endif()
foreach(module TFLITE_MICRO CMSIS_NN)
  if(NOT ZEPHYR_${module}_MODULE_DIR)
    message(FATAL_ERROR "zephyr-tinyml: a secure model is built with the ${module} module, which "
                        "this workspace lacks (add it to west.yml's name-allowlist and run west update)")
  endif()
endforeach()
get_filename_component(TINYML_MODEL_DIR "${TINYML_MODEL_DIR}" ABSOLUTE)
get_filename_component(_tinyml_module_dir ${CMAKE_CURRENT_LIST_DIR}/../.. ABSOLUTE)
set(TINYML_PARTITION_DIR ${_tinyml_module_dir}/zephyr/tfm/tinyml_partition)

get_target_property(TFM_BINARY_DIR tfm TFM_BINARY_DIR)
configure_file(${TINYML_PARTITION_DIR}/tinyml_manifest_list.yaml.in
               ${CMAKE_CURRENT_BINARY_DIR}/tinyml_partition/tinyml_manifest_list.yaml)

set_property(TARGET zephyr_property_target
  APPEND PROPERTY TFM_CMAKE_OPTIONS
    -DTFM_EXTRA_MANIFEST_LIST_FILES=${CMAKE_CURRENT_BINARY_DIR}/tinyml_partition/tinyml_manifest_list.yaml
    -DTFM_EXTRA_PARTITION_PATHS=${TINYML_PARTITION_DIR}
    -DTINYML_MODEL_DIR=${TINYML_MODEL_DIR}
    -DTINYML_TFLM_DIR=${ZEPHYR_TFLITE_MICRO_MODULE_DIR}
    -DTINYML_CMSIS_NN_DIR=${ZEPHYR_CMSIS_NN_MODULE_DIR}
    -DTINYML_MODULE_DIR=${_tinyml_module_dir}
    # TF-M's tools (manifests, image signing) run on the Python this build runs on, the one
    # holding its packages (the tfm extra), not on whichever python3 comes first on PATH.
    -DPython3_EXECUTABLE=${Python3_EXECUTABLE}
    # A non-secure access to secure memory prints "FATAL ERROR: SecureFault" and the
    # fault registers before TF-M resets the system: the line the fault test requires.
    -DTFM_EXCEPTION_INFO_DUMP=ON
)
# TF-M's build runs ninja in its own folder on every build of the app, so a regenerated model
# is recompiled there like any other source; nothing here has to track it.

# The app: TF-M's non-secure PSA interface, the model's headers and this module's headers.
target_include_directories(app PRIVATE
  $<TARGET_PROPERTY:tfm,TFM_BINARY_DIR>/install/interface/include
  ${TINYML_MODEL_DIR}
  ${_tinyml_module_dir}/zephyr/include
)
