/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Host driver for the device's frame decoder (samples/mnist_eval/src/frame.cpp):
 * feeds stdin to a LineAssembler sized as in the firmware, one character at a
 * time, and prints one line per finished frame so tests/test_frame_native.py can
 * hold it against python/zephyr_tinyml/device/protocol.py without Zephyr or QEMU:
 *   request <seq> <hex of the unpacked payload>   ("trace" for a trace request)
 *   error <seq> <code> <bytes decoded>
 */

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "frame.h"

int main(int argc, char** argv)
{
	const size_t input_size = argc > 1 ? (size_t)std::atoi(argv[1]) : 784; /* bytes */
	std::vector<uint8_t> buffer(evalproto::kHeaderSize + evalproto::PackedBound(input_size) +
				    evalproto::kCrcSize);
	std::vector<uint8_t> image(input_size); /* bytes: an int16 model's input takes two per value */
	std::vector<char> hex(2 * input_size + 1);
	evalproto::LineAssembler assembler(buffer.data(), buffer.size(), (uint16_t)input_size);

	int c;
	while ((c = std::getchar()) != EOF) {
		evalproto::Request request;
		evalproto::Error error;
		uint16_t seq;
		switch (assembler.Feed((char)c, &request, &error, &seq)) {
		case evalproto::LineAssembler::Status::kPending:
			break;
		case evalproto::LineAssembler::Status::kError:
			std::printf("error %u %u %zu\n", (unsigned)seq, (unsigned)error, assembler.LastSize());
			break;
		case evalproto::LineAssembler::Status::kRequest: {
			size_t size = request.length;
			const uint8_t* bytes = request.payload;
			if (request.packed) {
				if (!evalproto::Unpack(request.payload, request.length, image.data(), input_size)) {
					std::printf("error %u %u %u\n", (unsigned)request.seq,
						    (unsigned)evalproto::Error::kBadSize, (unsigned)request.length);
					break;
				}
				size = input_size;
				bytes = image.data();
			}
			const size_t n = evalproto::ToHex(bytes, size, hex.data());
			hex[n] = '\0';
			std::printf("%s %u %s\n", request.trace ? "trace" : "request", (unsigned)request.seq,
				    hex.data());
			break;
		}
		}
	}
	return 0;
}
