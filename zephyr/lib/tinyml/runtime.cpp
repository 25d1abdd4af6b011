/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The zephyr-tinyml runtime: see include/tinyml/runtime.h.
 */

#include "tinyml/runtime.h"

#include <type_traits>

#include <zephyr/fatal.h>
#include <zephyr/kernel.h>
#include <zephyr/sys/printk.h>

#include "tensorflow/lite/schema/schema_generated.h"

#include "model_data.h"
#include "op_resolver.h"
#include "op_trace.h"

namespace tinyml {
namespace {

/* The interpreter's op registrations (the self test's op trace wraps them) and model. */
OpResolver resolver;
const tflite::Model* model = nullptr;

/*
 * The size model_arena.h chose for this kernel build (measured on a device, or host TFLM's figure),
 * plus TINYML_ARENA_EXTRA bytes when a build asks for them: `west tinyml build --run` does, once,
 * when AllocateTensors() failed in the generated size (another TFLM or CMSIS-NN revision can ask
 * for more scratch), so that the probe below can measure what this build needs.
 */
#if !defined(TINYML_ARENA_EXTRA)
#define TINYML_ARENA_EXTRA 0
#endif
constexpr size_t kArenaSize = kTensorArenaSize + TINYML_ARENA_EXTRA;
alignas(16) uint8_t tensor_arena[kArenaSize];

size_t arena_needed = 0;
bool has_state = false; /* the main subgraph has variable tensors (StartFresh resets them) */

/* The TFLite type of model_settings.h's InputType / OutputType: int8, or int16 for a 16x8 model. */
template <typename T>
constexpr TfLiteType TensorType()
{
	static_assert(std::is_same_v<T, int8_t> || std::is_same_v<T, int16_t>,
		      "the runtime feeds int8 or int16 tensors");
	return std::is_same_v<T, int16_t> ? kTfLiteInt16 : kTfLiteInt8;
}

bool HasVariableTensors(const tflite::Model* model)
{
	const auto* subgraphs = model->subgraphs();
	if (subgraphs == nullptr || subgraphs->size() == 0 || subgraphs->Get(0)->tensors() == nullptr) {
		return false;
	}
	for (const auto* tensor : *subgraphs->Get(0)->tensors()) {
		if (tensor->is_variable()) {
			return true;
		}
	}
	return false;
}

#if defined(CONFIG_TINYML_ARENA_PROBE)
constexpr size_t kArenaStep = 16; /* model_arena.h's sizes are multiples of 16 */

/* Whether AllocateTensors() succeeds in the first `size` bytes of the arena. */
bool AllocatesIn(const tflite::Model* model, const OpResolver& resolver, size_t size,
		 size_t* used)
{
	tflite::MicroInterpreter probe(model, resolver, tensor_arena, size);
	if (probe.AllocateTensors() != kTfLiteOk) {
		return false;
	}
	if (used != nullptr) {
		*used = probe.arena_used_bytes();
	}
	return true;
}

/*
 * The smallest multiple of 16 bytes in which AllocateTensors() succeeds, 0 when even the whole
 * arena is too small (the app's own interpreter then reports the failure). Runs before the app's
 * interpreter exists, since every probe overwrites the arena. The lower end is arena_used_bytes():
 * the sizes TFLM allocates do not depend on the arena's size, so less can never work.
 */
size_t ProbeArenaNeeded(const tflite::Model* model, const OpResolver& resolver)
{
	size_t used = 0;
	if (!AllocatesIn(model, resolver, kArenaSize, &used) || used == 0) {
		return 0;
	}
	size_t fails = (used - 1) / kArenaStep * kArenaStep; /* below what it used: cannot work */
	size_t works = kArenaSize;
	while (works - fails > kArenaStep) {
		const size_t middle = fails + (works - fails) / (2 * kArenaStep) * kArenaStep;
		if (AllocatesIn(model, resolver, middle, nullptr)) {
			works = middle;
		} else {
			fails = middle;
		}
	}
	return works;
}
#endif

}  // namespace

int Fail(const char* what)
{
	printk("ERROR: %s\nPROJECT EXECUTION FAILED\n", what);
	return -1;
}

uint8_t* Arena()
{
	return tensor_arena;
}

size_t ArenaSize()
{
	return kArenaSize;
}

size_t ArenaNeeded()
{
	return arena_needed;
}

tflite::MicroInterpreter* StartInterpreter()
{
	model = tflite::GetModel(TINYML_MODEL_DATA);
	if (model->version() != TFLITE_SCHEMA_VERSION) {
		printk("model schema %u, TFLM supports %d\n", (unsigned)model->version(),
		       TFLITE_SCHEMA_VERSION);
		Fail("model schema version mismatch");
		return nullptr;
	}

	if (RegisterOps(resolver) != kTfLiteOk) {
		Fail("op registration failed (kNumOps too small?)");
		return nullptr;
	}
#if defined(TINYML_TEST_CORRUPT_TENSOR)
	WrapOps(resolver, model); /* tests only: the wrapper corrupts a tensor in every inference */
#endif

#if defined(CONFIG_TINYML_ARENA_PROBE)
	arena_needed = ProbeArenaNeeded(model, resolver);
#endif

	has_state = HasVariableTensors(model);
	static tflite::MicroInterpreter interpreter(model, resolver, tensor_arena, kArenaSize);
	if (interpreter.AllocateTensors() != kTfLiteOk) {
		/* TFLM has already logged the cause: a missing op or a short arena. The host reads the size. */
		printk("arena_size=%u\n", (unsigned)kArenaSize);
		Fail("AllocateTensors failed (missing op or arena too small; "
		     "CONFIG_TINYML_TFLM_ERROR_STRINGS=y shows TFLM's reason)");
		return nullptr;
	}

	const TfLiteTensor* input = interpreter.input(0);
	const TfLiteTensor* output = interpreter.output(0);
	if (interpreter.inputs_size() != 1 || interpreter.outputs_size() != 1 ||
	    input->type != TensorType<InputType>() || input->bytes != kInputBytes ||
	    output->type != TensorType<OutputType>() || output->bytes != kOutputBytes) {
		Fail("model tensors do not match model_settings.h");
		return nullptr;
	}
	return &interpreter;
}

TfLiteStatus StartFresh(tflite::MicroInterpreter* interpreter)
{
	return has_state ? interpreter->Reset() : kTfLiteOk;
}

TfLiteStatus TraceInvoke(tflite::MicroInterpreter* interpreter, int test)
{
	/* Wrapped only now: inferences before the first trace run without the wrappers' cost. */
	WrapOps(resolver, model);
	const TfLiteTensor* input = interpreter->input(0);
	printk("OPTRACE begin test=%d\n", test);
	PrintHex("input", reinterpret_cast<const uint8_t*>(input->data.raw), input->bytes);
	if (StartFresh(interpreter) != kTfLiteOk) {
		return kTfLiteError;
	}
	SetOpTrace(true);
	const TfLiteStatus status = interpreter->Invoke();
	SetOpTrace(false);
	printk("OPTRACE end\n");
	return status;
}

TfLiteStatus ProfileInvoke(tflite::MicroInterpreter* interpreter)
{
	WrapOps(resolver, model);
	if (StartFresh(interpreter) != kTfLiteOk) {
		return kTfLiteError;
	}
	SetOpProfile(true);
	const TfLiteStatus status = interpreter->Invoke();
	SetOpProfile(false);
	return status;
}

}  // namespace tinyml

/*
 * A CPU fault (an instruction the core lacks, a bad access) in a model's kernels would otherwise halt
 * silently, since the apps build without logging, and a QEMU run or twister would wait for its
 * timeout. Print the cause, the faulting address and twister's failure line, then halt as Zephyr's
 * default handler does. (This overrides Zephyr's weak k_sys_fatal_error_handler; an app that needs
 * its own can set CONFIG_TINYML_FATAL_HANDLER=n.)
 */
#if defined(CONFIG_TINYML_FATAL_HANDLER)
extern "C" void k_sys_fatal_error_handler(unsigned int reason, const z_arch_esf_t* esf)
{
#if defined(CONFIG_ARM)
	const unsigned pc = esf != nullptr ? (unsigned)esf->basic.pc : 0U;
#else
	ARG_UNUSED(esf);
	const unsigned pc = 0U;
#endif
	printk("ZEPHYR FATAL ERROR %u (K_ERR_* reason) at pc 0x%08x: a CPU fault in the code above\n"
	       "PROJECT EXECUTION FAILED\n", reason, pc);
	k_fatal_halt(reason);
}
#endif
