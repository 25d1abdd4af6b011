/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The one-input-channel int8 convolution: see include/tinyml/conv_1ch.h.
 *
 * The arithmetic is TFLM's reference_integer_ops::ConvPerChannel, step by step:
 * acc = sum of filter * (input + input_offset) over the taps inside the input
 * (a padded tap adds nothing: its converted value is 0), plus the bias; then
 * MultiplyByQuantizedMultiplier (TFLM's double rounding: a rounding doubling
 * high multiply, then a rounding right shift), plus the output offset,
 * clamped to the activation's range. Integer sums are exact, so the order in
 * which the taps are added does not change a bit.
 */

#include "tinyml/conv_1ch.h"

#include <string.h>

#if TINYML_CONV_1CH_VARIANT == TINYML_CONV_1CH_DUAL_MACS && defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#endif

#define VARIANT TINYML_CONV_1CH_VARIANT
#define PLAIN TINYML_CONV_1CH_PLAIN_SUMS
#define LANES TINYML_CONV_1CH_LANE_SUMS
#define DUAL TINYML_CONV_1CH_DUAL_MACS
#define LANE TINYML_CONV_1CH_LANE_BITS
#define BLOCK TINYML_CONV_1CH_CHANNEL_BLOCK
#define PIXELS (VARIANT == PLAIN ? 1 : 2) /* output pixels of a row computed together */

void tinyml_conv_1ch_pack_weights(const struct tinyml_conv_1ch *conv, const int8_t *filter,
				  void *packed)
{
	const int32_t fw = conv->filter_w;
	const int32_t taps = conv->filter_h * fw;

	for (int32_t i = 0; i < conv->out_ch * taps; i++) {
		const int32_t oc = i / taps;
		const int32_t tap = i % taps;

		if (VARIANT == DUAL) {
			/* [block][row][tap pair][channel of the block] words, the pair's first tap in
			 * the low half, as a 32-bit load of two 16-bit row values has it */
			const int32_t ky = tap / fw;
			const int32_t kx = tap % fw;
			const int32_t pairs = tinyml_conv_1ch_tap_pairs(conv);
			const int32_t pair = ((oc / BLOCK) * conv->filter_h + ky) * pairs + kx / 2;
			int16_t *word = (int16_t *)packed + (pair * BLOCK + oc % BLOCK) * 2;

			word[kx % 2] = filter[i];
			if (kx == fw - 1 && fw % 2 == 1) {
				word[1] = 0; /* an odd row's last tap pairs with a zero weight */
			}
		} else {
			((int8_t *)packed)[((oc / BLOCK) * taps + tap) * BLOCK + oc % BLOCK] = filter[i];
		}
	}
}

/* Input value of padded column xx of a row (0 in the padding), offset added. */
static int32_t column_value(const struct tinyml_conv_1ch *conv, const int8_t *row, int32_t xx)
{
	const int32_t x = xx - conv->pad_w;

	return (row != NULL && x >= 0 && x < conv->input_w) ? row[x] + conv->input_offset : 0;
}

/* One padded input row, converted; row NULL is a padding row. 16-bit values for the dual
 * multiply-accumulate; 32-bit words otherwise, with two pixels per sum holding column xx for the
 * first pixel and column xx + stride_w for the second in the upper lane. */
static void convert_row(const struct tinyml_conv_1ch *conv, const int8_t *row, int32_t *dst)
{
	const int32_t words = tinyml_conv_1ch_row_words(conv);

	if (VARIANT == DUAL) {
		int16_t *halves = (int16_t *)dst;

		for (int32_t xx = 0; xx < 2 * words; xx++) {
			halves[xx] = (int16_t)column_value(conv, row, xx);
		}
		return;
	}
	for (int32_t xx = 0; xx < words; xx++) {
		const int32_t high = VARIANT == LANES ? column_value(conv, row, xx + conv->stride_w) : 0;

		dst[xx] = column_value(conv, row, xx) + high * (1 << LANE);
	}
}

/* Inlined into the kernel's loops: a call per output would cost a quarter of the work. */
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/*
 * TFLM's MultiplyByQuantizedMultiplier (double rounding) for one output channel, with its bias:
 * made once per output row and block of channels (on the stack), used for every pixel of the row.
 */
struct channel {
	int32_t bias;
	int32_t multiplier;
	int32_t left;     /* shift > 0: acc is shifted left first */
	int32_t right;    /* shift < 0: the rounding right shift */
	uint32_t mask;    /* 2^right - 1: the bits shifted out */
	uint32_t half;    /* 2^(right - 1), 0 when right is 0 */
	int32_t negative; /* -1 when right > 0: a negative value rounds away from zero */
};

/* The output's offset and range, copied out of the shape: the kernel's int8 stores may alias
 * anything, so fields read through a pointer would be loaded again after every store. */
struct output_range {
	int32_t offset, min, max;
};

