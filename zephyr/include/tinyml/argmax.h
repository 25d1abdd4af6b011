/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The class a classifier's scores pick, for the runtime's apps and for apps that cannot
 * link the runtime (samples/secure_model): one definition, so every app labels alike.
 */
#pragma once

#include <cstdint>

#include "model_settings.h"

namespace tinyml {

/* Index of the largest score, int8 or a 16x8 model's int16 (the first one on ties, like numpy's argmax). */
template <typename Score>
inline int ArgMax(const Score* scores, int count = kNumClasses)
{
	int best = 0;
	for (int i = 1; i < count; i++) {
		if (scores[i] > scores[best]) {
			best = i;
		}
	}
	return best;
}

}  // namespace tinyml
