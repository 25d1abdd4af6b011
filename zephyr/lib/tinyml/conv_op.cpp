/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * CONV_2D with CMSIS-NN, one-input-channel convolutions by tinyml_conv_1ch_s8:
 * see include/tinyml/conv_op.h.
 *
 * For a node this kernel takes, TFLM's own CalculateOpDataConv() computes the
 * padding, zero points, activation range and per-channel multipliers, exactly
 * as TFLM's reference kernel and CMSIS-NN's use them. Every other convolution
 * gets CMSIS-NN's own op data, made by CMSIS-NN's init when the node is
 * prepared and handed to CMSIS-NN's prepare and invoke on a copy of the node.
 */

#include "tinyml/conv_op.h"

#include <cstring>

#include "tensorflow/lite/c/builtin_op_data.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"

#include "tinyml/conv_1ch.h"

#if defined(TINYML_CONV_1CH_REGISTERED)
namespace tinyml {
namespace {

/* Per node, both allocated when the node is prepared (persistent arena bytes only for the kernel
 * that runs it). */
struct OpData {
	void* cmsis;           /* CMSIS-NN's op data, for a convolution it runs */
	tinyml_conv_1ch* conv; /* or tinyml_conv_1ch_s8's shape, quantization and packed weights */
	int scratch_index;
};

/* CMSIS-NN's int8 CONV_2D kernel, for every convolution this one does not take. */
struct {
	void* (*init)(TfLiteContext* context, const char* buffer, size_t length);
	TfLiteStatus (*prepare)(TfLiteContext* context, TfLiteNode* node);
	TfLiteStatus (*invoke)(TfLiteContext* context, TfLiteNode* node);
} cmsis_conv;

/* The row functions the model's resolver named (Register_CONV_2D_INT8_ONE_CHANNEL<>()). */
const OneChannelRow* one_channel_rows;
int one_channel_row_count;

void* Init(TfLiteContext* context, const char* buffer, size_t length)
{
	auto* data = static_cast<OpData*>(context->AllocatePersistentBuffer(context, sizeof(OpData)));
	if (data != nullptr) {
		memset(data, 0, sizeof(*data));
	}
	return data;
}

/* The node as CMSIS-NN made it: its own op data in place of ours. */
TfLiteNode CmsisNode(const TfLiteNode* node)
{
	TfLiteNode copy = *node;
	copy.user_data = static_cast<OpData*>(node->user_data)->cmsis;
	return copy;
}

/*
 * Sets up tinyml_conv_1ch_s8 for this node if it computes the node exactly as TFLM does (one
 * int8 input channel, int8 weights, dilation 1, TFLM's default double rounding, a shape
 * tinyml_conv_1ch_supported() takes); otherwise data->conv stays null and the node is
 * CMSIS-NN's. An error only when the arena or TFLM's parameters fail. Read from the eval
 * tensors: the filter's and bias's data lie in the model, so their pointers stay valid.
 */
TfLiteStatus PrepareOneChannel(TfLiteContext* context, TfLiteNode* node, const TfLiteConvParams& params,
			       OpData* data)
{
#if defined(TFLITE_SINGLE_ROUNDING) && TFLITE_SINGLE_ROUNDING
	return kTfLiteOk;
#endif
	const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, tflite::kConvInputTensor);
	const TfLiteEvalTensor* filter = tflite::micro::GetEvalInput(context, node, tflite::kConvWeightsTensor);
	const TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, tflite::kConvOutputTensor);
	if (input == nullptr || filter == nullptr || output == nullptr || input->type != kTfLiteInt8 ||
	    filter->type != kTfLiteInt8 || input->dims->data[3] != 1 || filter->data.int8 == nullptr ||
	    params.dilation_width_factor != 1 || params.dilation_height_factor != 1) {
		return kTfLiteOk;
	}
	tinyml_conv_1ch conv = {};
	conv.batches = input->dims->data[0];
	conv.input_h = input->dims->data[1];
	conv.input_w = input->dims->data[2];
	conv.out_ch = filter->dims->data[0];
	conv.filter_h = filter->dims->data[1];
	conv.filter_w = filter->dims->data[2];
	conv.output_h = output->dims->data[1];
	conv.output_w = output->dims->data[2];
	conv.stride_h = params.stride_height;
	conv.stride_w = params.stride_width;
	for (int i = 0; i < one_channel_row_count && conv.row == nullptr; i++) {
		if (tinyml_conv_1ch_row_takes(one_channel_rows[i].width, conv.filter_w, conv.stride_w)) {
			conv.row = one_channel_rows[i].row;
		}
	}
	if (conv.row == nullptr || !tinyml_conv_1ch_supported(&conv)) {
		return kTfLiteOk;
	}
	/* TFLM's quantization parameters, as its reference kernel computes them. */
	tflite::OpDataConv tflm = {};
	const size_t channel_bytes = static_cast<size_t>(conv.out_ch) * sizeof(int32_t);
	auto* persistent = static_cast<int32_t*>(context->AllocatePersistentBuffer(
		context, sizeof(conv) + 2 * channel_bytes + tinyml_conv_1ch_weights_size(&conv)));
	TF_LITE_ENSURE(context, persistent != nullptr);
	static_assert(sizeof(conv) % sizeof(int32_t) == 0, "the arrays after it stay aligned");
	data->conv = reinterpret_cast<tinyml_conv_1ch*>(persistent);
	persistent += sizeof(conv) / sizeof(int32_t);
	tflm.per_channel_output_multiplier = persistent;
	tflm.per_channel_output_shift = persistent + conv.out_ch;
	TF_LITE_ENSURE_STATUS(tflite::CalculateOpDataConv(context, node, params, conv.input_w, conv.input_h,
							  conv.filter_w, conv.filter_h, conv.output_w,
							  conv.output_h, kTfLiteInt8, &tflm));
	conv.pad_h = tflm.padding.height;
	conv.pad_w = tflm.padding.width;
	conv.input_offset = -tflm.input_zero_point;
	conv.output_offset = tflm.output_zero_point;
	conv.act_min = tflm.output_activation_min;
	conv.act_max = tflm.output_activation_max;
	conv.multiplier = tflm.per_channel_output_multiplier;
	conv.shift = tflm.per_channel_output_shift;
	auto* weights = reinterpret_cast<int8_t*>(persistent + 2 * conv.out_ch);
	tinyml_conv_1ch_pack_weights(&conv, filter->data.int8, weights);
	conv.weights = weights;
	const TfLiteEvalTensor* bias = node->inputs->size > tflite::kConvBiasTensor
		? tflite::micro::GetEvalInput(context, node, tflite::kConvBiasTensor)
		: nullptr;
	conv.bias = tflite::micro::GetOptionalTensorData<int32_t>(bias);
	*data->conv = conv;
	return context->RequestScratchBufferInArena(context, tinyml_conv_1ch_scratch_size(&conv),
						    &data->scratch_index);
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node)
{
	auto* data = static_cast<OpData*>(node->user_data);
	TF_LITE_ENSURE(context, data != nullptr && node->builtin_data != nullptr);
	TF_LITE_ENSURE_STATUS(
		PrepareOneChannel(context, node, *static_cast<const TfLiteConvParams*>(node->builtin_data), data));
	if (data->conv != nullptr) {
		return kTfLiteOk;
	}
	/* As TFLM's graph calls a builtin op's init: its builtin data, size 0. */
	data->cmsis = cmsis_conv.init(context, static_cast<const char*>(node->builtin_data), 0);
	TfLiteNode cmsis_node = CmsisNode(node);
	return cmsis_conv.prepare(context, &cmsis_node);
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node)
{
	const auto* data = static_cast<const OpData*>(node->user_data);
	if (data->conv == nullptr) {
		TfLiteNode cmsis_node = CmsisNode(node);
		return cmsis_conv.invoke(context, &cmsis_node);
	}
	const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, tflite::kConvInputTensor);
	TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, tflite::kConvOutputTensor);
	tinyml_conv_1ch_s8(data->conv, input->data.int8, output->data.int8,
			   context->GetScratchBuffer(context, data->scratch_index));
	return kTfLiteOk;
}

}  // namespace

TFLMRegistration RegisterConv2DOneChannel(const OneChannelRow* rows, int count)
{
	const TFLMRegistration cmsis = tflite::Register_CONV_2D_INT8();
	if (cmsis.free != nullptr || cmsis.reset != nullptr) {
		/* A CMSIS-NN convolution with state to free or reset (none in the TFLM revisions Zephyr
		 * pins): this wrapper does not pass those on, so CMSIS-NN runs every convolution. */
		return cmsis;
	}
	cmsis_conv = {cmsis.init, cmsis.prepare, cmsis.invoke};
	one_channel_rows = rows;
	one_channel_row_count = count;
	return tflite::micro::RegisterOp(Init, Prepare, Eval);
}

}  // namespace tinyml
#endif  // TINYML_CONV_1CH_REGISTERED