static void channels(const struct tinyml_conv_1ch *conv, int32_t oc, struct channel *q)
{
	for (int32_t i = 0; i < BLOCK; i++) {
		const int32_t shift = conv->shift[oc + i];
		const int32_t right = shift > 0 ? 0 : -shift;

		q[i].bias = conv->bias != NULL ? conv->bias[oc + i] : 0;
		q[i].multiplier = conv->multiplier[oc + i];
		q[i].left = shift > 0 ? shift : 0;
		q[i].right = right;
		q[i].mask = (1u << right) - 1u;
		q[i].half = right > 0 ? 1u << (right - 1) : 0u;
		q[i].negative = right > 0 ? -1 : 0;
	}
}

/*
 * The doubling high multiply never saturates: its one overflow case needs a multiplier of
 * INT32_MIN, and TFLM's multipliers are not negative; rounding (p + 2^30) / 2^31 toward zero
 * with TFLM's sign-dependent nudge equals an arithmetic shift of p + 2^30 for either sign.
 * TFLM's RoundingDivideByPOT adds 1 to h >> r when the remainder h & mask passes half (half and
 * more for h >= 0, more than half for h < 0): exactly when remainder + 2^(r-1) - [h < 0] reaches
 * 2^r, computed unsigned, so that no value of h overflows.
 */
ALWAYS_INLINE int8_t requantize(struct output_range range, int32_t sum, const struct channel *q)
{
	const int32_t acc = sum + q->bias;
	const int64_t product = (int64_t)(int32_t)((uint32_t)acc << q->left) * q->multiplier;
	const int32_t high = (int32_t)((product + ((int64_t)1 << 30)) >> 31);
	const uint32_t rounding =
		(((uint32_t)high & q->mask) + q->half + (uint32_t)((high >> 31) & q->negative)) >> q->right;
	int32_t result = (high >> q->right) + (int32_t)rounding;

	result += range.offset;
	result = result < range.min ? range.min : result;
	result = result > range.max ? range.max : result;
	return (int8_t)result;
}

/* Two taps of 16-bit values, x's halves times w's halves, added to acc: the DSP extension's SMLAD. */
static inline int32_t dual_mac(int32_t x, int32_t w, int32_t acc)
{
#if defined(__ARM_FEATURE_DSP) && (__ARM_FEATURE_DSP == 1)
	return (int32_t)__smlad((uint32_t)x, (uint32_t)w, acc);
#else
	return acc + (int16_t)x * (int16_t)w + (int16_t)(x >> 16) * (int16_t)(w >> 16);
#endif
}

/* Two adjacent 16-bit values as one 32-bit word (an unaligned load where the core allows one). */
static inline int32_t load_pair(const int16_t *values)
{
	int32_t word;

	memcpy(&word, values, sizeof(word));
	return word;
}

/*
 * One output row for one block of channels: `weights` is the block's, `q` its requantization,
 * out the row's first output of the block's first channel. The sums for two neighbouring pixels
 * (one with plain sums) are built together, then stored: sums[i] and sums[BLOCK + i] are channel
 * i of the first and the second pixel.
 */
ALWAYS_INLINE void block_row(const struct tinyml_conv_1ch *conv, const int32_t *rows, const void *weights,
			     const struct channel *q, int8_t *out, int32_t fixed_width)
{
	const int32_t fh = conv->filter_h;
	const int32_t fw = fixed_width != 0 ? fixed_width : conv->filter_w; /* constant: unrolled */
	const int32_t words = tinyml_conv_1ch_row_words(conv);
	const int32_t out_ch = conv->out_ch;
	const int32_t stride = conv->stride_w;
	const int32_t width = conv->output_w;
	const struct output_range range = {conv->output_offset, conv->act_min, conv->act_max};

	for (int32_t ox = 0; ox < width; ox += PIXELS) {
		int32_t sums[2 * BLOCK];
#if VARIANT == DUAL
		const int32_t pairs = (fw + 1) / 2;
		const int32_t *w = (const int32_t *)weights;
		int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;

		for (int32_t ky = 0; ky < fh; ky++) {
			const int16_t *r = (const int16_t *)(rows + ky * words) + ox * stride;
			const int16_t *r2 = r + stride;

			for (int32_t p = 0; p < pairs; p++) {
				const int32_t x = load_pair(r + 2 * p);
				const int32_t y = load_pair(r2 + 2 * p);

				a0 = dual_mac(x, w[0], a0);
				b0 = dual_mac(y, w[0], b0);
				a1 = dual_mac(x, w[1], a1);
				b1 = dual_mac(y, w[1], b1);
				a2 = dual_mac(x, w[2], a2);
				b2 = dual_mac(y, w[2], b2);
				a3 = dual_mac(x, w[3], a3);
				b3 = dual_mac(y, w[3], b3);
				w += BLOCK;
			}
		}
		sums[0] = a0, sums[1] = a1, sums[2] = a2, sums[3] = a3;
		sums[4] = b0, sums[5] = b1, sums[6] = b2, sums[7] = b3;
#else
		const int8_t *w = (const int8_t *)weights;
#if VARIANT == LANES
		int64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#else
		int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#endif
		for (int32_t ky = 0; ky < fh; ky++) {
			const int32_t *r = rows + ky * words + ox * stride;

			for (int32_t kx = 0; kx < fw; kx++) {
#if VARIANT == LANES
				const int64_t x = r[kx];
#else
				const int32_t x = r[kx];
#endif
				s0 += x * w[0];
				s1 += x * w[1];
				s2 += x * w[2];
				s3 += x * w[3];
				w += BLOCK;
			}
		}
#if VARIANT == LANES
		/* the lower lane is a sum's low LANE bits, sign-extended; what remains, shifted down,
		 * is the upper lane */
		sums[0] = (int32_t)((uint32_t)s0 << (32 - LANE)) >> (32 - LANE);
		sums[1] = (int32_t)((uint32_t)s1 << (32 - LANE)) >> (32 - LANE);
		sums[2] = (int32_t)((uint32_t)s2 << (32 - LANE)) >> (32 - LANE);
		sums[3] = (int32_t)((uint32_t)s3 << (32 - LANE)) >> (32 - LANE);
		sums[4] = (int32_t)((s0 - sums[0]) >> LANE);
		sums[5] = (int32_t)((s1 - sums[1]) >> LANE);
		sums[6] = (int32_t)((s2 - sums[2]) >> LANE);
		sums[7] = (int32_t)((s3 - sums[3]) >> LANE);
#else
		sums[0] = s0, sums[1] = s1, sums[2] = s2, sums[3] = s3;
#endif
#endif
		const int both = PIXELS == 2 && ox + 1 < width;

#pragma GCC unroll 4
		for (int32_t i = 0; i < BLOCK; i++) { /* unrolled: fixed offsets, the channel's q loaded once */
			const struct channel c = q[i];

			out[i] = requantize(range, sums[i], &c);
			if (both) {
				out[out_ch + i] = requantize(range, sums[BLOCK + i], &c);
			}
		}
		out += PIXELS * out_ch;
	}
}

