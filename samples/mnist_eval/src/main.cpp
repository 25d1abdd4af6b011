/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * On-device evaluation of the generated model: the host streams test images
 * over the console UART, one hex-encoded frame per line, and this app answers
 * each with the whole output tensor (int8, or int16 little-endian for a 16x8
 * model; for a classifier also the predicted class) and the cycles Invoke()
 * took, so the host can compare them with host TFLM bit for bit.
 * Protocol: docs/protocol.md. Everything else on the console (boot banner,
 * TFLM messages) is plain text the host ignores.
 *
 * Built with TINYML_SECURE (`tinyml eval --secure`, a TF-M board target such as
 * mps2_an521_ns) the model is not in this image: the zephyr-tinyml TF-M partition
 * holds it, TFLM and the arena, and each frame goes through its PSA service
 * (tinyml/secure_model.h), as in samples/secure_model.
 */

#include <cstring>

#include <zephyr/device.h>
#include <zephyr/drivers/uart.h>
#include <zephyr/kernel.h>
#include <zephyr/sys/printk.h>

#include "frame.h"
#include "model_settings.h"
#include "tinyml/argmax.h"

#if defined(TINYML_SECURE)
#include "psa/client.h"
#include "tinyml/secure_model.h"
#else
#include "model_data.h"
#include "tinyml/crc16.h"
#include "tinyml/runtime.h"
#endif

