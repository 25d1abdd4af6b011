/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Any generated model on TensorFlow Lite Micro: the zephyr-tinyml runtime runs the
 * embedded test inputs through the model of TINYML_MODEL_DIR, checks every output
 * against host TFLM's bytes and prints one line per input plus a summary that
 * the twister harness (sample.yaml) and `west tinyml build --run` parse.
 */

#include "tinyml/runtime.h"

int main(void)
{
	return tinyml::RunSelfTest();
}
