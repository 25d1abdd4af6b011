/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * MNIST on TensorFlow Lite Micro: classify the embedded test images with the
 * generated int8 model and print one line per image plus a summary that the
 * twister harness (sample.yaml) and `west tinyml` parse.
 */

#include <cstring>

#include <zephyr/kernel.h>
#include <zephyr/sys/printk.h>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

#include "model_data.h"
#include "model_settings.h"
#include "op_resolver.h"
#include "test_images.h"

namespace {

// Exactly the size the pipeline measured on the host TFLM, plus its margin.
alignas(16) uint8_t tensor_arena[tinyml::kTensorArenaSize];

// twister's console harness stops with a failure on this line (ztest's
// convention), so a broken build fails at once instead of timing out.
int Fail(const char* what)
{
	printk("ERROR: %s\nPROJECT EXECUTION FAILED\n", what);
	return -1;
}

int ArgMax(const TfLiteTensor* output)
{
	int best = 0;
	for (int i = 1; i < tinyml::kNumClasses; i++) {
		if (output->data.int8[i] > output->data.int8[best]) {
			best = i;
		}
	}
	return best;
}

}  // namespace

int main(void)
{
	const tflite::Model* model = tflite::GetModel(TINYML_MODEL_DATA);
	if (model->version() != TFLITE_SCHEMA_VERSION) {
		printk("model schema %u, TFLM supports %d\n", (unsigned)model->version(),
		       TFLITE_SCHEMA_VERSION);
		return Fail("model schema version mismatch");
	}

	static tinyml::OpResolver resolver;
	if (tinyml::RegisterOps(resolver) != kTfLiteOk) {
		return Fail("op registration failed (kNumOps too small?)");
	}

	static tflite::MicroInterpreter interpreter(model, resolver, tensor_arena,
						    sizeof(tensor_arena));
	if (interpreter.AllocateTensors() != kTfLiteOk) {
		/* TFLM has already logged the cause: a missing op or a short arena. */
		return Fail("AllocateTensors failed (missing op or arena too small)");
	}

	TfLiteTensor* input = interpreter.input(0);
	const TfLiteTensor* output = interpreter.output(0);
	if (input->type != kTfLiteInt8 || input->bytes != (size_t)tinyml::kInputSize ||
	    output->type != kTfLiteInt8 || output->bytes != (size_t)tinyml::kNumClasses) {
		return Fail("model tensors do not match model_settings.h");
	}

	const size_t arena_used = interpreter.arena_used_bytes();
	printk("model %s: %u bytes, arena used %u of %u bytes: %s\n", tinyml::kModelName,
	       (unsigned)tinyml::kModelDataSize, (unsigned)arena_used,
	       (unsigned)tinyml::kTensorArenaSize,
	       arena_used <= tinyml::kTensorArenaSize ? "ARENA OK" : "ARENA OVER");

	int correct = 0;
	uint64_t cycles = 0;
	for (int n = 0; n < tinyml::kNumTestImages; n++) {
		memcpy(input->data.int8, tinyml::kTestImages[n], tinyml::kInputSize);

		const uint32_t start = k_cycle_get_32();
		const TfLiteStatus status = interpreter.Invoke();
		cycles += k_cycle_get_32() - start;
		if (status != kTfLiteOk) {
			return Fail("Invoke failed");
		}

		const int expected = tinyml::kTestLabels[n];
		const int got = ArgMax(output);
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
