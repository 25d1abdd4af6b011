/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The non-secure side of a secure model: every embedded test input goes through the
 * zephyr-tinyml partition's PSA service (tinyml/secure_model.h) and its whole output must
 * equal host TFLM's bytes, as in every other app's self test (same lines, same SUMMARY, so
 * twister and `west tinyml build --run` read it alike). Then it proves the protection:
 * a wrong-size input is refused, and reading the model's bytes at their secure address
 * from here faults (TF-M prints "FATAL ERROR: SecureFault" and resets the system), the last
 * thing this app does.
 */
#include <cstdint>

#include <zephyr/kernel.h>
#include <zephyr/sys/printk.h>

#include "psa/client.h"

#include "test_data.h"
#include "tinyml/icount.h"
#include "tinyml/secure_model.h"
#include "tinyml/test_report.h"

namespace {

int Fail(const char* what)
{
	printk("secure_model: %s\n", what);
	printk("PROJECT EXECUTION FAILED\n");
	return -1;
}

psa_status_t Infer(psa_handle_t handle, const void* input, size_t input_size, void* output,
		   size_t output_size)
{
	psa_invec in = {input, input_size};
	psa_outvec out = {output, output_size};
	return psa_call(handle, TINYML_SECURE_INFER, &in, 1, &out, 1);
}

tinyml::InputType input[tinyml::kInputSize];
tinyml::OutputType output[tinyml::kOutputSize];

int Run()
{
	const psa_handle_t handle = psa_connect(TINYML_SECURE_SID, TINYML_SECURE_VERSION);
	if (handle <= 0) {
		return Fail("the zephyr-tinyml partition's service is not there (psa_connect failed)");
	}
	tinyml_secure_info info = {};
	psa_outvec info_out = {&info, sizeof(info)};
	if (psa_call(handle, TINYML_SECURE_INFO, nullptr, 0, &info_out, 1) != PSA_SUCCESS) {
		return Fail("the partition's INFO call failed");
	}
	if (info.input_size != (uint32_t)tinyml::kInputBytes ||
	    info.output_size != (uint32_t)tinyml::kOutputBytes) {
		return Fail("the partition's model is not this app's (input/output sizes differ)");
	}
	if (!info.started) {
		return Fail("the partition could not start the model (AllocateTensors failed)");
	}
	printk("model %s in the secure partition: %u bytes at 0x%08x, arena used %u of %u bytes at "
	       "0x%08x\n", tinyml::kModelName, (unsigned)info.model_size,
	       (unsigned)info.model_address, (unsigned)info.arena_used,
	       (unsigned)info.arena_size, (unsigned)info.arena_address);

	int correct = 0;
	uint64_t cycles = 0;
	for (int n = 0; n < tinyml::kNumTests; n++) {
		if (!tinyml::FillInput(n, input)) {
			return Fail("embedded test input damaged (test_data.cc)");
		}
		const uint32_t start = k_cycle_get_32();
		const psa_status_t status = Infer(handle, input, sizeof(input), output, sizeof(output));
		cycles += k_cycle_get_32() - start;
		if (status != PSA_SUCCESS) {
			printk("secure_model: INFER returned %d\n", (int)status);
			return Fail("an inference in the secure partition failed");
		}
		bool passed = false;
		tinyml::ReportOutput(n, output, &passed);
		correct += passed ? 1 : 0;
	}

	/* The service checks what it is given: one byte short is refused, nothing is run. */
	const psa_status_t refused = Infer(handle, input, sizeof(input) - 1, output, sizeof(output));
	printk("secure_model: an input of %u bytes for %u is %s (status %d)\n",
	       (unsigned)(sizeof(input) - 1), (unsigned)sizeof(input),
	       refused == PSA_ERROR_INVALID_ARGUMENT ? "REFUSED" : "NOT REFUSED", (int)refused);
	psa_close(handle);

	const uint64_t per_inference = cycles / tinyml::kNumTests;
#if defined(TINYML_ICOUNT_CALIBRATION)
	const uint32_t calibration_cycles = tinyml::CalibrationCycles();
#endif
	printk("SUMMARY correct=%d/%d arena_used=%u arena_size=%u cycles_per_inference=%u "
	       "us_per_inference=%u kernels=secure-partition arena_needed=0",
	       correct, tinyml::kNumTests, (unsigned)info.arena_used, (unsigned)info.arena_size,
	       (unsigned)per_inference, (unsigned)k_cyc_to_us_floor64(per_inference));
#if defined(TINYML_ICOUNT_CALIBRATION)
	printk(" calibration_cycles=%u calibration_instructions=%u", (unsigned)calibration_cycles,
	       (unsigned)tinyml::kCalibrationInstructions);
#endif
	printk("\n");
	if (correct != tinyml::kNumTests) {
		return Fail("test inputs differ from host TFLM");
	}
	if (refused != PSA_ERROR_INVALID_ARGUMENT) {
		return Fail("the partition ran a wrong-size input");
	}

	/* Last: the model's first word, read from the non-secure world. TF-M resets the system. */
	printk("secure_model: reading the model at 0x%08x from the non-secure world (must fault)\n",
	       (unsigned)info.model_address);
	const volatile uint32_t* model = reinterpret_cast<const volatile uint32_t*>(info.model_address);
	const uint32_t leaked = *model;
	printk("secure_model: read 0x%08x: THE MODEL IS NOT PROTECTED\n", (unsigned)leaked);
	return Fail("the non-secure world read the model's bytes");
}

}  // namespace

int main(void)
{
	Run();
	return 0;
}
