/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Which build of TFLM's kernels this image runs, known at compile time, so
 * that the generated model_arena.h can pick the tensor arena size measured
 * on a device for exactly this build: CMSIS-NN's scratch buffers depend on the
 * path it compiles (plain C, DSP SIMD, Helium MVE), by the same tests of the
 * compiler's feature macros that CMSIS-NN's arm_nn_math_types.h makes.
 */

#pragma once

#include <cstdint>

#define TINYML_KERNELS_REFERENCE 0    /* TFLM's reference kernels */
#define TINYML_KERNELS_CMSIS_NN 1     /* CMSIS-NN, plain C paths (Cortex-M0/M3) */
#define TINYML_KERNELS_CMSIS_NN_DSP 2 /* CMSIS-NN, DSP-extension SIMD paths */
#define TINYML_KERNELS_CMSIS_NN_MVE 3 /* CMSIS-NN, Helium (MVE) paths */

#if defined(CONFIG_TENSORFLOW_LITE_MICRO_CMSIS_NN_KERNELS)
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#define TINYML_KERNELS TINYML_KERNELS_CMSIS_NN_MVE
#elif defined(__ARM_FEATURE_DSP) && (__ARM_FEATURE_DSP == 1)
#define TINYML_KERNELS TINYML_KERNELS_CMSIS_NN_DSP
#else
#define TINYML_KERNELS TINYML_KERNELS_CMSIS_NN
#endif
#else
#define TINYML_KERNELS TINYML_KERNELS_REFERENCE
#endif

/* CONFIG_TINYML_CMSIS_NN_DSP_PATHS: every file that includes this one must have
 * been compiled for the DSP paths (on a Cortex-M55, zephyr/CMakeLists.txt adds
 * -mcpu=cortex-m55+nomve to the runtime's, the app's, TFLM's and CMSIS-NN's
 * sources; a Cortex-M33 build is for an M33 with the extension throughout). */
#if defined(CONFIG_TINYML_CMSIS_NN_DSP_PATHS) && TINYML_KERNELS != TINYML_KERNELS_CMSIS_NN_DSP
#error "CONFIG_TINYML_CMSIS_NN_DSP_PATHS, but this file was compiled for Helium or without the DSP extension: add its target to the list in zephyr/CMakeLists.txt"
#endif

/* Arena layouts measured on a 32-bit device hold for 32-bit pointers only. */
#define TINYML_POINTERS_32BIT (UINTPTR_MAX == 0xFFFFFFFFu)

namespace tinyml {

/* The name the SUMMARY line and tinyml_model.json use for this kernel build. */
constexpr const char* kKernelsName =
	TINYML_KERNELS == TINYML_KERNELS_CMSIS_NN_MVE   ? "cmsis-nn-mve"
	: TINYML_KERNELS == TINYML_KERNELS_CMSIS_NN_DSP ? "cmsis-nn-dsp"
	: TINYML_KERNELS == TINYML_KERNELS_CMSIS_NN     ? "cmsis-nn"
							: "reference";

}  // namespace tinyml
