/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * CONFIG_TINYML_SELF_TEST: the on-target check of a generated model. Every
 * embedded test input is run and its whole output tensor compared with
 * the bytes host TFLM computed for it: the device must equal host TFLM bit for
 * bit. Classifiers also check the label. The lines printed here are what
 * twister's harness (sample.yaml) and `west tinyml build --run` read.
 */

#include <zephyr/kernel.h>
#include <zephyr/sys/printk.h>

#include "test_data.h"
#include "tinyml/icount.h"
#include "tinyml/runtime.h"
#include "tinyml/test_report.h"

namespace tinyml {

int RunSelfTest()
{
	tflite::MicroInterpreter* interpreter = StartInterpreter();
	if (interpreter == nullptr) {
		return -1;
	}
	/* int8, or int16 for a 16x8 model (model_settings.h's InputType / OutputType; StartInterpreter
	 * checked the tensors' types and sizes against them). */
	InputType* input = static_cast<InputType*>(interpreter->input(0)->data.data);
	const OutputType* output = static_cast<const OutputType*>(interpreter->output(0)->data.data);

	const size_t arena_used = interpreter->arena_used_bytes();
	const size_t arena_needed = ArenaNeeded();
	printk("model %s: %u bytes, arena used %u of %u bytes (AllocateTensors needs %u): %s\n",
	       kModelName, (unsigned)kModelDataSize, (unsigned)arena_used,
	       (unsigned)ArenaSize(), (unsigned)arena_needed,
	       arena_used <= ArenaSize() ? "ARENA OK" : "ARENA OVER");

	int correct = 0;
	uint64_t cycles = 0;
	bool traced = false;
	for (int n = 0; n < kNumTests; n++) {
		if (!FillInput(n, input)) {
			return Fail("embedded test input damaged (test_data.cc)");
		}

		if (StartFresh(interpreter) != kTfLiteOk) {
			return Fail("resetting the model's state failed");
		}
		const uint32_t start = k_cycle_get_32();
		const TfLiteStatus status = interpreter->Invoke();
		cycles += k_cycle_get_32() - start;
		if (status != kTfLiteOk) {
			return Fail("Invoke failed");
		}

		bool passed = false;
		const int diff = ReportOutput(n, output, &passed);
		correct += passed ? 1 : 0;
		/* The first input the device gets wrong, again, op by op (the input tensor was overwritten). */
		if (diff >= 0 && !traced) {
			traced = true;
			if (!FillInput(n, input) || TraceInvoke(interpreter, n) != kTfLiteOk) {
				return Fail("Invoke failed while tracing ops");
			}
		}
	}

#if defined(CONFIG_TINYML_OP_PROFILE)
	/* After the measured inferences: where the cycles go, op by op (test input 0 again). */
	if (!FillInput(0, input) || ProfileInvoke(interpreter) != kTfLiteOk) {
		return Fail("Invoke failed while profiling ops");
	}
#endif

#if defined(CONFIG_INIT_STACKS) && defined(CONFIG_THREAD_STACK_INFO)
	/* How much of CONFIG_MAIN_STACK_SIZE inference needed (the stack was painted at boot). */
	size_t unused = 0;
	if (k_thread_stack_space_get(k_current_get(), &unused) == 0) {
		printk("main stack: %u of %u bytes used\n",
		       (unsigned)(k_current_get()->stack_info.size - unused),
		       (unsigned)k_current_get()->stack_info.size);
	}
#endif

	const uint64_t per_inference = cycles / kNumTests;
#if defined(TINYML_ICOUNT_CALIBRATION)
	const uint32_t calibration_cycles = CalibrationCycles();  /* before the line: printed whole */
#endif
	printk("SUMMARY correct=%d/%d arena_used=%u arena_size=%u cycles_per_inference=%u "
	       "us_per_inference=%u kernels=%s arena_needed=%u",
	       correct, kNumTests, (unsigned)arena_used, (unsigned)ArenaSize(),
	       (unsigned)per_inference, (unsigned)k_cyc_to_us_floor64(per_inference), kKernelsName,
	       (unsigned)arena_needed);
#if defined(TINYML_ICOUNT_CALIBRATION)
	printk(" calibration_cycles=%u calibration_instructions=%u", (unsigned)calibration_cycles,
	       (unsigned)kCalibrationInstructions);
#endif
	printk("\n");

	if (correct != kNumTests) {
		return Fail("test inputs differ from host TFLM");
	}
	return 0;
}

}  // namespace tinyml
