"""op_profile: the self test's per-op cycles, named after the model's ops and turned into instructions.

The lines are what zephyr/lib/tinyml/op_trace.cpp prints (the figures are a real qemu_cortex_m3 run
of the committed mnist sources with CMSIS-NN); the Zephyr tier (test_firmware.py) checks that a real
self test prints a profile whose ops add up to its inference.
"""

from __future__ import annotations

from pathlib import Path

from zephyr_tinyml.device.bench import BenchRow, render
from zephyr_tinyml.firmware.op_profile import op_costs, parse_profile, render_ops, to_instructions
from zephyr_tinyml.model.sources import generated_model
from zephyr_tinyml.model.tflite_model import MacCount, count_macs, macs_per_op

MNIST = Path(__file__).resolve().parents[1] / "samples" / "mnist" / "generated"
FIXTURES = Path(__file__).resolve().parent / "fixtures"

RUN = """\
CORRECT classification! 9
OPPROFILE op=0 cycles=1176867
OPPROFILE op=1 cycles=112818
OPPROFILE op=2 cycles=648750
OPPROFILE op=3 cycles=15896
OPPROFILE op=4 cycles=596
OPPROFILE op=5 cycles=27140
OPPROFILE op=6 cycles=2527
SUMMARY correct=10/10 cycles_per_inference=1984705 calibration_cycles=800024 calibration_instructions=1000000
"""
SUMMARY = {"cycles_per_inference": 1984705, "calibration_cycles": 800024, "calibration_instructions": 1000000}


def test_macs_per_op_names_every_op_and_adds_up_to_the_model() -> None:
    tflite = generated_model(MNIST)
    ops = macs_per_op(tflite)
    assert [name for name, _ in ops] == ["CONV_2D", "MAX_POOL_2D", "CONV_2D", "MAX_POOL_2D", "RESHAPE",
                                         "FULLY_CONNECTED", "FULLY_CONNECTED"]
    # 28x28x8 outputs of a 5x5x1 kernel; 13x13x4 of 5x5x8; 144 -> 64; 64 -> 10.
    assert [macs for _, macs in ops] == [156_800, 0, 135_200, 0, 0, 9_216, 640]
    assert sum(macs for _, macs in ops if macs) == count_macs(tflite).total == 301_856
    assert count_macs(tflite).not_counted == ()


def test_profile_lines_become_named_ops_with_instructions() -> None:
    costs = op_costs(generated_model(MNIST), RUN, SUMMARY)
    assert [c.op for c in costs][:3] == ["CONV_2D", "MAX_POOL_2D", "CONV_2D"]
    assert costs[0].cycles == 1_176_867
    assert costs[0].instructions == to_instructions(1_176_867, SUMMARY) == round(1_176_867 * 1_000_000 / 800_024)
    assert round(costs[0].per_mac, 2) == round(costs[0].instructions / 156_800, 2)
    assert costs[1].macs == 0 and costs[1].per_mac == 0.0
    # The ops add up to (a little more than: the wrappers' own calls) nothing beyond the inference.
    assert sum(c.cycles for c in costs) <= SUMMARY["cycles_per_inference"] * 1.01


def test_a_second_profile_or_a_gap_ends_the_first() -> None:
    assert parse_profile(RUN + "OPPROFILE op=0 cycles=5\n") == parse_profile(RUN)
    assert parse_profile("OPPROFILE op=0 cycles=7\nOPPROFILE op=2 cycles=9\n") == [7]
    assert parse_profile("SUMMARY correct=1/1\n") == []


def test_without_calibration_the_cycles_are_the_figure() -> None:
    costs = op_costs(generated_model(MNIST), RUN, {"cycles_per_inference": 1984705})
    assert costs and all(c.instructions == 0 for c in costs)
    assert costs[0].per_mac == 1_176_867 / 156_800
    assert "1,176,867 cycles" in render_ops([("mnist", "nucleo_f446re", "cmsis-nn", costs)], "text")


def test_the_op_table_and_the_bench_json() -> None:
    costs = op_costs(generated_model(MNIST), RUN, SUMMARY)
    table = render_ops([("mnist", "qemu_cortex_m3", "cmsis-nn", costs)], "markdown")
    lines = table.splitlines()
    assert lines[0] == "| model | board | kernels | op | instructions | share | MACs | per MAC | bound |"
    assert len(lines) == 2 + 7
    assert "| 0 CONV_2D | 1,471,040 | 59.3 % |" in lines[2] and "156,800" in lines[2]
    assert lines[2].endswith("| 9.38 | 1 |")        # one MAC per instruction without SIMD
    dsp = render_ops([("mnist", "mps2_an521", "cmsis-nn-dsp", costs)], "text").splitlines()
    assert dsp[1].split()[-1] == "0.5"               # SMLAD: two per instruction
    row = BenchRow("mnist", "qemu_cortex_m3", "cmsis-nn", ops=costs)
    assert '"op": "CONV_2D"' in render([row], "json")



def test_macs_count_lstm_gates_and_batch_matmul() -> None:
    import tensorflow as tf

    # An int8 LSTM over MNIST's 28 rows (tests/fixtures/make_mnist_lstm_fixture.py: Keras 2's fused LSTM,
    # as TFLM's mnist_lstm example makes it), 20 cells: per row 4 gates x (20x28 input + 20x20
    # recurrent) weights; then the 28 steps x 20 outputs -> 10 classes.
    lstm = (FIXTURES / "mnist_lstm_int8.tflite").read_bytes()
    ops = macs_per_op(lstm)
    assert ops[0] == ("UNIDIRECTIONAL_SEQUENCE_LSTM", 28 * 4 * (20 * 28 + 20 * 20))
    dense = [macs for name, macs in ops if name == "FULLY_CONNECTED"]
    assert count_macs(lstm) == MacCount(107_520 + sum(dense)) and dense == [28 * 20 * 10]

    # [2, 3, 8] x [2, 5, 8] transposed: 2 x 3 x 5 outputs of 8 products each.
    @tf.function(input_signature=[tf.TensorSpec((2, 3, 8), tf.float32), tf.TensorSpec((2, 5, 8), tf.float32)])
    def matmul(a, b):
        return tf.linalg.matmul(a, b, transpose_b=True)

    converted = tf.lite.TFLiteConverter.from_concrete_functions([matmul.get_concrete_function()]).convert()
    assert macs_per_op(converted) == [("BATCH_MATMUL", 2 * 3 * 5 * 8)]


def test_an_op_that_multiplies_without_a_count_is_not_counted_rather_than_zero() -> None:
    import tensorflow as tf

    # Keras 3 converts an LSTM layer to a WHILE loop over the time steps: its body's products are
    # not in the main subgraph's ops, so the loop is "not counted" and the dense layer still is.
    keras_model = tf.keras.Sequential([tf.keras.Input((6, 4), batch_size=1), tf.keras.layers.LSTM(3),
                                       tf.keras.layers.Dense(2)])
    loop = tf.lite.TFLiteConverter.from_keras_model(keras_model).convert()
    assert ("WHILE", None) in macs_per_op(loop)
    assert count_macs(loop) == MacCount(3 * 2, ("WHILE",))
    assert str(count_macs(loop)) == "6 (not counted: WHILE)"
