/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The zephyr-tinyml runtime (CONFIG_TINYML): what every app that runs a
 * generated model shares. It starts TFLM on the generated model with the
 * generated op resolver in the measured arena, and checks the model against
 * model_settings.h before the first inference. Each failure prints its cause
 * and twister's failure line, so a broken build fails at once, not by timeout.
 */

#pragma once

#include <cstddef>
#include <cstdint>

#include "tensorflow/lite/micro/micro_interpreter.h"

#include "model_settings.h"
#include "tinyml/argmax.h"  /* ArgMax() */

namespace tinyml {

/* ztest's convention: twister's console harness stops with a failure on this line. */
int Fail(const char* what);

/* The tensor arena: ArenaSize() bytes, 16-byte aligned. */
uint8_t* Arena();

/* model_arena.h's kTensorArenaSize, plus TINYML_ARENA_EXTRA when the build defines it (runtime.cpp). */
size_t ArenaSize();

/*
 * CONFIG_TINYML_ARENA_PROBE: the smallest arena (a multiple of 16 bytes) in which
 * AllocateTensors() succeeded, found by StartInterpreter(); 0 when not probed.
 */
size_t ArenaNeeded();

/*
 * The one interpreter of the app, tensors allocated in Arena(); nullptr (after
 * printing why) if the model, its ops, the arena or its tensors do not match
 * what the pipeline generated.
 */
tflite::MicroInterpreter* StartInterpreter();

/*
 * Before every inference: a model with variable tensors (an LSTM's hidden and cell state)
 * starts again from its initial state, as a stateless Keras layer does and as host TFLM is run
 * (the pipeline resets it per input too); otherwise each input's outputs would depend on the
 * inputs before it. Nothing to do, and no cost, for a model without state.
 */
TfLiteStatus StartFresh(tflite::MicroInterpreter* interpreter);

/*
 * CONFIG_TINYML_SELF_TEST: run every embedded test input, compare the whole
 * output tensor with host TFLM's bytes, print one line per input
 * ("CORRECT classification! <label>" or "CORRECT output") and a SUMMARY line.
 * Returns 0 when every input passed.
 */
int RunSelfTest();

/*
 * Run the model once more on the input tensor's
 * contents, printing that input and every op's output tensor as it is produced
 * ("OPTRACE" lines of hex between "OPTRACE begin test=<test>" and
 * "OPTRACE end"). The host (`west tinyml build --run`, `west tinyml bench`)
 * runs host TFLM on the same input and names the first op whose output differs:
 * the kernel that is not bit-exact. The self test calls it for the first input
 * whose output differs from host TFLM's, samples/mnist_eval for a trace request
 * (`west tinyml eval` sends one for the first image that differed). Returns
 * Invoke()'s status.
 */
TfLiteStatus TraceInvoke(tflite::MicroInterpreter* interpreter, int test);

/*
 * Run the model once more on the input tensor's contents, timing every op
 * with the cycle counter, and print one "OPPROFILE op=<n> cycles=<c>" line per
 * op in execution order (n: the op's index in the model's main subgraph).
 * The self test calls it (CONFIG_TINYML_OP_PROFILE) after its measured
 * inferences; `west tinyml bench --ops` turns the lines into instructions per
 * op (QEMU icount, with the self test's calibration) or cycles (a board).
 * The ops stay wrapped afterwards (a few instructions per op call).
 */
TfLiteStatus ProfileInvoke(tflite::MicroInterpreter* interpreter);

}  // namespace tinyml
