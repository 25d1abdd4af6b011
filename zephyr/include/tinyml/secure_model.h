/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The protocol of the zephyr-tinyml secure partition (zephyr/tfm/tinyml_partition): the
 * model, its weights, TFLM and the tensor arena live in a TF-M Application-RoT partition,
 * and the non-secure world reaches the model only through this one PSA service. Shared by
 * both sides (C and C++), so the two cannot disagree on a message.
 *
 *   TINYML_SECURE_INFER: in_vec[0] = the input tensor's bytes (int8, or int16 for a 16x8
 *                        model; exactly its size), out_vec[0] = room for the output tensor's.
 *   TINYML_SECURE_INFO:  out_vec[0] = struct tinyml_secure_info.
 *
 * Failures are PSA status codes: PSA_ERROR_INVALID_ARGUMENT for a buffer of the wrong
 * size, PSA_ERROR_BAD_STATE when the model could not be started (its arena or ops),
 * PSA_ERROR_GENERIC_ERROR when an inference fails, PSA_ERROR_NOT_SUPPORTED for an
 * unknown call type.
 */
#ifndef TINYML_SECURE_MODEL_H_
#define TINYML_SECURE_MODEL_H_

#include <stdint.h>

/* The service ID: bits 31..12 vendor (0xFFFFF: TF-M's range for tests and examples). */
#define TINYML_SECURE_SID 0xFFFFF7A0U
#define TINYML_SECURE_VERSION 1U

/* psa_call() types. */
#define TINYML_SECURE_INFER 1
#define TINYML_SECURE_INFO 2

/*
 * What the partition tells the non-secure world about the model: sizes, to check against
 * the non-secure app's own model_settings.h, and where the weights and the arena are.
 * The addresses are not secret (they are in the secure image's map file); the bytes
 * behind them are, and the non-secure app proves it by reading them and faulting. The
 * checksum says which model runs without revealing it (16 bits of a 15 KB+ flatbuffer).
 */
struct tinyml_secure_info {
	uint32_t input_size;   /* bytes of the input tensor */
	uint32_t output_size;  /* bytes of the output tensor */
	uint32_t model_size;   /* bytes of the TFLite flatbuffer */
	uint32_t model_address;
	uint32_t arena_size;   /* bytes of the tensor arena */
	uint32_t arena_used;   /* bytes of it TFLM allocated */
	uint32_t arena_address;
	int32_t started;       /* 1: AllocateTensors() succeeded; 0: every INFER gets BAD_STATE */
	uint32_t model_crc16;  /* tinyml/crc16.h of the flatbuffer: the evaluation's host checks
				* that the device runs its .tflite without reading the model */
};

#endif /* TINYML_SECURE_MODEL_H_ */
