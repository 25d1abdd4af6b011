/*
 * SPDX-License-Identifier: Apache-2.0
 */

#include "frame.h"

#include "tinyml/crc16.h"
#include "tinyml/packbits.h"

namespace evalproto {

uint16_t Crc16(const uint8_t* data, size_t size, uint16_t crc)
{
	return tinyml_crc16(data, size, crc);
}

size_t ToHex(const uint8_t* data, size_t size, char* out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < size; i++) {
		out[2 * i] = digits[data[i] >> 4];
		out[2 * i + 1] = digits[data[i] & 0x0F];
	}
	return 2 * size;
}

bool Unpack(const uint8_t* in, size_t size, uint8_t* out, size_t out_size)
{
	return tinyml::UnpackBits(in, size, out, out_size);
}

namespace {

int HexValue(char c)
{
	if (c >= '0' && c <= '9') {
		return c - '0';
	}
	if (c >= 'a' && c <= 'f') {
		return c - 'a' + 10;
	}
	if (c >= 'A' && c <= 'F') {
		return c - 'A' + 10;
	}
	return -1;
}

uint16_t ReadU16(const uint8_t* p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

}  // namespace

LineAssembler::LineAssembler(uint8_t* buffer, size_t capacity, uint16_t payload_size)
	: buffer_(buffer), capacity_(capacity), payload_size_(payload_size)
{
}

LineAssembler::Status LineAssembler::Feed(char c, Request* request, Error* error, uint16_t* seq)
{
	if (c == '\r') {
		return Status::kPending;
	}
	if (c == '\n') {
		const State was = state_;
		state_ = State::kLineStart;
		return was == State::kInFrame ? Finish(request, error, seq) : Status::kPending;
	}
	if (c == kLostLineEnd) {
		/* Even a line that never showed its '@' is answered: it may have been a frame. */
		if (state_ != State::kInFrame) {
			count_ = 0;
			high_nibble_ = -1;
		}
		if (state_ != State::kInFrame || fault_ == Error::kNone) {
			fault_ = Error::kOverrun;
		}
		state_ = State::kLineStart;
		return Finish(request, error, seq);
	}
	switch (state_) {
	case State::kLineStart:
		if (c == kRequestMarker) {
			state_ = State::kInFrame;
			count_ = 0;
			high_nibble_ = -1;
			fault_ = Error::kNone;
		} else {
			state_ = State::kSkipLine;
		}
		return Status::kPending;
	case State::kSkipLine:
		return Status::kPending;
	case State::kInFrame:
		break;
	}

	if (c == kRequestMarker) {
		/* A new frame before this one ended: the rest of it was lost. */
		const Status status = Finish(request, error, seq);
		state_ = State::kInFrame;
		count_ = 0;
		high_nibble_ = -1;
		fault_ = Error::kNone;
		return status;
	}
	const int value = HexValue(c);
	if (value < 0) {
		if (fault_ == Error::kNone) {
			fault_ = Error::kBadHex;
		}
		return Status::kPending;
	}
	if (high_nibble_ < 0) {
		high_nibble_ = value;
		return Status::kPending;
	}
	const uint8_t byte = (uint8_t)((high_nibble_ << 4) | value);
	high_nibble_ = -1;
	if (count_ < capacity_) {
		buffer_[count_++] = byte;
	} else if (fault_ == Error::kNone) {
		/* Keep the header already stored: it names the sequence number. */
		fault_ = Error::kTooLong;
	}
	return Status::kPending;
}

LineAssembler::Status LineAssembler::Finish(Request* request, Error* error, uint16_t* seq)
{
	*seq = count_ >= 4 ? ReadU16(buffer_ + 2) : kUnknownSeq;
	last_size_ = count_;
	Error fault = fault_;
	if (fault == Error::kNone) {
		/* A line cut short usually ends mid-byte: judge it by its whole bytes, so it
		 * reads as the truncated frame it is (bad length) rather than as bad hex. */
		if (count_ < kHeaderSize + kCrcSize) {
			fault = Error::kShort;
		} else if (buffer_[0] != kMagicRequest[0] ||
			   (buffer_[1] != kMagicRequest[1] && buffer_[1] != kMagicPackedRequest[1] &&
			    buffer_[1] != kMagicTraceRequest[1])) {
			fault = Error::kBadMagic;
		} else if (ReadU16(buffer_ + 4) != count_ - kHeaderSize - kCrcSize) {
			fault = Error::kBadLength;
		} else if (high_nibble_ >= 0) {
			fault = Error::kBadHex;
		} else if (Crc16(buffer_, count_ - kCrcSize) != ReadU16(buffer_ + count_ - kCrcSize)) {
			fault = Error::kBadCrc;
		} else if (buffer_[1] != kMagicPackedRequest[1] && ReadU16(buffer_ + 4) != 0 &&
			   ReadU16(buffer_ + 4) != payload_size_) {
			fault = Error::kBadSize;
		}
	}
	count_ = 0;
	high_nibble_ = -1;
	fault_ = Error::kNone;
	if (fault != Error::kNone) {
		*error = fault;
		return Status::kError;
	}
	request->seq = *seq;
	request->length = ReadU16(buffer_ + 4);
	request->payload = buffer_ + kHeaderSize;
	request->packed = buffer_[1] == kMagicPackedRequest[1];
	request->trace = buffer_[1] == kMagicTraceRequest[1];
	return Status::kRequest;
}

}  // namespace evalproto
