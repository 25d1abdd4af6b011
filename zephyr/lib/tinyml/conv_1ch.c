/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The one-input-channel int8 convolution: see include/tinyml/conv_1ch.h.
 *
 * The arithmetic is TFLM's reference_integer_ops::ConvPerChannel, step by step:
 * acc = sum of filter * (input + input_offset) over the taps inside the input
 * (a padded tap adds nothing: its packed value is 0), plus the bias; then
 * MultiplyByQuantizedMultiplier (TFLM's double rounding: a rounding doubling
 * high multiply, then a rounding right shift), plus the output offset,
 * clamped to the activation's range. Integer sums are exact, so the order in
 * which the taps are added does not change a bit.
 */

#include "tinyml/conv_1ch.h"


/* Cores without a 32x32->64-bit multiply-accumulate instruction (Armv6-M, Armv8-M
 * Baseline) would call a library routine for each one: they sum one pixel at a time
 * in 32 bits. Elsewhere a 64-bit sum holds two pixels (TINYML_CONV_1CH_LANE_BITS). */
#if defined(TINYML_CONV_1CH_PLAIN) || defined(__ARM_ARCH_6M__) || defined(__ARM_ARCH_8M_BASE__)
#define PIXELS 1
typedef int32_t sum_t;
#else
#define PIXELS 2
typedef int64_t sum_t;
#endif

#define LANE TINYML_CONV_1CH_LANE_BITS
#define BLOCK TINYML_CONV_1CH_CHANNEL_BLOCK

/* Words in one packed input row: every padded column a pair of output pixels reads. */
static int32_t row_words(const struct tinyml_conv_1ch *conv)
{
	return (conv->output_w - 1) * conv->stride_w + conv->filter_w;
}

void tinyml_conv_1ch_pack_weights(const struct tinyml_conv_1ch *conv, const int8_t *filter,
				  int8_t *packed_weights)
{
	const int32_t taps = conv->filter_h * conv->filter_w;

	for (int32_t i = 0; i < conv->out_ch * taps; i++) {
		const int32_t oc = i / taps;

		packed_weights[((oc / BLOCK) * taps + i % taps) * BLOCK + oc % BLOCK] = filter[i];
	}
}

/* Input value of padded column xx of a row (0 in the padding), offset added. */
static int32_t column_value(const struct tinyml_conv_1ch *conv, const int8_t *row, int32_t xx)
{
	const int32_t x = xx - conv->pad_w;

	return (row != NULL && x >= 0 && x < conv->input_w) ? row[x] + conv->input_offset : 0;
}

/* One padded input row, packed: word xx holds column xx for the first pixel of a pair and
 * column xx + stride_w for the second (in the upper lane); row NULL is a padding row. */
static void pack_row(const struct tinyml_conv_1ch *conv, const int8_t *row, int32_t *dst)
{
	for (int32_t xx = 0; xx < row_words(conv); xx++) {
		const int32_t high = PIXELS == 2 ? column_value(conv, row, xx + conv->stride_w) : 0;

		dst[xx] = column_value(conv, row, xx) + high * (1 << LANE);
	}
}

/*
 * TFLM's MultiplyByQuantizedMultiplier (double rounding), then the output offset and the
 * activation's clamp. The doubling high multiply never saturates: its one overflow case
 * needs a multiplier of INT32_MIN, and TFLM's multipliers are not negative. Rounding
 * (p + 2^30) / 2^31 toward zero with TFLM's sign-dependent nudge equals an arithmetic
 * shift of p + 2^30 for either sign.
 */
