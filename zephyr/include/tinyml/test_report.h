/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * What a self test does with one embedded test input, in one place for every app that runs
 * one: the runtime's (self_test.cpp) and samples/secure_model, whose non-secure image cannot
 * link the runtime (it brings TFLM). The lines printed here are what twister's harness and
 * `west tinyml build --run` read, so they must not differ between apps.
 */
#pragma once

#include <cstddef>
#include <cstdint>

#include <zephyr/sys/printk.h>

#include "test_data.h"
#include "tinyml/argmax.h"
#include "tinyml/packbits.h"

namespace tinyml {

/* Index of the first element where the device differs from host TFLM, or -1. */
inline int FirstDifference(const OutputType* got, const OutputType* want)
{
	for (int i = 0; i < kOutputSize; i++) {
		if (got[i] != want[i]) {
			return i;
		}
	}
	return -1;
}

/*
 * Test input n into the input tensor: unpacked with tinyml::UnpackBits()
 * (PackBits, as the evaluation protocol's TP frames; python/zephyr_tinyml/
 * packbits.py packed it), then, for pixels, quantized in place exactly as the
 * host quantized them. A 16x8 model's int16 inputs are embedded as their
 * little-endian bytes, as an Arm core holds them. False if the data is damaged.
 */
inline bool FillInput(int n, InputType* input)
{
	const uint32_t start = kTestPackedStart[n];
	uint8_t* out = reinterpret_cast<uint8_t*>(input);
	if (!UnpackBits(kTestPacked + start, kTestPackedStart[n + 1] - start, out, kInputBytes)) {
		return false;
	}
#if TINYML_TEST_PIXELS
	QuantizeImage(out, input); /* element by element: in place is safe */
#endif
	return true;
}

/*
 * Test input n's whole output tensor against host TFLM's bytes (and, for a classifier, its
 * label): prints "CORRECT classification! <label>" / "CORRECT output <n>" or the WRONG line.
 * Returns the first differing element, or -1 when the output equals host TFLM's; *correct
 * says whether the input passed.
 */
inline int ReportOutput(int n, const OutputType* got, bool* correct)
{
	const int diff = FirstDifference(got, kTestOutputs[n]);
#if TINYML_CLASSIFIER
	const int expected = kTestLabels[n];
	const int label = ArgMax(got);
	*correct = diff < 0 && label == expected;
	if (*correct) {
		printk("CORRECT classification! %s\n", kCategoryLabels[label]);
	} else if (label != expected) {
		printk("WRONG classification! expected %s got %s\n", kCategoryLabels[expected],
		       kCategoryLabels[label]);
	} else {
		printk("WRONG output: test %d element %d is %d, host TFLM gave %d\n", n, diff, got[diff],
		       kTestOutputs[n][diff]);
	}
#else
	*correct = diff < 0;
	if (*correct) {
		printk("CORRECT output %d (%d bytes equal host TFLM's)\n", n, (int)kOutputBytes);
	} else {
		printk("WRONG output: test %d element %d is %d, host TFLM gave %d\n", n, diff, got[diff],
		       kTestOutputs[n][diff]);
	}
#endif
	return diff;
}

}  // namespace tinyml
