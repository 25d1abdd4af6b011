/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The start-up every zephyr-tinyml app shares: the generated model, its
 * generated op resolver and its measured arena, checked against
 * model_settings.h before the first inference. Each failure prints its cause
 * and twister's failure line, so a broken build fails at once, not by timeout.
 */

#pragma once

#include <cstddef>
#include <cstdint>

#include <zephyr/sys/printk.h>

#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

#include "model_data.h"
#include "model_settings.h"
#include "op_resolver.h"

namespace tinyml {

/* ztest's convention: twister's console harness stops with a failure on this line. */
inline int Fail(const char* what)
{
	printk("ERROR: %s\nPROJECT EXECUTION FAILED\n", what);
	return -1;
}

/* Index of the largest int8 score (the first one on ties, like numpy's argmax). */
inline int ArgMax(const int8_t* scores)
{
	int best = 0;
	for (int i = 1; i < kNumClasses; i++) {
		if (scores[i] > scores[best]) {
			best = i;
		}
	}
	return best;
}

/*
 * The one interpreter of the app, tensors allocated in `arena`; nullptr (after
 * printing why) if the model, its ops, the arena or its tensors do not match
 * what the pipeline generated.
 */
inline tflite::MicroInterpreter* StartInterpreter(uint8_t* arena, size_t arena_size)
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

	static tflite::MicroInterpreter interpreter(model, resolver, arena, arena_size);
	if (interpreter.AllocateTensors() != kTfLiteOk) {
		/* TFLM has already logged the cause: a missing op or a short arena. */
		Fail("AllocateTensors failed (missing op or arena too small)");
		return nullptr;
	}

	const TfLiteTensor* input = interpreter.input(0);
	const TfLiteTensor* output = interpreter.output(0);
	if (input->type != kTfLiteInt8 || input->bytes != (size_t)kInputSize ||
	    output->type != kTfLiteInt8 || output->bytes != (size_t)kNumClasses) {
		Fail("model tensors do not match model_settings.h");
		return nullptr;
	}
	return &interpreter;
}

}  // namespace tinyml
