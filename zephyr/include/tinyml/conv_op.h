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

#if defined(CONFIG_TENSORFLOW_LITE_MICRO_CMSIS_NN_KERNELS)
#include "tinyml/conv_1ch.h"
#endif

namespace tinyml {

#if defined(CONFIG_TENSORFLOW_LITE_MICRO_CMSIS_NN_KERNELS)
#define TINYML_CONV_1CH_REGISTERED 1 /* conv_op.cpp defines the registration */

/* A copy of the kernel's inner loop and the kernel width it is for (0: any width and stride). */
struct OneChannelRow {
	int32_t width;
	tinyml_conv_1ch_row_fn* row;
};

/* The row function for a width, chosen at compile time: only what is named here is linked. */
constexpr tinyml_conv_1ch_row_fn* OneChannelRowFor(int width)
{
#if TINYML_CONV_1CH_UNROLLED
	return width == 5 ? &tinyml_conv_1ch_row_5 : width == 3 ? &tinyml_conv_1ch_row_3 : &tinyml_conv_1ch_row_any;
#else
	(void)width;
	return &tinyml_conv_1ch_row_any;
#endif
}

/* `rows` (static) lists the row functions for the model's one-input-channel convolutions; a node
 * none of them takes runs CMSIS-NN's kernel. */
TFLMRegistration RegisterConv2DOneChannel(const OneChannelRow* rows, int count);

/* kWidth, kMore: for each one-input-channel convolution of the model, its kernel width at stride
 * 1, or 0 for any other stride (the generated op resolver lists them). */
template <int kWidth, int... kMore>
TFLMRegistration Register_CONV_2D_INT8_ONE_CHANNEL()
{
	static constexpr OneChannelRow kRows[] = {{kWidth, OneChannelRowFor(kWidth)},
						  {kMore, OneChannelRowFor(kMore)}...};
	return RegisterConv2DOneChannel(kRows, 1 + sizeof...(kMore));
}
#else
template <int kWidth, int... kMore>
TFLMRegistration Register_CONV_2D_INT8_ONE_CHANNEL()
{
	return tflite::Register_CONV_2D_INT8();
}
#endif

/* Sources generated before the widths were listed: the loop for any shape. */
inline TFLMRegistration Register_CONV_2D_INT8_ONE_CHANNEL()
{
	return Register_CONV_2D_INT8_ONE_CHANNEL<0>();
}

}  // namespace tinyml
