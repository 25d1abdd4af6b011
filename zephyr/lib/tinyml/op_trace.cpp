/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The self test's op trace: see op_trace.h and tinyml::TraceInvoke().
 *
 * TFLM of Zephyr 3.4 has no per-op hook that survives TF_LITE_STRIP_ERROR_STRINGS
 * (its profiler events are compiled out with the error strings), so the
 * registrations' invoke functions are wrapped: one wrapper per op type, each
 * calling the op's own invoke and then printing the node's output tensors.
 * The node gives its output tensor indices; the host maps them to ops.
 * The same wrappers time each op when profiling (tinyml::ProfileInvoke()).
 */

#include "op_trace.h"

#include <type_traits>

#include <zephyr/kernel.h>
#include <zephyr/sys/printk.h>

#include "tensorflow/lite/micro/memory_helpers.h"
#include "tensorflow/lite/schema/schema_utils.h"

namespace tinyml {
namespace {

/* TFLMRegistration in Zephyr's TFLM, TfLiteRegistration in older ones: whatever FindOp returns. */
using Registration = std::remove_const_t<
	std::remove_pointer_t<decltype(std::declval<OpResolver&>().FindOp(tflite::BuiltinOperator_ADD))>>;
using InvokeFunction = TfLiteStatus (*)(TfLiteContext*, TfLiteNode*);

InvokeFunction original_invoke[kNumOps];
const Registration* wrapped[kNumOps];
int wrapped_count = 0;
bool tracing = false;

/* Profiling: each op call prints its cycles, numbered in call order (node order for one subgraph). */
bool profiling = false;
int profile_count = 0;

void AfterOp(TfLiteContext* context, const TfLiteNode* node)
{
#if !defined(TINYML_TEST_CORRUPT_TENSOR)
	if (!tracing) {
		return;
	}
#endif
	for (int i = 0; i < node->outputs->size; i++) {
		const int index = node->outputs->data[i];
		TfLiteEvalTensor* tensor = index >= 0 ? context->GetEvalTensor(context, index) : nullptr;
		size_t bytes = 0;
		if (tensor == nullptr || tensor->data.raw == nullptr ||
		    tflite::TfLiteEvalTensorByteLength(tensor, &bytes) != kTfLiteOk) {
			continue;
		}
#if defined(TINYML_TEST_CORRUPT_TENSOR)
		/* Tests only (zephyr/CMakeLists.txt): a kernel that is not bit-exact, on purpose. */
		if (index == TINYML_TEST_CORRUPT_TENSOR) {
			for (size_t b = 0; b < bytes; b++) {
				tensor->data.raw[b] = static_cast<char>(tensor->data.raw[b] + 1);
			}
		}
		if (!tracing) {
			continue;
		}
#endif
		char what[16];
		snprintk(what, sizeof(what), "t%d", index);
		PrintHex(what, reinterpret_cast<const uint8_t*>(tensor->data.raw), bytes);
	}
}

template <int N>
TfLiteStatus TracedInvoke(TfLiteContext* context, TfLiteNode* node)
{
	const uint32_t start = profiling ? k_cycle_get_32() : 0;
	const TfLiteStatus status = original_invoke[N](context, node);
	if (profiling) {
		/* Printed between ops, outside what is timed: no RAM for a table of them. */
		const uint32_t cycles = k_cycle_get_32() - start;
		printk("OPPROFILE op=%d cycles=%u\n", profile_count++, (unsigned)cycles);
	}
	if (status == kTfLiteOk) {
		AfterOp(context, node);
	}
	return status;
}

template <int... N>
constexpr InvokeFunction kWrappers[] = {TracedInvoke<N>...};

template <int... N>
constexpr const InvokeFunction* Wrappers(std::integer_sequence<int, N...>)
{
	return kWrappers<N...>;
}

}  // namespace

void WrapOps(OpResolver& resolver, const tflite::Model* model)
{
	const InvokeFunction* wrappers = Wrappers(std::make_integer_sequence<int, kNumOps>());
	const auto* codes = model->operator_codes();
	for (unsigned c = 0; codes != nullptr && c < codes->size(); c++) {
		const tflite::OperatorCode* code = codes->Get(c);
		const tflite::BuiltinOperator builtin = tflite::GetBuiltinCode(code);
		const Registration* found =
			builtin == tflite::BuiltinOperator_CUSTOM
				? (code->custom_code() != nullptr ? resolver.FindOp(code->custom_code()->c_str())
								  : nullptr)
				: resolver.FindOp(builtin);
		bool done = found == nullptr || found->invoke == nullptr; /* missing: AllocateTensors says so */
		for (int w = 0; w < wrapped_count && !done; w++) {
			done = wrapped[w] == found;
		}
		if (done || wrapped_count == kNumOps) {
			continue;
		}
		/* The resolver is the runtime's own (non-const) object: writing through FindOp's pointer is defined. */
		Registration* registration = const_cast<Registration*>(found);
		original_invoke[wrapped_count] = registration->invoke;
		registration->invoke = wrappers[wrapped_count];
		wrapped[wrapped_count++] = found;
	}
}

void SetOpTrace(bool on)
{
	tracing = on;
}

void SetOpProfile(bool on)
{
	profiling = on;
	profile_count = 0;
}

void PrintHex(const char* what, const uint8_t* data, size_t size)
{
	static const char digits[] = "0123456789abcdef";
	constexpr size_t kPerLine = 32;
	char line[2 * kPerLine + 1];
	for (size_t offset = 0; offset < size; offset += kPerLine) {
		const size_t count = size - offset < kPerLine ? size - offset : kPerLine;
		for (size_t i = 0; i < count; i++) {
			line[2 * i] = digits[data[offset + i] >> 4];
			line[2 * i + 1] = digits[data[offset + i] & 0xf];
		}
		line[2 * count] = '\0';
		printk("OPTRACE %s %s\n", what, line);
	}
}

}  // namespace tinyml
