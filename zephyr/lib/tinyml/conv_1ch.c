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
#if TINYML_CONV_1CH_MVE
#include <arm_mve.h>
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

	if (TINYML_CONV_1CH_MVE) {
		const int32_t padded = tinyml_conv_1ch_mve_taps(conv);
		int16_t *values = (int16_t *)packed;

		for (int32_t i = 0; i < conv->out_ch * padded; i++) {
			values[i] = (int16_t)(i % padded < taps ? filter[i / padded * taps + i % padded] : 0);
		}
		return;
	}
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
struct tinyml_conv_1ch_channel {
	int32_t bias;
	int32_t multiplier;
	int32_t left;     /* shift > 0: acc is shifted left first */
	int32_t right;    /* shift < 0: the rounding right shift */
	uint32_t mask;    /* 2^right - 1: the bits shifted out */
	uint32_t half;    /* 2^(right - 1), 0 when right is 0 */
	int32_t negative; /* -1 when right > 0: a negative value rounds away from zero */
	int32_t bias2;    /* 2 * bias, for requantize_narrow() */
};

/* Largest |sum of filter * (input + offset)| over a kernel of `taps` taps: |weight| <= 128 and
 * |input + offset| <= 255. */
#define SUM_BOUND_PER_TAP (128 * 255)

/* The output's offset and range, copied out of the shape: the kernel's int8 stores may alias
 * anything, so fields read through a pointer would be loaded again after every store. */
struct output_range {
	int32_t offset, min, max;
};

/* The block's requantization; returns whether requantize_narrow() computes it for every channel
 * of the block: a right shift of at least 1, a multiplier that is not negative, and sums plus bias
 * below 2^30 in magnitude whatever the input (so that twice them fits an int32). */
static int channels(const struct tinyml_conv_1ch *conv, int32_t oc, struct tinyml_conv_1ch_channel *q)
{
	const int64_t sum_bound = (int64_t)conv->filter_h * conv->filter_w * SUM_BOUND_PER_TAP;
	int narrow = 1;

	for (int32_t i = 0; i < BLOCK; i++) {
		const int32_t shift = conv->shift[oc + i];
		const int32_t right = shift > 0 ? 0 : -shift;
		const int32_t bias = conv->bias != NULL ? conv->bias[oc + i] : 0;

		q[i].bias = bias;
		q[i].multiplier = conv->multiplier[oc + i];
		q[i].left = shift > 0 ? shift : 0;
		q[i].right = right;
		q[i].mask = (1u << right) - 1u;
		q[i].half = right > 0 ? 1u << (right - 1) : 0u;
		q[i].negative = right > 0 ? -1 : 0;
		narrow = narrow && right >= 1 && q[i].multiplier >= 0 &&
			 sum_bound + (bias < 0 ? -(int64_t)bias : bias) < ((int64_t)1 << 30);
		q[i].bias2 = narrow ? 2 * bias : 0;
	}
	return narrow;
}

/*
 * The doubling high multiply never saturates: its one overflow case needs a multiplier of
 * INT32_MIN, and TFLM's multipliers are not negative; rounding (p + 2^30) / 2^31 toward zero
 * with TFLM's sign-dependent nudge equals an arithmetic shift of p + 2^30 for either sign.
 * TFLM's RoundingDivideByPOT adds 1 to h >> r when the remainder h & mask passes half (half and
 * more for h >= 0, more than half for h < 0): exactly when remainder + 2^(r-1) - [h < 0] reaches
 * 2^r, computed unsigned, so that no value of h overflows.
 */
ALWAYS_INLINE int8_t requantize(struct output_range range, int32_t sum, const struct tinyml_conv_1ch_channel *q)
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

