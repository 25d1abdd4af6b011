"""``tinyml survey``: many model files, one row each; a refusal is a row, not the end of the run."""

from __future__ import annotations

from pathlib import Path

import pytest

from zephyr_tinyml.firmware.survey import SurveyRow, first_sentence, model_files, render, survey_one

FIXTURES = Path(__file__).parent / "fixtures"


def test_first_sentence_keeps_the_reason_and_drops_the_advice() -> None:
    assert first_sentence("x.tflite: the model's input is float32; it runs int8. Quantize it first.") == \
        "x.tflite: the model's input is float32; it runs int8."
    assert first_sentence("one line without a stop\nsecond line") == "one line without a stop"


def test_model_files_lists_a_folder_and_keeps_named_files(tmp_path: Path) -> None:
    for name in ("b.tflite", "a.tflite", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    named = tmp_path / "elsewhere.keras"
    assert model_files([tmp_path, named]) == [tmp_path / "a.tflite", tmp_path / "b.tflite", named]


def test_a_refused_model_is_a_row_quoting_the_refusal(tmp_path: Path) -> None:
    import tensorflow as tf
    import keras

    model = keras.Sequential([keras.Input((4,), batch_size=1), keras.layers.Dense(2)])
    path = tmp_path / "float_model.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    row = survey_one(path, ["qemu_cortex_m3"], None, tmp_path / "work")
    assert row.status == "refused" and row.outcome.startswith("refused: ")
    assert "input is float32" in row.outcome and not row.flash


def test_render_markdown_escapes_pipes() -> None:
    row = SurveyRow(model="m.tflite", size=1234, io="int8 [1, 4] -> int8 [1, 2]", ops="FULLY_CONNECTED",
                    data="10 seeded random inputs", outcome="refused: a | b", status="refused")
    text = render([row], "markdown")
    assert "| m.tflite | 1,234 |" in text and "a \\| b" in text
    with pytest.raises(ValueError):
        render([row], "yaml")
