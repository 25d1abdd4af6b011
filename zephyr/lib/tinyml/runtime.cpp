/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The zephyr-tinyml runtime: see include/tinyml/runtime.h.
 */

#include "tinyml/runtime.h"

#include <zephyr/sys/printk.h>

#include "tensorflow/lite/schema/schema_generated.h"

#include "model_data.h"
#include "op_resolver.h"

namespace tinyml {
namespace {

/* Exactly the size the pipeline measured on host TFLM, plus its stated margin. */
alignas(16) uint8_t tensor_arena[kTensorArenaSize];

}  // namespace

int Fail(const char* what)
{
	printk("ERROR: %s\nPROJECT EXECUTION FAILED\n", what);
	return -1;
}

int ArgMax(const int8_t* scores, int count)
{
	int best = 0;
	for (int i = 1; i < count; i++) {
		if (scores[i] > scores[best]) {
			best = i;
		}
	}
	return best;
}

uint8_t* Arena()
{
	return tensor_arena;
}

tflite::MicroInterpreter* StartInterpreter()
{
	const tflite::Model* model = tflite::GetModel(TINYML_MODEL_DATA);
	if (model->version() != TFLITE_SCHEMA_VERSION) {
		printk("model schema %u, TFLM supports %d\n", (unsigned)model->version(),
		       TFLITE_SCHEMA_VERSION);
		Fail("model schema version mismatch");
		return nullptr;
	}

	static OpResolver resolver;
	if (RegisterOps(resolver) != kTfLiteOk) {
		Fail("op registration failed (kNumOps too small?)");
		return nullptr;
	}

	static tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, kTensorArenaSize);
	if (interpreter.AllocateTensors() != kTfLiteOk) {
		/* TFLM has already logged the cause: a missing op or a short arena. */
		Fail("AllocateTensors failed (missing op or arena too small; "
		     "CONFIG_TINYML_TFLM_ERROR_STRINGS=y shows TFLM's reason)");
		return nullptr;
	}

	const TfLiteTensor* input = interpreter.input(0);
	const TfLiteTensor* output = interpreter.output(0);
	if (interpreter.inputs_size() != 1 || interpreter.outputs_size() != 1 ||
	    input->type != kTfLiteInt8 || input->bytes != (size_t)kInputSize ||
	    output->type != kTfLiteInt8 || output->bytes != (size_t)kOutputSize) {
		Fail("model tensors do not match model_settings.h");
		return nullptr;
	}
	return &interpreter;
}

}  // namespace tinyml
