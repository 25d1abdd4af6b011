/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor): the checksum of
 * the evaluation protocol's frames and of the model the device reports (docs/protocol.md).
 * Header-only C, so the eval app and the TF-M secure partition, which links neither the
 * runtime nor the app, compute the model's checksum the same way.
 */
#ifndef TINYML_CRC16_H_
#define TINYML_CRC16_H_

#include <stddef.h>
#include <stdint.h>

static inline uint16_t tinyml_crc16(const uint8_t *data, size_t size, uint16_t crc)
{
	for (size_t i = 0; i < size; i++) {
		crc ^= (uint16_t)((uint16_t)data[i] << 8);
		for (int bit = 0; bit < 8; bit++) {
			crc = (crc & 0x8000U) ? (uint16_t)((crc << 1) ^ 0x1021U) : (uint16_t)(crc << 1);
		}
	}
	return crc;
}

#endif /* TINYML_CRC16_H_ */
