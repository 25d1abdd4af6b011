/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The CONV_2D registration the generated op resolver uses for an int8 model
 * with a convolution over one input channel (its first layer, as a rule).
 *
 * With CMSIS-NN kernels, each convolution node chooses once, when TFLM
 * prepares it: one int8 input channel, int8 weights, dilation 1 run
 * tinyml_conv_1ch_s8 (tinyml/conv_1ch.h: the same output bytes as TFLM's
 * reference kernel and CMSIS-NN's, in a fraction of the instructions); every
 * other convolution runs CMSIS-NN's int8 kernel as before (on Helium builds
 * too: the kernel has a Helium path, see conv_1ch.h). With TFLM's reference
 * kernels this is TFLM's own registration.
 */

#pragma once

#include "tensorflow/lite/micro/kernels/conv.h"

namespace tinyml {

#if defined(CONFIG_TENSORFLOW_LITE_MICRO_CMSIS_NN_KERNELS)
#define TINYML_CONV_1CH_REGISTERED 1 /* conv_op.cpp defines the registration */
TFLMRegistration Register_CONV_2D_INT8_ONE_CHANNEL();
#else
inline TFLMRegistration Register_CONV_2D_INT8_ONE_CHANNEL()
{
	return tflite::Register_CONV_2D_INT8();
}
#endif

}  // namespace tinyml
