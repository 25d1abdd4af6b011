/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * An int8 convolution for one input channel (a grey image, a spectrogram, a
 * sensor window: the first layer of most models on microcontrollers), with
 * TFLM's arithmetic exactly: every output byte equals TFLM's reference
 * kernel's (reference_integer_ops::ConvPerChannel) and CMSIS-NN's.
 *
 * Why: CMSIS-NN's arm_convolve_s8 builds each im2col column with one
 * arm_memcpy_s8 call per kernel tap, one byte per call with one input channel,
 * and spends about 9 instructions per multiply-accumulate there against about
 * 4 for a convolution with eight input channels. Here the input is read in
 * place: each input row, offset and zero-padded, is packed once into 32-bit
 * words holding the input values of two neighbouring output pixels (lanes of
 * TINYML_CONV_1CH_LANE_BITS bits), so one 32x32->64-bit multiply-accumulate
 * (SMLAL on Armv7-M and later) does two multiply-accumulates, for any kernel
 * size and stride, without im2col. Cores without a 64-bit multiply (Armv6-M)
 * sum one pixel at a time. Kernels over TINYML_CONV_1CH_MAX_PACKED_TAPS taps and
 * output channels not in whole blocks of four are not taken (CMSIS-NN keeps them).
 *
 * Plain C, so the same file is compiled natively for the host tests that compare
 * it with TFLM on random shapes (tests/test_conv_1ch.py).
 */

#ifndef TINYML_CONV_1CH_H_
#define TINYML_CONV_1CH_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bits per output pixel in a packed word: the second pixel's value times 2^23 still fits an
 * int32 (255 * 2^23 < 2^31), and a lane's sum over T taps of |input| <= 255 times |weight| <= 128
 * stays below 2^22 for T <= 128, so two lanes in a 64-bit accumulator never interfere. */
#define TINYML_CONV_1CH_LANE_BITS 23
#define TINYML_CONV_1CH_MAX_PACKED_TAPS 128

/* Output channels computed together: the weights of one tap for this many
 * channels are adjacent in the packed weights. */
#define TINYML_CONV_1CH_CHANNEL_BLOCK 4

struct tinyml_conv_1ch {
	int32_t batches;
	int32_t input_h, input_w;     /* input [batches, input_h, input_w, 1] */
	int32_t filter_h, filter_w;   /* filter [out_ch, filter_h, filter_w, 1] */
	int32_t out_ch;               /* a multiple of TINYML_CONV_1CH_CHANNEL_BLOCK */
	int32_t output_h, output_w;   /* output [batches, output_h, output_w, out_ch] */
	int32_t stride_h, stride_w;
	int32_t pad_h, pad_w;         /* padding before the first row / column */
	int32_t input_offset;         /* -input zero point */
	int32_t output_offset;        /* output zero point */
	int32_t act_min, act_max;     /* fused activation's range, in output units */
	const int8_t *weights;        /* the filter in tinyml_conv_1ch_pack_weights()'s order */
	const int32_t *bias;          /* [out_ch], or NULL */
	const int32_t *multiplier;    /* TFLM's per-channel quantized multipliers and shifts */
	const int32_t *shift;         /* (OpDataConv's per_channel_output_multiplier/shift) */
};

/* Whether the kernel takes the shape (dilation 1 is the caller's to check): output channels in
 * whole blocks, and on cores with two pixels per sum at most TINYML_CONV_1CH_MAX_PACKED_TAPS taps. */
static inline int tinyml_conv_1ch_supported(const struct tinyml_conv_1ch *conv)
{
	return conv->out_ch % TINYML_CONV_1CH_CHANNEL_BLOCK == 0 &&
	       conv->filter_h * conv->filter_w <= TINYML_CONV_1CH_MAX_PACKED_TAPS;
}

/* Bytes of the weights in their packed layout (int8, persistent, made once). */
static inline size_t tinyml_conv_1ch_weights_size(const struct tinyml_conv_1ch *conv)
{
	return (size_t)conv->out_ch * (size_t)(conv->filter_h * conv->filter_w);
}

/* Bytes of scratch memory one call needs: the window's filter_h input rows, packed (each input
 * row is packed once per call, then moves up as the window does). */
static inline size_t tinyml_conv_1ch_scratch_size(const struct tinyml_conv_1ch *conv)
{
	const size_t row_words = (size_t)((conv->output_w - 1) * conv->stride_w + conv->filter_w);

	return (size_t)conv->filter_h * row_words * sizeof(int32_t);
}

/* Writes the filter [out_ch, filter_h, filter_w, 1] in the order the kernel reads it into
 * `packed` (tinyml_conv_1ch_weights_size() bytes): blocks of TINYML_CONV_1CH_CHANNEL_BLOCK
 * channels, each tap-major, so that one tap's weights for a block are adjacent. */
void tinyml_conv_1ch_pack_weights(const struct tinyml_conv_1ch *conv, const int8_t *filter,
				  int8_t *packed);

/* The convolution of input into output; scratch is tinyml_conv_1ch_scratch_size() bytes,
 * 4-byte aligned. */
void tinyml_conv_1ch_s8(const struct tinyml_conv_1ch *conv, const int8_t *input, int8_t *output,
			void *scratch);

#ifdef __cplusplus
}
#endif

#endif /* TINYML_CONV_1CH_H_ */
