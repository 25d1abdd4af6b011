/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * Under QEMU icount every instruction takes 2^shift ns of emulated time, so the cycle
 * counter measures instructions, but it runs at the clock QEMU gives the board, which need
 * not be the one Zephyr assumes (QEMU's lm3s6965evb runs at 12.5 MHz where Zephyr 3.4
 * configures 12 MHz for qemu_cortex_m3; its mps2-an521 at 20 MHz and mps3-an547 at 32 MHz
 * where Zephyr says 25 MHz), and then microseconds / 0.064 would be off by that ratio. So a
 * self test times a loop of a known number of instructions (SUBS + BNE per pass) and prints
 * both figures ("calibration_cycles=... calibration_instructions=..."): the host turns
 * cycles into instructions with them.
 */
#pragma once

#include <cstdint>

#include <zephyr/kernel.h>

#if defined(CONFIG_QEMU_ICOUNT) && defined(__arm__)
#define TINYML_ICOUNT_CALIBRATION 1

namespace tinyml {

constexpr uint32_t kCalibrationPasses = 500000;
constexpr uint32_t kCalibrationInstructions = 2 * kCalibrationPasses;

/* Cycles that kCalibrationInstructions instructions take. */
inline uint32_t CalibrationCycles()
{
	uint32_t passes = kCalibrationPasses;
	const uint32_t start = k_cycle_get_32();
#if defined(__thumb__) && !defined(__thumb2__)
	/* Thumb-1 (Cortex-M0): GCC's inline assembly is in divided syntax, where SUB sets the flags. */
	__asm__ volatile("1: sub %0, #1\n\tbne 1b" : "+l"(passes) : : "cc");
#else
	__asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+l"(passes) : : "cc");
#endif
	return k_cycle_get_32() - start;
}

}  // namespace tinyml
#endif
