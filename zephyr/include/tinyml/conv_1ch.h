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
 * place: each input row of the window, offset and zero-padded, is converted
 * once per call, and the sums for two neighbouring output pixels and four
 * output channels are built together from it, for any kernel size and stride,
 * without im2col. Which instructions do the multiply-accumulates depends on
 * the core (TINYML_CONV_1CH_VARIANT):
 *  - DSP extension (Cortex-M4, M7, M33 with DSP, M55): SMLAD, two taps per
 *    instruction, from 16-bit rows and weight pairs;
 *  - other Armv7-M/Armv8-M Mainline (Cortex-M3, M33 without DSP): SMLAL, two
 *    pixels per instruction, from rows whose 32-bit words hold the value for
 *    both pixels in lanes of TINYML_CONV_1CH_LANE_BITS bits;
 *  - Armv6-M and Armv8-M Baseline (Cortex-M0, M23), without a 64-bit
 *    multiply-accumulate: one pixel per 32-bit sum.
 * Output channels not in whole blocks of four, and on the SMLAL cores kernels
 * over TINYML_CONV_1CH_MAX_PACKED_TAPS taps, are not taken (CMSIS-NN keeps them).
 *
 * Plain C (the DSP variant through ACLE's __smlad, emulated off Arm), so the
 * same file is compiled natively for the host tests that compare every variant
 * with TFLM on random shapes (tests/test_conv_1ch.py).
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

#define TINYML_CONV_1CH_PLAIN_SUMS 0  /* one pixel per 32-bit sum */
#define TINYML_CONV_1CH_LANE_SUMS 1   /* two pixels per 64-bit sum (SMLAL) */
#define TINYML_CONV_1CH_DUAL_MACS 2   /* two taps per 16-bit dual multiply-accumulate (SMLAD) */

/* The host tests force a variant with -DTINYML_CONV_1CH_FORCE_VARIANT=<n>. */
#if defined(TINYML_CONV_1CH_FORCE_VARIANT)
#define TINYML_CONV_1CH_VARIANT TINYML_CONV_1CH_FORCE_VARIANT
#elif defined(__ARM_ARCH_6M__) || defined(__ARM_ARCH_8M_BASE__)
#define TINYML_CONV_1CH_VARIANT TINYML_CONV_1CH_PLAIN_SUMS
#elif defined(__ARM_FEATURE_DSP) && (__ARM_FEATURE_DSP == 1)
#define TINYML_CONV_1CH_VARIANT TINYML_CONV_1CH_DUAL_MACS
#else
#define TINYML_CONV_1CH_VARIANT TINYML_CONV_1CH_LANE_SUMS
#endif

/* Helium (MVE, Cortex-M55/M85): the dual-MAC variant's 16-bit rows, summed with vector dot
 * products (VMLADAVA, eight taps per instruction) over taps gathered from the window's rows
 * (VLDRH gather), and the requantization of four channels per vector. Its weights are one
 * channel's taps after another, each channel's zero-padded to a multiple of eight; kernels of
 * more than TINYML_CONV_1CH_MVE_MAX_TAPS taps are not taken. */
#if !defined(TINYML_CONV_1CH_FORCE_VARIANT) && TINYML_CONV_1CH_VARIANT == TINYML_CONV_1CH_DUAL_MACS && \
	defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#define TINYML_CONV_1CH_MVE 1
#else
#define TINYML_CONV_1CH_MVE 0
#endif
#define TINYML_CONV_1CH_MVE_MAX_TAPS 64

/* Copies of the inner loop unrolled for 3- and 5-tap-wide kernels at stride 1
 * (CONFIG_TINYML_CONV_1CH_UNROLL; Helium has one loop for every width). */
#if defined(CONFIG_TINYML_CONV_1CH_UNROLL) && !TINYML_CONV_1CH_MVE
#define TINYML_CONV_1CH_UNROLLED 1
#else
#define TINYML_CONV_1CH_UNROLLED 0
#endif

struct tinyml_conv_1ch;
struct tinyml_conv_1ch_channel; /* conv_1ch.c's requantization of one output channel */

/* The kernel's inner loop, one output row for a block of channels. Its copies are separate
 * functions that the caller names (tinyml/conv_op.h picks them at compile time from the widths the
 * generated op resolver lists), so that an image links only the copies its model uses. */
typedef void tinyml_conv_1ch_row_fn(const struct tinyml_conv_1ch *conv, const int32_t *rows,
				    const void *weights, const struct tinyml_conv_1ch_channel *q, int narrow,
				    const uint16_t *taps_at, int8_t *out);
tinyml_conv_1ch_row_fn tinyml_conv_1ch_row_any; /* any width, any stride */
#if TINYML_CONV_1CH_UNROLLED
tinyml_conv_1ch_row_fn tinyml_conv_1ch_row_3;   /* 3 taps wide, stride 1 */
tinyml_conv_1ch_row_fn tinyml_conv_1ch_row_5;   /* 5 taps wide, stride 1 */
#endif

/* Whether a row function made for `width` (0: any) computes the shape: the unrolled ones take
 * their width at stride 1 only. */
static inline int tinyml_conv_1ch_row_takes(int32_t width, int32_t filter_w, int32_t stride_w)
{
	return width == 0 || (width == filter_w && stride_w == 1);
}

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
	const void *weights;          /* the filter in tinyml_conv_1ch_pack_weights()'s order */
	const int32_t *bias;          /* [out_ch], or NULL */
	const int32_t *multiplier;    /* TFLM's per-channel quantized multipliers and shifts */
	const int32_t *shift;         /* (OpDataConv's per_channel_output_multiplier/shift) */
	tinyml_conv_1ch_row_fn *row;  /* the inner loop for this shape (tinyml_conv_1ch_row_takes()) */
};