static int8_t requantize(const struct tinyml_conv_1ch *conv, int32_t acc, int32_t multiplier,
			 int32_t shift)
{
	const int32_t left = shift > 0 ? shift : 0;
	const int32_t right = shift > 0 ? 0 : -shift;
	const int64_t product = (int64_t)(int32_t)((uint32_t)acc << left) * multiplier;
	const int32_t high = (int32_t)((product + ((int64_t)1 << 30)) >> 31);
	const int32_t mask = (int32_t)((1u << right) - 1u);
	const int32_t threshold = (mask >> 1) + (high < 0 ? 1 : 0);
	int32_t result = (high >> right) + ((high & mask) > threshold ? 1 : 0);

	result += conv->output_offset;
	result = result < conv->act_min ? conv->act_min : result;
	result = result > conv->act_max ? conv->act_max : result;
	return (int8_t)result;
}

/* Channel oc of the pixels a sum holds: out[oc] and, when `second` is not 0, out[second + oc].
 * The lower lane of a packed sum is its low LANE bits, sign-extended; what remains, shifted
 * down, is the upper lane. */
static void finish(const struct tinyml_conv_1ch *conv, sum_t sum, int32_t oc, int8_t *out,
		   int32_t second)
{
	const int32_t b = conv->bias != NULL ? conv->bias[oc] : 0;
	const int32_t multiplier = conv->multiplier[oc];
	const int32_t shift = conv->shift[oc];
#if PIXELS == 2
	const int32_t low = (int32_t)((uint32_t)sum << (32 - LANE)) >> (32 - LANE);

	if (second != 0) {
		out[second + oc] = requantize(conv, (int32_t)((sum - low) >> LANE) + b, multiplier, shift);
	}
#else
	const int32_t low = sum;

	(void)second; /* one pixel per sum */
#endif
	out[oc] = requantize(conv, low + b, multiplier, shift);
}

void tinyml_conv_1ch_s8(const struct tinyml_conv_1ch *conv, const int8_t *input, int8_t *output,
			void *scratch)
{
	const int32_t words = row_words(conv);
	const int32_t fh = conv->filter_h;
	const int32_t fw = conv->filter_w;
	const int32_t out_ch = conv->out_ch;
	int32_t *rows = (int32_t *)scratch; /* the window's fh rows, packed, top to bottom */

	for (int32_t b = 0; b < conv->batches; b++) {
		const int8_t *image = input + (size_t)b * conv->input_h * conv->input_w;

		for (int32_t oy = 0; oy < conv->output_h; oy++) {
			/* Rows the previous window shares with this one move up; the rest are packed. */
			const int32_t kept = oy > 0 && conv->stride_h < fh ? fh - conv->stride_h : 0;

			for (int32_t i = 0; i < kept * words; i++) { /* forward: the rows move up */
				rows[i] = rows[(fh - kept) * words + i];
			}
			for (int32_t ky = kept; ky < fh; ky++) {
				const int32_t y = oy * conv->stride_h + ky - conv->pad_h;

				pack_row(conv, (y >= 0 && y < conv->input_h) ? image + y * conv->input_w : NULL,
					 rows + ky * words);
			}
			int8_t *out = output + ((size_t)b * conv->output_h + oy) * conv->output_w * out_ch;

			for (int32_t ox = 0; ox < conv->output_w; ox += PIXELS) {
				const int32_t second = PIXELS == 2 && ox + 1 < conv->output_w ? out_ch : 0;
				const int32_t x0 = ox * conv->stride_w;
				const int8_t *w = conv->weights;

				for (int32_t oc = 0; oc < out_ch; oc += BLOCK) {
					sum_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;

					for (int32_t ky = 0; ky < fh; ky++) {
						const int32_t *r = rows + ky * words + x0;

						for (int32_t kx = 0; kx < fw; kx++) {
							const sum_t x = r[kx];

							s0 += x * w[0];
							s1 += x * w[1];
							s2 += x * w[2];
							s3 += x * w[3];
							w += BLOCK;
						}
					}
					finish(conv, s0, oc, out, second);
					finish(conv, s1, oc + 1, out, second);
					finish(conv, s2, oc + 2, out, second);
					finish(conv, s3, oc + 3, out, second);
				}
				out += PIXELS * out_ch;
			}
		}
	}
}
