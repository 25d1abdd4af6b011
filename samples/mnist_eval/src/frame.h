/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The evaluation protocol's device side, without Zephyr: line assembly, hex,
 * CRC-16 and frame checks. docs/protocol.md is the specification;
 * python/zephyr_tinyml/device/protocol.py is the host side and must agree with it.
 */

#pragma once

#include <cstddef>
#include <cstdint>

namespace evalproto {

constexpr char kRequestMarker = '@';
constexpr char kReplyMarker = '#';
constexpr char kErrorMarker = '!';
/* Ends a line in place of '\n' when the receiver dropped characters of it. */
constexpr char kLostLineEnd = '\x18';

constexpr uint8_t kMagicRequest[2] = {'T', 'Q'};       /* payload as is */
constexpr uint8_t kMagicPackedRequest[2] = {'T', 'P'}; /* payload PackBits-packed */
constexpr uint8_t kMagicTraceRequest[2] = {'T', 'T'};  /* payload as is; run it op by op (OPTRACE lines) */
constexpr uint8_t kMagicResult[2] = {'T', 'R'};
constexpr uint8_t kMagicOutputs[2] = {'T', 'O'};  /* a non-classifier's whole output tensor */
constexpr uint8_t kMagicInfo[2] = {'T', 'I'};
constexpr uint8_t kMagicError[2] = {'T', 'E'};
constexpr uint8_t kVersion = 1;

/* magic + seq + length before the payload, CRC after it */
constexpr size_t kHeaderSize = 6;
constexpr size_t kCrcSize = 2;
/* Sent when the frame was too short to carry a sequence number. */
constexpr uint16_t kUnknownSeq = 0xFFFF;

/* Largest PackBits encoding of n bytes: one header byte per 128 literals. */
constexpr size_t PackedBound(size_t n)
{
	return n + (n + 127) / 128;
}

enum class Error : uint8_t {
	kNone = 0,
	kBadCrc = 1,     /* checksum does not match the bytes received */
	kBadLength = 2,  /* length field disagrees with the bytes received */
	kBadSize = 3,    /* length is neither 0 (info) nor the model's input size */
	kBadMagic = 4,   /* not a request frame */
	kBadHex = 5,     /* a character that is not a hex digit, or an odd count */
	kTooLong = 6,    /* the line did not fit the receive buffer */
	kShort = 7,      /* fewer bytes than a header and a CRC */
	kInvoke = 8,     /* the interpreter failed on this frame */
	kOverrun = 9,    /* characters were lost before they were read */
};

/*
 * A TP payload unpacked into the input tensor: tinyml::UnpackBits()
 * (tinyml/packbits.h, PackBits as in TIFF), the decoder of the self test's
 * embedded inputs too. Test images are mostly background, so frames shrink
 * about 3.5 times, and with them the time the UART takes. True when `in`
 * unpacks to exactly `out_size` bytes.
 */
bool Unpack(const uint8_t* in, size_t size, uint8_t* out, size_t out_size);

/* CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor. */
uint16_t Crc16(const uint8_t* data, size_t size, uint16_t crc = 0xFFFF);

/* Writes two lowercase hex digits per byte; returns the characters written. */
size_t ToHex(const uint8_t* data, size_t size, char* out);

/* A decoded request: points into the assembler's buffer until the next Feed(). */
struct Request {
	uint16_t seq;
	const uint8_t* payload;
	uint16_t length;
	bool packed;
	bool trace; /* print every op's output before the reply (tinyml::TraceInvoke) */
};

/*
 * Collects one '@' line at a time, decoding hex as the characters arrive so
 * the buffer holds bytes, not text. Lines without the marker (a terminal's
 * stray input) are skipped without a reply.
 */
class LineAssembler {
public:
	enum class Status { kPending, kRequest, kError };

	/* `payload_size`: the one length a request that is not packed may have, besides 0. */
	LineAssembler(uint8_t* buffer, size_t capacity, uint16_t payload_size);

	/*
	 * Feed one received character. At the end of a request line returns
	 * kRequest (with *request filled) or kError (with *error and *seq);
	 * otherwise kPending. kLostLineEnd ends a line whose characters were
	 * partly dropped: always an error (kOverrun unless an earlier fault
	 * was seen), with the sequence number unknown if the frame's start was lost.
	 */
	Status Feed(char c, Request* request, Error* error, uint16_t* seq);

	/* Bytes decoded from the line that Feed() just finished. */
	size_t LastSize() const { return last_size_; }

private:
	enum class State { kLineStart, kInFrame, kSkipLine };

	Status Finish(Request* request, Error* error, uint16_t* seq);

	uint8_t* buffer_;
	size_t capacity_;
	uint16_t payload_size_;
	State state_ = State::kLineStart;
	size_t count_ = 0;      /* whole bytes decoded */
	int high_nibble_ = -1;  /* first digit of a byte, or -1 */
	Error fault_ = Error::kNone;
	size_t last_size_ = 0;
};

}  // namespace evalproto