/* block_row() for any kernel width, and (CONFIG_TINYML_CONV_1CH_UNROLL) unrolled for the widths of
 * most first layers: about a tenth fewer instructions for 1.2 KB of flash each. */
static void block_row_any(const struct tinyml_conv_1ch *conv, const int32_t *rows, const void *weights,
			  const struct channel *q, int8_t *out)
{
	block_row(conv, rows, weights, q, out, 0);
}

#if defined(CONFIG_TINYML_CONV_1CH_UNROLL)
static void block_row_3(const struct tinyml_conv_1ch *conv, const int32_t *rows, const void *weights,
			const struct channel *q, int8_t *out)
{
	block_row(conv, rows, weights, q, out, 3);
}

static void block_row_5(const struct tinyml_conv_1ch *conv, const int32_t *rows, const void *weights,
			const struct channel *q, int8_t *out)
{
	block_row(conv, rows, weights, q, out, 5);
}
#endif

void tinyml_conv_1ch_s8(const struct tinyml_conv_1ch *conv, const int8_t *input, int8_t *output,
			void *scratch)
{
#if defined(CONFIG_TINYML_CONV_1CH_UNROLL)
	void (*const row_of_block)(const struct tinyml_conv_1ch *, const int32_t *, const void *,
				   const struct channel *, int8_t *) =
		conv->filter_w == 5 ? block_row_5 : conv->filter_w == 3 ? block_row_3 : block_row_any;
#else
	void (*const row_of_block)(const struct tinyml_conv_1ch *, const int32_t *, const void *,
				   const struct channel *, int8_t *) = block_row_any;
#endif
	const int32_t words = tinyml_conv_1ch_row_words(conv);
	const int32_t fh = conv->filter_h;
	const int32_t out_ch = conv->out_ch;
	const size_t block_weights = tinyml_conv_1ch_weights_size(conv) / (size_t)(out_ch / BLOCK);
	int32_t *rows = (int32_t *)scratch; /* the window's fh rows, converted, top to bottom */

	for (int32_t b = 0; b < conv->batches; b++) {
		const int8_t *image = input + (size_t)b * conv->input_h * conv->input_w;

		for (int32_t oy = 0; oy < conv->output_h; oy++) {
			/* Rows the previous window shares with this one move up; the rest are converted. */
			const int32_t kept = oy > 0 && conv->stride_h < fh ? fh - conv->stride_h : 0;

			for (int32_t i = 0; i < kept * words; i++) { /* forward: the rows move up */
				rows[i] = rows[(fh - kept) * words + i];
			}
			for (int32_t ky = kept; ky < fh; ky++) {
				const int32_t y = oy * conv->stride_h + ky - conv->pad_h;

				convert_row(conv, (y >= 0 && y < conv->input_h) ? image + y * conv->input_w : NULL,
					    rows + ky * words);
			}
			int8_t *out = output + ((size_t)b * conv->output_h + oy) * conv->output_w * out_ch;

			for (int32_t oc = 0; oc < out_ch; oc += BLOCK) {
				struct channel q[BLOCK];

				channels(conv, oc, q);
				row_of_block(conv, rows,
					     (const int8_t *)conv->weights + (size_t)(oc / BLOCK) * block_weights, q,
					     out + oc);
			}
		}
	}
}
