/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Host driver for the device's one PackBits decoder (zephyr/include/tinyml/packbits.h),
 * what the self test's FillInput() and the evaluation app's frame decoder both call:
 * reads lines "<out_size> <hex of the packed bytes>" (the hex may be empty) and prints
 * one line for each, so tests/test_frame_native.py can hold it against
 * python/zephyr_tinyml/packbits.py:
 *   ok <hex of the unpacked bytes>
 *   damaged
 * The output buffer is guarded on both sides: a write outside it fails the run.
 */

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "tinyml/packbits.h"

namespace {

constexpr size_t kGuard = 64;
constexpr uint8_t kGuardByte = 0xA5;

int HexValue(char c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	return -1;
}

}  // namespace

int main()
{
	char line[1 << 16];
	while (std::fgets(line, sizeof(line), stdin) != nullptr) {
		size_t out_size = 0;
		int consumed = 0;
		if (std::sscanf(line, "%zu%n", &out_size, &consumed) != 1) {
			std::fprintf(stderr, "bad input line: %s", line);
			return 2;
		}
		std::vector<uint8_t> in;
		for (const char* p = line + consumed; *p != '\0'; p++) {
			const int high = HexValue(*p);
			if (high < 0) {
				continue;
			}
			const int low = HexValue(*++p);
			if (low < 0) {
				std::fprintf(stderr, "odd hex: %s", line);
				return 2;
			}
			in.push_back((uint8_t)(high << 4 | low));
		}
		std::vector<uint8_t> out(out_size + 2 * kGuard, kGuardByte);
		const bool ok = tinyml::UnpackBits(in.data(), in.size(), out.data() + kGuard, out_size);
		for (size_t i = 0; i < kGuard; i++) {
			if (out[i] != kGuardByte || out[kGuard + out_size + i] != kGuardByte) {
				std::fprintf(stderr, "wrote outside the output buffer: %s", line);
				return 3;
			}
		}
		if (!ok) {
			std::printf("damaged\n");
			continue;
		}
		std::string hex;
		for (size_t i = 0; i < out_size; i++) {
			char digits[3];
			std::snprintf(digits, sizeof(digits), "%02x", out[kGuard + i]);
			hex += digits;
		}
		std::printf("ok %s\n", hex.c_str());
	}
	return 0;
}
