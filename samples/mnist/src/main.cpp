/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * MNIST on TensorFlow Lite Micro: the zephyr-tinyml runtime classifies the
 * embedded test images with the generated int8 model, checks every output
 * against host TFLM's bytes and prints one line per image plus a summary that
 * the twister harness (sample.yaml) and `west tinyml build --run` parse.
 */

#include "tinyml/runtime.h"

int main(void)
{
	return tinyml::RunSelfTest();
}