/* Whether the kernel takes the shape (dilation 1 is the caller's to check): output channels in
 * whole blocks, and with two pixels per 64-bit sum at most TINYML_CONV_1CH_MAX_PACKED_TAPS taps. */
static inline int tinyml_conv_1ch_supported(const struct tinyml_conv_1ch *conv)
{
	return conv->out_ch % TINYML_CONV_1CH_CHANNEL_BLOCK == 0 &&
	       (TINYML_CONV_1CH_VARIANT != TINYML_CONV_1CH_LANE_SUMS ||
		conv->filter_h * conv->filter_w <= TINYML_CONV_1CH_MAX_PACKED_TAPS) &&
	       (!TINYML_CONV_1CH_MVE || conv->filter_h * conv->filter_w <= TINYML_CONV_1CH_MVE_MAX_TAPS);
}

/* Taps of one channel's weights in the Helium layout: a multiple of eight (a vector of 16-bit values). */
static inline int32_t tinyml_conv_1ch_mve_taps(const struct tinyml_conv_1ch *conv)
{
	return (conv->filter_h * conv->filter_w + 7) / 8 * 8;
}

/* Taps of a kernel row in pairs (the dual multiply-accumulate's): an odd last one pairs with a
 * zero weight. */
static inline int32_t tinyml_conv_1ch_tap_pairs(const struct tinyml_conv_1ch *conv)
{
	return (conv->filter_w + 1) / 2;
}

/* Bytes of the weights in their packed layout (persistent, made once, 4-byte aligned). */
static inline size_t tinyml_conv_1ch_weights_size(const struct tinyml_conv_1ch *conv)
{
	if (TINYML_CONV_1CH_MVE) {
		return (size_t)conv->out_ch * (size_t)tinyml_conv_1ch_mve_taps(conv) * sizeof(int16_t);
	}
	if (TINYML_CONV_1CH_VARIANT == TINYML_CONV_1CH_DUAL_MACS) {
		return (size_t)conv->out_ch * (size_t)(conv->filter_h * tinyml_conv_1ch_tap_pairs(conv)) *
		       sizeof(int32_t);
	}
	return (size_t)conv->out_ch * (size_t)(conv->filter_h * conv->filter_w);
}

/* 32-bit words of one converted input row in the scratch memory: every padded column a pair of
 * output pixels reads (with 16-bit rows, also the second pixel's last tap pair). */
static inline int32_t tinyml_conv_1ch_row_words(const struct tinyml_conv_1ch *conv)
{
	if (TINYML_CONV_1CH_VARIANT == TINYML_CONV_1CH_DUAL_MACS) {
		return (conv->output_w * conv->stride_w + 2 * tinyml_conv_1ch_tap_pairs(conv) + 1) / 2;
	}
	return (conv->output_w - 1) * conv->stride_w + conv->filter_w;
}

/* Bytes of scratch memory one call needs: the window's filter_h input rows, converted (each input
 * row is converted once per call, then moves up as the window does). */
static inline size_t tinyml_conv_1ch_scratch_size(const struct tinyml_conv_1ch *conv)
{
	return (size_t)conv->filter_h * (size_t)tinyml_conv_1ch_row_words(conv) * sizeof(int32_t);
}

/* Writes the filter [out_ch, filter_h, filter_w, 1] in the order the kernel reads it into
 * `packed` (tinyml_conv_1ch_weights_size() bytes, 4-byte aligned): blocks of
 * TINYML_CONV_1CH_CHANNEL_BLOCK channels, each tap-major, so that one tap's (or tap pair's)
 * weights for a block are adjacent. */
void tinyml_conv_1ch_pack_weights(const struct tinyml_conv_1ch *conv, const int8_t *filter,
				  void *packed);

/* The convolution of input into output; scratch is tinyml_conv_1ch_scratch_size() bytes,
 * 4-byte aligned. */
void tinyml_conv_1ch_s8(const struct tinyml_conv_1ch *conv, const int8_t *input, int8_t *output,
			void *scratch);

#ifdef __cplusplus
}
#endif

#endif /* TINYML_CONV_1CH_H_ */