/* (a * b + 2^31) / 2^32 rounded down, plus c: the DSP extension's SMMLAR. */
static inline int32_t high_mul_add(int32_t a, int32_t b, int32_t c)
{
#if defined(__ARM_FEATURE_DSP) && (__ARM_FEATURE_DSP == 1) && defined(__GNUC__) && defined(__arm__)
	int32_t result;

	__asm__("smmlar %0, %1, %2, %3" : "=r"(result) : "r"(a), "r"(b), "r"(c));
	return result;
#else
	return (int32_t)((((int64_t)c << 32) + (int64_t)a * b + ((int64_t)1 << 31)) >> 32);
#endif
}

/*
 * requantize() in a few instructions, for a channel that channels() found narrow (right >= 1, so
 * left is 0; 2 * acc fits an int32; multiplier >= 0). With acc2 = 2 * acc:
 * high = (acc * m + 2^30) >> 31 = (acc2 * m + 2^31) >> 32 exactly (as above), so SMMLAR gives
 * high + half in one instruction. TFLM's RoundingDivideByPOT(high, right) is
 * (high + half - [high < 0]) >> right (the same threshold as requantize()'s, without overflow:
 * |high| <= |acc| < 2^30). [acc < 0] may stand for [high < 0]: with m >= 0 they differ only when
 * high is 0, and then (half - 1) >> right and half >> right are both 0, as right >= 1.
 */
ALWAYS_INLINE int8_t requantize_narrow(struct output_range range, int32_t sum, const struct tinyml_conv_1ch_channel *q)
{
	const int32_t acc2 = q->bias2 + sum * 2;
	const int32_t rounded = high_mul_add(acc2, q->multiplier, (int32_t)q->half) + (acc2 >> 31);
	int32_t result = (rounded >> q->right) + range.offset;

	result = result < range.min ? range.min : result;
	result = result > range.max ? range.max : result;
	return (int8_t)result;
}

/* The outputs of one or two pixels (both) for a block that is not narrow: requantize() in full,
 * out of line, as it is rarely taken (a right shift of 0, or a bias near 2^30). */
