/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * PackBits (as in TIFF), the one run-length codec of zephyr-tinyml: a header
 * byte h < 128 is followed by h + 1 literal bytes; h > 128 by one byte that is
 * repeated 257 - h times; 128 is skipped. Test inputs are mostly one
 * background value, so they shrink about 3.5 times.
 *
 * The same data is packed in two places, with the same encoder
 * (python/zephyr_tinyml/packbits.py): the test inputs embedded in flash
 * (kTestPacked in a generated test_data.cc, expanded by the self test's
 * FillInput()) and the TP frames of the evaluation protocol, which save UART
 * characters (docs/protocol.md, samples/mnist_eval). This is the one decoder
 * for both. Header-only, without Zephyr: the host tests compile it too.
 */

#ifndef TINYML_PACKBITS_H_
#define TINYML_PACKBITS_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace tinyml {

/*
 * Unpacks the `size` bytes at `in` into `out`. True when they unpack to
 * exactly `out_size` bytes; false when they are damaged (a run cut short, or
 * more or fewer bytes than `out_size`). Never writes past out + out_size.
 */
inline bool UnpackBits(const uint8_t* in, size_t size, uint8_t* out, size_t out_size)
{
	size_t i = 0;
	size_t o = 0;
	while (i < size) {
		const unsigned header = in[i++];
		if (header < 128) {
			const size_t count = header + 1u;
			if (count > size - i || count > out_size - o) {
				return false;
			}
			std::memcpy(out + o, in + i, count);
			i += count;
			o += count;
		} else if (header > 128) {
			const size_t count = 257u - header;
			if (i >= size || count > out_size - o) {
				return false;
			}
			std::memset(out + o, in[i++], count);
			o += count;
		}
	}
	return o == out_size;
}

}  // namespace tinyml

#endif  // TINYML_PACKBITS_H_
