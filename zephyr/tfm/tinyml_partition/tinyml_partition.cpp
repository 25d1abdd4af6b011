/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The generated model as a TF-M secure service (tinyml/secure_model.h): the flatbuffer,
 * TFLM, the kernels and the tensor arena are linked into this Application-RoT partition
 * only, so the non-secure world can run the model but not read it.
 *
 * TF-M runs no C++ static constructors in a partition, so nothing here has one: the op
 * resolver and the interpreter are built with placement new in static storage when the
 * partition starts.
 */
#include <cstddef>
#include <cstdint>
#include <new>

#include "psa/service.h"
#include "psa_manifest/tinyml_partition.h"

#include "tensorflow/lite/micro/micro_interpreter.h"

#include "model_settings.h"
#include "op_resolver.h"
#include "tinyml/crc16.h"
#include "tinyml/secure_model.h"

namespace {

alignas(16) uint8_t arena[tinyml::kTensorArenaSize];
alignas(tinyml::OpResolver) uint8_t resolver_storage[sizeof(tinyml::OpResolver)];
alignas(tflite::MicroInterpreter) uint8_t interpreter_storage[sizeof(tflite::MicroInterpreter)];
tflite::MicroInterpreter* interpreter = nullptr;

/* Whether any tensor is a variable (an LSTM's state): then every inference starts from the
 * model's initial state, as the non-secure runtime and host TFLM do. */
bool has_variables = false;

/* The model's checksum, computed once at start (INFO reports it). */
uint16_t model_crc16 = 0;

/* The interpreter on the generated model in the arena, or nullptr when the model's ops or
 * its tensors do not fit what was generated. */
tflite::MicroInterpreter* Start()
{
	const tflite::Model* model = tflite::GetModel(TINYML_MODEL_DATA);
	auto* resolver = new (resolver_storage) tinyml::OpResolver();
	if (tinyml::RegisterOps(*resolver) != kTfLiteOk) {
		return nullptr;
	}
	auto* started = new (interpreter_storage)
		tflite::MicroInterpreter(model, *resolver, arena, sizeof(arena));
	if (started->AllocateTensors() != kTfLiteOk) {
		return nullptr;
	}
	if (started->input(0)->bytes != tinyml::kInputBytes ||
	    started->output(0)->bytes != tinyml::kOutputBytes) {
		return nullptr;
	}
	const auto* tensors = model->subgraphs()->Get(0)->tensors();
	for (unsigned i = 0; i < tensors->size(); i++) {
		has_variables = has_variables || tensors->Get(i)->is_variable();
	}
	return started;
}

psa_status_t Infer(const psa_msg_t& msg)
{
	if (msg.in_size[0] != tinyml::kInputBytes || msg.out_size[0] != tinyml::kOutputBytes) {
		return PSA_ERROR_INVALID_ARGUMENT;
	}
	if (interpreter == nullptr) {
		return PSA_ERROR_BAD_STATE;
	}
	TfLiteTensor* input = interpreter->input(0);
	if (psa_read(msg.handle, 0, input->data.data, msg.in_size[0]) != msg.in_size[0]) {
		return PSA_ERROR_INVALID_ARGUMENT;
	}
	if (has_variables && interpreter->Reset() != kTfLiteOk) {
		return PSA_ERROR_GENERIC_ERROR;
	}
	if (interpreter->Invoke() != kTfLiteOk) {
		return PSA_ERROR_GENERIC_ERROR;
	}
	psa_write(msg.handle, 0, interpreter->output(0)->data.data, msg.out_size[0]);
	return PSA_SUCCESS;
}

psa_status_t Info(const psa_msg_t& msg)
{
	if (msg.out_size[0] != sizeof(tinyml_secure_info)) {
		return PSA_ERROR_INVALID_ARGUMENT;
	}
	tinyml_secure_info info = {};
	info.input_size = tinyml::kInputBytes;
	info.output_size = tinyml::kOutputBytes;
	info.model_size = tinyml::kModelDataSize;
	info.model_address = reinterpret_cast<uintptr_t>(TINYML_MODEL_DATA);
	info.arena_size = sizeof(arena);
	info.arena_used = interpreter != nullptr ? interpreter->arena_used_bytes() : 0;
	info.arena_address = reinterpret_cast<uintptr_t>(arena);
	info.started = interpreter != nullptr ? 1 : 0;
	info.model_crc16 = model_crc16;
	psa_write(msg.handle, 0, &info, sizeof(info));
	return PSA_SUCCESS;
}

void Handle(psa_signal_t signal)
{
	psa_msg_t msg;
	if (psa_get(signal, &msg) != PSA_SUCCESS) {
		return;
	}
	psa_status_t status = PSA_SUCCESS;
	switch (msg.type) {
	case PSA_IPC_CONNECT:
	case PSA_IPC_DISCONNECT:
		break;
	case TINYML_SECURE_INFER:
		status = Infer(msg);
		break;
	case TINYML_SECURE_INFO:
		status = Info(msg);
		break;
	default:
		status = PSA_ERROR_NOT_SUPPORTED;
		break;
	}
	psa_reply(msg.handle, status);
}

}  // namespace

/* The partition's entry point (tinyml_partition.yaml): start the model once, then serve. */
extern "C" void tinyml_partition_main(void)
{
	model_crc16 = tinyml_crc16(TINYML_MODEL_DATA, tinyml::kModelDataSize, 0xFFFF);
	interpreter = Start();
	for (;;) {
		const psa_signal_t signals = psa_wait(PSA_WAIT_ANY, PSA_BLOCK);
		if (signals & TINYML_MODEL_SIGNAL) {
			Handle(TINYML_MODEL_SIGNAL);
		}
	}
}

/*
 * TF-M links partitions without the C++ runtime and with no heap. TFLM's classes have
 * virtual destructors, whose deleting variants name operator delete although nothing here
 * is ever deleted (TFLM's TF_LITE_REMOVE_VIRTUAL_DELETE stands for the same), and an
 * abstract class's vtable names __cxa_pure_virtual. TFLM's checks call abort(), whose C
 * library version raises a signal through malloc and sbrk, which a partition has not: here it
 * is TF-M's panic, as any other failed check in the secure world.
 */
void operator delete(void*) noexcept {}
void operator delete(void*, size_t) noexcept {}
extern "C" void __cxa_pure_virtual(void)
{
	psa_panic();
}
extern "C" void abort(void)
{
	psa_panic();
}