static __attribute__((noinline)) void store_wide(struct output_range range, const int32_t *sums,
						 const struct tinyml_conv_1ch_channel *q, int8_t *out, int32_t out_ch,
						 int both)
{
	for (int32_t i = 0; i < BLOCK; i++) {
		out[i] = requantize(range, sums[i], &q[i]);
		if (both) {
			out[out_ch + i] = requantize(range, sums[BLOCK + i], &q[i]);
		}
	}
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
			     const struct tinyml_conv_1ch_channel *q, int narrow, const uint16_t *taps_at, int8_t *out,
			     int32_t fixed_width)
{
	const int32_t fh = conv->filter_h;
	const int32_t fw = fixed_width != 0 ? fixed_width : conv->filter_w; /* constant: unrolled */
	const int32_t words = tinyml_conv_1ch_row_words(conv);
	const int32_t out_ch = conv->out_ch;
	const int32_t stride = fixed_width != 0 ? 1 : conv->stride_w; /* the unrolled widths: stride 1 */
	const int32_t width = conv->output_w;
	const struct output_range range = {conv->output_offset, conv->act_min, conv->act_max};
#if TINYML_CONV_1CH_MVE
	const int32_t padded = tinyml_conv_1ch_mve_taps(conv);
	const int32x4_t bias = {q[0].bias, q[1].bias, q[2].bias, q[3].bias};
	const int32x4_t multiplier = {q[0].multiplier, q[1].multiplier, q[2].multiplier, q[3].multiplier};
	const int32x4_t right = {-q[0].right, -q[1].right, -q[2].right, -q[3].right};
#else
	(void)taps_at;
#endif

	for (int32_t ox = 0; ox < width; ox += PIXELS) {
		int32_t sums[2 * BLOCK];
#if TINYML_CONV_1CH_MVE
		/* Eight taps of the window at a time, for two pixels and four channels: the taps'
		 * places in the rows (taps_at, padded with 0: a real value, times a zero weight) are
		 * gathered from each pixel's first column, and each channel's weights are loaded once
		 * for both pixels. */
		const int16_t *r = (const int16_t *)rows + ox * stride;
		const int16_t *r2 = r + stride;
		const int16_t *w = (const int16_t *)weights;
		int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;

		(void)fh;
		(void)fw;
		(void)words;
		for (int32_t t = 0; t < padded; t += 8) {
			const uint16x8_t at = vld1q_u16(taps_at + t);
			const int16x8_t x = vldrhq_gather_shifted_offset_s16(r, at);
			const int16x8_t y = vldrhq_gather_shifted_offset_s16(r2, at);
			int16x8_t k = vld1q_s16(w + t);

			a0 = vmladavaq_s16(a0, x, k);
			b0 = vmladavaq_s16(b0, y, k);
			k = vld1q_s16(w + padded + t);
			a1 = vmladavaq_s16(a1, x, k);
			b1 = vmladavaq_s16(b1, y, k);
			k = vld1q_s16(w + 2 * padded + t);
			a2 = vmladavaq_s16(a2, x, k);
			b2 = vmladavaq_s16(b2, y, k);
			k = vld1q_s16(w + 3 * padded + t);
			a3 = vmladavaq_s16(a3, x, k);
			b3 = vmladavaq_s16(b3, y, k);
		}
		sums[0] = a0, sums[1] = a1, sums[2] = a2, sums[3] = a3;
		sums[4] = b0, sums[5] = b1, sums[6] = b2, sums[7] = b3;
#elif VARIANT == DUAL
		const int32_t pairs = (fw + 1) / 2;
		const int32_t *w = (const int32_t *)weights;
		int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;

		for (int32_t ky = 0; ky < fh; ky++) {
			const int16_t *r = (const int16_t *)(rows + ky * words) + ox * stride;
			const int16_t *r2 = r + stride;

#define TAP_PAIR(p)                                                                                \
	do {                                                                                       \
		const int32_t x = load_pair(r + 2 * (p));                                          \
		const int32_t y = load_pair(r2 + 2 * (p));                                         \
                                                                                                   \
		a0 = dual_mac(x, w[0], a0);                                                        \
		b0 = dual_mac(y, w[0], b0);                                                        \
		a1 = dual_mac(x, w[1], a1);                                                        \
		b1 = dual_mac(y, w[1], b1);                                                        \
		a2 = dual_mac(x, w[2], a2);                                                        \
		b2 = dual_mac(y, w[2], b2);                                                        \
		a3 = dual_mac(x, w[3], a3);                                                        \
		b3 = dual_mac(y, w[3], b3);                                                        \
		w += BLOCK;                                                                        \
	} while (0)
			if (fixed_width != 0) {
				/* a known width: the pairs unrolled, which also frees the registers
				 * the loop would keep (the 3 pairs of a 5-wide row: a fifth fewer
				 * instructions) */
#pragma GCC unroll 8
				for (int32_t p = 0; p < pairs; p++) {
					TAP_PAIR(p);
				}
			} else {
				for (int32_t p = 0; p < pairs; p++) {
					TAP_PAIR(p);
				}
			}
#undef TAP_PAIR
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

#if TINYML_CONV_1CH_MVE
		if (narrow) {
			/* requantize_narrow() for four channels at once: the doubling high multiply
			 * VQRDMULH is (acc * m + 2^30) >> 31 exactly, and (high - [high < 0]) rounded
			 * right by VRSHL is TFLM's RoundingDivideByPOT; with |acc| < 2^30 nothing saturates */
			const int32x4_t first = {sums[0], sums[1], sums[2], sums[3]};
			int32x4_t high = vqrdmulhq_s32(vaddq_s32(first, bias), multiplier);
			int32x4_t result = vrshlq_s32(vaddq_s32(high, vshrq_n_s32(high, 31)), right);

			result = vminq_s32(vmaxq_s32(vaddq_n_s32(result, range.offset), vdupq_n_s32(range.min)),
					   vdupq_n_s32(range.max));
			vstrbq_s32(out, result);
			if (both) {
				const int32x4_t second = {sums[4], sums[5], sums[6], sums[7]};

				high = vqrdmulhq_s32(vaddq_s32(second, bias), multiplier);
				result = vrshlq_s32(vaddq_s32(high, vshrq_n_s32(high, 31)), right);
				result = vminq_s32(vmaxq_s32(vaddq_n_s32(result, range.offset),
							     vdupq_n_s32(range.min)),
						   vdupq_n_s32(range.max));
				vstrbq_s32(out + out_ch, result);
			}
		} else {
			store_wide(range, sums, q, out, out_ch, both);
		}
#else
		if (narrow) {
#pragma GCC unroll 4
			for (int32_t i = 0; i < BLOCK; i++) { /* unrolled: fixed offsets */
				out[i] = requantize_narrow(range, sums[i], &q[i]);
				if (both) {
					out[out_ch + i] = requantize_narrow(range, sums[BLOCK + i], &q[i]);
				}
			}
		} else {
			store_wide(range, sums, q, out, out_ch, both);
		}
#endif
		out += PIXELS * out_ch;
	}
}

/* block_row() for any kernel width and stride, and (TINYML_CONV_1CH_UNROLLED) unrolled for the
 * widths of most first layers at stride 1: about a tenth fewer instructions, 0.85 KB of flash each
 * on a Cortex-M3. Each is its own function for the op resolver to name (tinyml/conv_op.h): an image
 * links only those its model's convolutions use. */
void tinyml_conv_1ch_row_any(const struct tinyml_conv_1ch *conv, const int32_t *rows, const void *weights,
			     const struct tinyml_conv_1ch_channel *q, int narrow, const uint16_t *taps_at,
			     int8_t *out)
{
	block_row(conv, rows, weights, q, narrow, taps_at, out, 0);
}

#if TINYML_CONV_1CH_UNROLLED
void tinyml_conv_1ch_row_3(const struct tinyml_conv_1ch *conv, const int32_t *rows, const void *weights,
			   const struct tinyml_conv_1ch_channel *q, int narrow, const uint16_t *taps_at,
			   int8_t *out)
{
	block_row(conv, rows, weights, q, narrow, taps_at, out, 3);
}

void tinyml_conv_1ch_row_5(const struct tinyml_conv_1ch *conv, const int32_t *rows, const void *weights,
			   const struct tinyml_conv_1ch_channel *q, int narrow, const uint16_t *taps_at,
			   int8_t *out)
{
	block_row(conv, rows, weights, q, narrow, taps_at, out, 5);
}
#endif

void tinyml_conv_1ch_s8(const struct tinyml_conv_1ch *conv, const int8_t *input, int8_t *output,
			void *scratch)
{
	tinyml_conv_1ch_row_fn *const row_of_block = conv->row;
	const int32_t words = tinyml_conv_1ch_row_words(conv);
	const int32_t fh = conv->filter_h;
	const int32_t out_ch = conv->out_ch;
	const size_t block_weights = tinyml_conv_1ch_weights_size(conv) / (size_t)(out_ch / BLOCK);
	int32_t *rows = (int32_t *)scratch; /* the window's fh rows, converted, top to bottom */
	/* Helium: each tap's place in the rows, in 16-bit values from the window's first column */
#if TINYML_CONV_1CH_MVE
	uint16_t taps_at[TINYML_CONV_1CH_MVE_MAX_TAPS] = {0};

	for (int32_t t = 0; t < conv->filter_h * conv->filter_w; t++) {
		taps_at[t] = (uint16_t)(t / conv->filter_w * 2 * words + t % conv->filter_w);
	}
#else
	const uint16_t *const taps_at = NULL;
#endif

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
				struct tinyml_conv_1ch_channel q[BLOCK];
				const int narrow = channels(conv, oc, q);

				row_of_block(conv, rows,
					     (const int8_t *)conv->weights + (size_t)(oc / BLOCK) * block_weights, q,
					     narrow, taps_at, out + oc);
			}
		}
	}
}