namespace {

using evalproto::Error;

/* Frames carry the tensors' bytes as the model types them (docs/protocol.md): int8, or a 16x8
 * model's int16 in the device's (and the protocol's) little-endian order. Counts in frames are
 * values, lengths are bytes. */
static_assert(sizeof(tinyml::InputType) <= 2 && sizeof(tinyml::OutputType) <= 2,
	      "samples/mnist_eval streams int8 and int16 tensors");

const struct device* const uart = DEVICE_DT_GET(DT_CHOSEN(zephyr_console));

/*
 * Receive ring, filled by the UART interrupt and drained by main(). It holds
 * the longest request line (marker, hex of a packed frame with its CRC, "\r\n";
 * an MNIST image: 1,602 characters), at most 4 KB: the host sends the next
 * line only after our reply and main() drains while a line arrives, so a
 * well-behaved host never fills it. Sized to the model, not fixed, so the app
 * fits small boards (qemu_cortex_m0's 16 KB of RAM beside the MNIST arena).
 * A longer line can fill it: then the ISR drops the rest of the line and ends
 * it with kLostLineEnd instead of '\n', in order, so the decoder answers that
 * very line. The last slot is kept for line ends, so a line end is never lost
 * while the host waits for a reply.
 */
constexpr uint32_t kLongestRequestLine =
	1 + 2 * (evalproto::kHeaderSize + evalproto::PackedBound(tinyml::kInputBytes) + evalproto::kCrcSize) + 2;
constexpr uint32_t RingSizeFor(uint32_t chars)
{
	uint32_t size = 64;
	while (size < chars && size < 4096) {
		size *= 2;
	}
	return size;
}
constexpr uint32_t kRingSize = RingSizeFor(kLongestRequestLine); /* power of two */
static_assert((kRingSize & (kRingSize - 1)) == 0, "the ring's indices wrap modulo its size");
uint8_t ring[kRingSize];
volatile uint32_t ring_head; /* written by the ISR only */
volatile uint32_t ring_tail; /* written by main() only */
bool dropping;               /* ISR only: characters of this line were dropped */
K_SEM_DEFINE(rx_ready, 0, 1);

/* Decoded request: header, payload (packed or not) and CRC of the largest valid frame. */
uint8_t frame_buffer[evalproto::kHeaderSize + evalproto::PackedBound(tinyml::kInputBytes) +
		     evalproto::kCrcSize];

/*
 * A classifier answers with a result frame (`TR`: class, scores); any other model (a generator's
 * image, kOutputBytes up to 65,535 bytes) with an outputs frame (`TO`: the whole output tensor).
 */
constexpr bool kClassScores = tinyml::kOutputSize == tinyml::kNumClasses && tinyml::kNumClasses <= 255;
constexpr size_t kResultFrame = 10 + tinyml::kOutputBytes;
uint8_t result_frame[kResultFrame + evalproto::kCrcSize];

/* Longest reply: marker, hex of the info or result frame with its CRC, newline, NUL. */
constexpr size_t kLongestFrame = (kResultFrame > 64 ? kResultFrame : 64) + evalproto::kCrcSize;
char line[1 + 2 * kLongestFrame + 2];

void Store(char c)
{
	const uint32_t head = ring_head;
	ring[head % kRingSize] = (uint8_t)c;
	ring_head = head + 1;
}

void UartIsr(const struct device* dev, void*)
{
	while (uart_irq_update(dev) && uart_irq_rx_ready(dev)) {
		uint8_t chunk[16];
		const int n = uart_fifo_read(dev, chunk, sizeof(chunk));
		for (int i = 0; i < n; i++) {
			const uint32_t used = ring_head - ring_tail;
			if (chunk[i] == '\n') {
				if (used < kRingSize) {
					Store(dropping ? evalproto::kLostLineEnd : '\n');
					dropping = false;
				} else {
					dropping = true; /* two lines in flight: not our protocol */
				}
			} else if (!dropping && used < kRingSize - 1) {
				Store((char)chunk[i]);
			} else {
				dropping = true;
			}
		}
		if (n > 0) {
			k_sem_give(&rx_ready);
		}
	}
}

/* Blocks until a character has arrived. */
char NextChar()
{
	while (ring_tail == ring_head) {
		k_sem_take(&rx_ready, K_FOREVER);
	}
	const uint32_t tail = ring_tail;
	const char c = (char)ring[tail % kRingSize];
	ring_tail = tail + 1;
	return c;
}

void PutU16(uint8_t* p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

void PutU32(uint8_t* p, uint32_t v)
{
	PutU16(p, (uint16_t)v);
	PutU16(p + 2, (uint16_t)(v >> 16));
}

/* Appends the CRC and prints marker + hex + newline as one console line. */
void Send(char marker, uint8_t* frame, size_t size)
{
	PutU16(frame + size, evalproto::Crc16(frame, size));
	size += evalproto::kCrcSize;
	line[0] = marker;
	size_t n = 1 + evalproto::ToHex(frame, size, line + 1);
	line[n++] = '\n';
	line[n] = '\0';
	printk("%s", line);
}

void SendError(uint16_t seq, Error error, size_t received)
{
	uint8_t frame[16];
	memcpy(frame, evalproto::kMagicError, 2);
	PutU16(frame + 2, seq);
	frame[4] = (uint8_t)error;
	PutU16(frame + 5, (uint16_t)(received > 0xFFFF ? 0xFFFF : received));
	Send(evalproto::kErrorMarker, frame, 7);
}

/* What the info frame tells the host, which checks it against its .tflite before trusting any result. */
struct ModelFacts {
	uint16_t crc;
	uint32_t model_size;
	uint32_t arena_size;
	uint32_t arena_used;
};

int Fail(const char* what)
{
	printk("ERROR: %s\nPROJECT EXECUTION FAILED\n", what);
	return -1;
}

#if defined(TINYML_SECURE)
/*
 * The model in the secure partition: frames are decoded into this image's input buffer and
 * answered from its output buffer, both copied by TF-M through the service. The partition
 * resets a stateful model before each input itself. Trace requests run as plain inferences:
 * every op's output is what the secure world keeps to itself.
 */
psa_handle_t service;
uint8_t input_buffer[tinyml::kInputBytes];
uint8_t output_buffer[tinyml::kOutputBytes];

int StartModel(ModelFacts* facts)
{
	service = psa_connect(TINYML_SECURE_SID, TINYML_SECURE_VERSION);
	if (service <= 0) {
		return Fail("the zephyr-tinyml partition's service is not there (psa_connect failed)");
	}
	tinyml_secure_info info = {};
	psa_outvec out = {&info, sizeof(info)};
	if (psa_call(service, TINYML_SECURE_INFO, nullptr, 0, &out, 1) != PSA_SUCCESS) {
		return Fail("the partition's INFO call failed");
	}
	if (info.input_size != (uint32_t)tinyml::kInputBytes ||
	    info.output_size != (uint32_t)tinyml::kOutputBytes) {
		return Fail("the partition's model is not this app's (input/output sizes differ)");
	}
	if (!info.started) {
		return Fail("the partition could not start the model (AllocateTensors failed)");
	}
	*facts = {(uint16_t)info.model_crc16, info.model_size, info.arena_size, info.arena_used};
	return 0;
}

uint8_t* InputBuffer()
{
	return input_buffer;
}

/* Runs the input buffer's input; the output bytes, or nullptr when the service failed. */
const uint8_t* Infer(bool /* trace */, uint16_t /* seq */)
{
	psa_invec in = {input_buffer, sizeof(input_buffer)};
	psa_outvec out = {output_buffer, sizeof(output_buffer)};
	return psa_call(service, TINYML_SECURE_INFER, &in, 1, &out, 1) == PSA_SUCCESS ? output_buffer
										      : nullptr;
}
#else
/* The model in this image: the runtime's interpreter, input and output tensors in its arena. */
tflite::MicroInterpreter* interpreter;

int StartModel(ModelFacts* facts)
{
	interpreter = tinyml::StartInterpreter();
	if (interpreter == nullptr) {
		return -1;
	}
	*facts = {tinyml_crc16(TINYML_MODEL_DATA, tinyml::kModelDataSize, 0xFFFF),
		  (uint32_t)tinyml::kModelDataSize, (uint32_t)tinyml::ArenaSize(),
		  (uint32_t)interpreter->arena_used_bytes()};
	return 0;
}

uint8_t* InputBuffer()
{
	return interpreter->input(0)->data.uint8;
}

/*
 * Runs the input tensor's input from the model's initial state (StartFresh; TraceInvoke does
 * it); a trace request (the host saw this input differ) prints every op's output first.
 * The output bytes, or nullptr when TFLM failed.
 */
const uint8_t* Infer(bool trace, uint16_t seq)
{
	if (!trace && tinyml::StartFresh(interpreter) != kTfLiteOk) {
		return nullptr;
	}
	const TfLiteStatus status = trace ? tinyml::TraceInvoke(interpreter, seq) : interpreter->Invoke();
	return status == kTfLiteOk ? interpreter->output(0)->data.uint8 : nullptr;
}
#endif

void SendInfo(uint16_t seq, const ModelFacts& facts)
{
	uint8_t frame[64];
	memcpy(frame, evalproto::kMagicInfo, 2);
	PutU16(frame + 2, seq);
	frame[4] = evalproto::kVersion;
	PutU16(frame + 5, (uint16_t)tinyml::kInputSize);
	frame[7] = (uint8_t)tinyml::kNumClasses;
	PutU32(frame + 8, facts.model_size);
	PutU16(frame + 12, facts.crc);
	PutU32(frame + 14, facts.arena_size);
	PutU32(frame + 18, facts.arena_used);
	PutU32(frame + 22, (uint32_t)sys_clock_hw_cycles_per_sec());
	Send(evalproto::kReplyMarker, frame, 26);
}

/* `outputs`: the output tensor's bytes (kOutputSize values of OutputType). */
void SendResult(uint16_t seq, const uint8_t* outputs, uint32_t cycles)
{
	uint8_t* frame = result_frame;
	if constexpr (kClassScores) {
		memcpy(frame, evalproto::kMagicResult, 2);
		PutU16(frame + 2, seq);
		tinyml::OutputType scores[kClassScores ? tinyml::kNumClasses : 1];
		memcpy(scores, outputs, sizeof(scores)); /* the bytes as the model's values, aligned */
		frame[4] = (uint8_t)tinyml::ArgMax(scores);
		frame[5] = (uint8_t)tinyml::kNumClasses;
	} else {
		memcpy(frame, evalproto::kMagicOutputs, 2);
		PutU16(frame + 2, seq);
		PutU16(frame + 4, (uint16_t)tinyml::kOutputSize);
	}
	memcpy(frame + 6, outputs, tinyml::kOutputBytes);
	PutU32(frame + 6 + tinyml::kOutputBytes, cycles);
	Send(evalproto::kReplyMarker, frame, 10 + tinyml::kOutputBytes);
}

}  // namespace

int main(void)
{
	ModelFacts facts;
	if (StartModel(&facts) != 0) {
		return -1;
	}
	if (!device_is_ready(uart)) {
		return Fail("console UART not ready");
	}

	evalproto::LineAssembler assembler(frame_buffer, sizeof(frame_buffer),
					   (uint16_t)tinyml::kInputBytes);
	uart_irq_callback_user_data_set(uart, UartIsr, nullptr);
	uart_irq_rx_enable(uart);
	/*
	 * The host asks for the info frame while we boot. On Arm's CMSDK UART
	 * (mps2_an521, mps3_an547) a character that arrived before the receive
	 * interrupt was enabled raises no interrupt once it is: it stays in the
	 * one-byte buffer, nothing after it is received, and no request is ever
	 * answered. Read what is waiting once, as the interrupt would have.
	 */
	const unsigned int key = irq_lock();
	UartIsr(uart, nullptr);
	irq_unlock(key);

	printk("tinyml-eval ready: model %s, %u bytes, crc 0x%04x, arena %u of %u bytes\n",
	       tinyml::kModelName, (unsigned)facts.model_size, (unsigned)facts.crc,
	       (unsigned)facts.arena_used, (unsigned)facts.arena_size);

	for (;;) {
		evalproto::Request request;
		Error error;
		uint16_t seq;
		switch (assembler.Feed(NextChar(), &request, &error, &seq)) {
		case evalproto::LineAssembler::Status::kPending:
			break;
		case evalproto::LineAssembler::Status::kError:
			SendError(seq, error, assembler.LastSize());
			break;
		case evalproto::LineAssembler::Status::kRequest:
			if (request.length == 0) {
				SendInfo(request.seq, facts);
				break;
			}
			if (!request.packed) {
				memcpy(InputBuffer(), request.payload, tinyml::kInputBytes);
			} else if (!evalproto::Unpack(request.payload, request.length, InputBuffer(),
						      tinyml::kInputBytes)) {
				SendError(request.seq, Error::kBadSize, request.length);
				break;
			}
			const uint32_t start = k_cycle_get_32();
			const uint8_t* outputs = Infer(request.trace, request.seq);
			const uint32_t cycles = k_cycle_get_32() - start;
			if (outputs == nullptr) {
				SendError(request.seq, Error::kInvoke, request.length);
			} else {
				SendResult(request.seq, outputs, cycles);
			}
			break;
		}
	}
	return 0;
}
