/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * MNIST on TensorFlow Lite Micro: classify the embedded test images with the
 * generated int8 model and print one line per image plus a summary that the
 * twister harness (sample.yaml) and `west tinyml` parse.
 */

#include <zephyr/kernel.h>
#include <zephyr/sys/printk.h>

#include "test_images.h"
#include "tinyml_runtime.h"

namespace {

// Exactly the size the pipeline measured on the host TFLM, plus its margin.
alignas(16) uint8_t tensor_arena[tinyml::kTensorArenaSize];

}  // namespace

int main(void)
{
	using tinyml::Fail;

	tflite::MicroInterpreter* interpreter =
		tinyml::StartInterpreter(tensor_arena, sizeof(tensor_arena));
	if (interpreter == nullptr) {
		return -1;
	}
	TfLiteTensor* input = interpreter->input(0);
	const TfLiteTensor* output = interpreter->output(0);

	const size_t arena_used = interpreter->arena_used_bytes();
	printk("model %s: %u bytes, arena used %u of %u bytes: %s\n", tinyml::kModelName,
	       (unsigned)tinyml::kModelDataSize, (unsigned)arena_used,
	       (unsigned)tinyml::kTensorArenaSize,
	       arena_used <= tinyml::kTensorArenaSize ? "ARENA OK" : "ARENA OVER");

	int correct = 0;
	uint64_t cycles = 0;
	for (int n = 0; n < tinyml::kNumTestImages; n++) {
		tinyml::QuantizeImage(tinyml::kTestImages[n], input->data.int8);

		const uint32_t start = k_cycle_get_32();
		const TfLiteStatus status = interpreter->Invoke();
		cycles += k_cycle_get_32() - start;
		if (status != kTfLiteOk) {
			return Fail("Invoke failed");
		}

		const int expected = tinyml::kTestLabels[n];
		const int got = tinyml::ArgMax(output->data.int8);
		if (got == expected) {
			correct++;
			printk("CORRECT classification! %s\n", tinyml::kCategoryLabels[got]);
		} else {
			printk("WRONG classification! expected %s got %s\n",
			       tinyml::kCategoryLabels[expected], tinyml::kCategoryLabels[got]);
		}
	}

	const uint64_t per_inference = cycles / tinyml::kNumTestImages;
	printk("SUMMARY correct=%d/%d arena_used=%u arena_size=%u cycles_per_inference=%u "
	       "us_per_inference=%u\n",
	       correct, tinyml::kNumTestImages, (unsigned)arena_used,
	       (unsigned)tinyml::kTensorArenaSize, (unsigned)per_inference,
	       (unsigned)k_cyc_to_us_floor64(per_inference));

	if (correct != tinyml::kNumTestImages) {
		return Fail("misclassified test images");
	}
	return 0;
}
