"""TFLite metadata written with plain flatbuffers: round trip, determinism, alignment, and models
whose metadata tflite-support 0.4.4 wrote (tests/fixtures, made by make_tflite_support_fixture.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zephyr_tinyml.model.tflite_metadata import (ClassifierMetadata, associated_files, encode_metadata,
                                           read_metadata, write_metadata)
from zephyr_tinyml.model.tflite_model import inspect_model

FIXTURE = Path(__file__).parent / "fixtures" / "tflite_support_0_4_4_classifier.tflite"


@pytest.fixture(scope="module")
def plain() -> bytes:
    """The fixture's model without any metadata (we strip it by rewriting from the schema)."""
    from ai_edge_litert import schema_py_generated as schema
    import flatbuffers

    model = schema.ModelT.InitFromPackedBuf(bytearray(FIXTURE.read_bytes()), 0)
    model.metadata = [m for m in model.metadata if m.name not in (b"TFLITE_METADATA", "TFLITE_METADATA")]
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_reads_metadata_written_by_tflite_support_0_4_4():
    meta = read_metadata(FIXTURE.read_bytes())
    assert meta is not None
    assert meta.labels == ("cat", "dog", "bird")
    assert meta.mean == (127.5,) and meta.std == (127.5,)
    assert meta.name == "ImageClassifier" and meta.input_name == "image" and meta.output_name == "probability"
    assert meta.extra["min_parser_version"] == "1.0.0"
    assert inspect_model(FIXTURE.read_bytes()).labels == ("cat", "dog", "bird")


def test_round_trip_is_exact_deterministic_and_idempotent(plain: bytes):
    meta = ClassifierMetadata(name="tiny", description="three classes", labels=("cat", "dog", "bird"),
                              mean=(127.5,), std=(127.5,), channels=3)
    assert read_metadata(plain) is None
    once = write_metadata(plain, meta)
    assert read_metadata(once) == meta
    assert write_metadata(plain, meta) == once            # same inputs, same bytes
    assert write_metadata(once, meta) == once             # rewriting replaces, never stacks
    assert associated_files(once) == {"labels.txt": b"cat\ndog\nbird\n"}
    other = write_metadata(once, ClassifierMetadata(name="tiny", labels=("a", "b", "c")))
    assert read_metadata(other).labels == ("a", "b", "c")


def test_written_model_runs_identically_with_aligned_buffers(plain: bytes):
    from ai_edge_litert import schema_py_generated as schema
    from tflite_micro.python.tflite_micro import runtime

    labelled = write_metadata(plain, ClassifierMetadata(name="tiny", labels=("cat", "dog", "bird")))
    image = (np.arange(64, dtype=np.int16) * 3 - 100).astype(np.int8).reshape(1, 8, 8, 1)
    outputs = []
    for model in (plain, labelled):
        interpreter = runtime.Interpreter.from_bytes(model)
        interpreter.set_input(image, 0)
        interpreter.invoke()
        outputs.append(np.array(interpreter.get_output(0)))
    np.testing.assert_array_equal(outputs[0], outputs[1])
    root = schema.Model.GetRootAs(bytearray(labelled), 0)
    for i in range(root.BuffersLength()):
        buffer = root.Buffers(i)
        if buffer.DataLength() > 16:   # weights: TFLM reads them in place, 16-byte aligned
            assert buffer._tab.Vector(buffer._tab.Offset(4)) % 16 == 0, i


def test_metadata_flatbuffer_has_the_schema_identifier():
    raw = encode_metadata(ClassifierMetadata(name="m", labels=("x",)))
    assert raw[4:8] == b"M001"


def test_a_foreign_buffer_named_like_metadata_is_refused(plain: bytes):
    from ai_edge_litert import schema_py_generated as schema
    import flatbuffers

    from zephyr_tinyml.errors import ModelError

    model = schema.ModelT.InitFromPackedBuf(bytearray(plain), 0)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(b"not metadata at all", dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = "TFLITE_METADATA", len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    with pytest.raises(ModelError, match="is not TFLite metadata"):
        read_metadata(bytes(builder.Output()), "odd.tflite")
