/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The op trace (tinyml::TraceInvoke(): the self test, the eval app), inside the runtime:
 * every op's output tensor printed as it is produced, so the host can name the
 * first op whose output differs from host TFLM's (a kernel that is not
 * bit-exact for this model).
 */

#pragma once

#include <cstddef>
#include <cstdint>

#include "tensorflow/lite/schema/schema_generated.h"

#include "op_resolver.h"

namespace tinyml {

/*
 * Wrap the invoke function of each op the model uses in its registration in
 * `resolver` (the interpreter calls the ops through those registrations, so
 * this works after AllocateTensors() too). Only the wrapped ops are traced;
 * calling it again changes nothing.
 */
void WrapOps(OpResolver& resolver, const tflite::Model* model);

/* While on, each wrapped op prints its output tensors as "OPTRACE t<index> <hex>" lines. */
void SetOpTrace(bool on);

/*
 * While on, each wrapped op's call prints the cycles it took as
 * "OPPROFILE op=<n> cycles=<c>", n counting the calls from 0 (turning it on
 * restarts the count).
 */
void SetOpProfile(bool on);

/* `size` bytes as "OPTRACE <what> <hex>" lines of 32 bytes each. */
void PrintHex(const char* what, const uint8_t* data, size_t size);

}  // namespace tinyml
