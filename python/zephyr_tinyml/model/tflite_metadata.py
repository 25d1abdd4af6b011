"""TFLite model metadata (labels, input normalization) written and read with plain ``flatbuffers``.

Why our own small codec: tflite-support, which defined the TFLite metadata schema, had its last
release in July 2023 (no wheels past Python 3.11, protobuf<4, a native extension that links
libusb); MediaPipe's writers, its successor, fail to import in mediapipe 1.2 (a native module the
wheel no longer ships) and pull OpenCV, PortAudio and EGL.  We need five tables of that schema,
so we encode them ourselves, field slot for field slot as ``metadata_schema.fbs`` (file identifier
``M001``) declares, and edit the model with the TFLite schema module that LiteRT ships.  Models
whose metadata tflite-support 0.4.4 wrote are read the same way (tests/fixtures holds one).

Layout, as tflite-support lays it out: the ModelMetadata flatbuffer is a model buffer named by a
``Metadata`` entry ``TFLITE_METADATA``; associated files (``labels.txt``) are a zip archive
appended to the model.  The model is repacked through the schema's object API, then re-serialized
by TFLM's own aligner so every weight buffer keeps the 16-byte alignment the converter gave it.
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import flatbuffers
import numpy as np
from flatbuffers import number_types as N
from flatbuffers.table import Table

from ..errors import ModelError

METADATA_NAME = "TFLITE_METADATA"
METADATA_IDENTIFIER = b"M001"
LABELS_FILE = "labels.txt"
# The oldest metadata parser that understands every field written here (names, descriptions,
# image/feature content, normalization, stats, TENSOR_AXIS_LABELS files): schema version 1.0.0.
MIN_PARSER_VERSION = "1.0.0"

# Enum values of metadata_schema.fbs.
_TENSOR_AXIS_LABELS = 2
_COLOR_RGB, _COLOR_GRAYSCALE = 1, 2
_CONTENT_FEATURE, _CONTENT_IMAGE = 1, 2
_UNIT_NORMALIZATION = 1


@dataclass(frozen=True)
class ClassifierMetadata:
    """What an image classifier's metadata says: its labels and how pixels become inputs.

    ``mean``/``std`` follow the schema's NormalizationOptions: ``input = (pixel - mean) / std``,
    one value for all channels or one per channel.
    """

    name: str
    description: str = ""
    labels: tuple[str, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    channels: int = 1
    input_name: str = "image"
    output_name: str = "probability"
    extra: dict[str, str] = field(default_factory=dict, compare=False)


# ----------------------------------------------------------------------------------------- write

def _string(builder: flatbuffers.Builder, text: str) -> int:
    return builder.CreateString(text)


def _table(builder: flatbuffers.Builder, fields: list[tuple[int, str, object]]) -> int:
    """A table from ``(slot, kind, value)``: kind 'off' (offset), 'u8', 'u32'."""
    builder.StartObject(max((slot for slot, _, _ in fields), default=-1) + 1)
    for slot, kind, value in fields:
        if kind == "off":
            builder.PrependUOffsetTRelativeSlot(slot, value, 0)
        elif kind == "u8":
            builder.PrependUint8Slot(slot, value, 0)
        elif kind == "u32":
            builder.PrependUint32Slot(slot, value, 0)
    return builder.EndObject()


def _offsets(builder: flatbuffers.Builder, items: list[int]) -> int:
    builder.StartVector(4, len(items), 4)
    for item in reversed(items):
        builder.PrependUOffsetTRelative(item)
    return builder.EndVector()


def _floats(builder: flatbuffers.Builder, values: tuple[float, ...]) -> int:
    builder.StartVector(4, len(values), 4)
    for value in reversed(values):
        builder.PrependFloat32(float(value))
    return builder.EndVector()


def _stats(builder: flatbuffers.Builder, low: tuple[float, ...], high: tuple[float, ...]) -> int:
    high_vec, low_vec = _floats(builder, high), _floats(builder, low)
    return _table(builder, [(0, "off", high_vec), (1, "off", low_vec)])  # Stats {max, min}


def encode_metadata(meta: ClassifierMetadata) -> bytes:
    """The ``ModelMetadata`` flatbuffer (identifier ``M001``) for an image classifier."""
    b = flatbuffers.Builder(1024)
    # Input tensor: image content, normalization, and the value range the normalization gives.
    color = _COLOR_RGB if meta.channels == 3 else _COLOR_GRAYSCALE
    image_props = _table(b, [(0, "u8", color)])
    content_in = _table(b, [(0, "u8", _CONTENT_IMAGE), (1, "off", image_props)])
    unit = None
    stats_in = None
    if meta.mean and meta.std:
        norm = _table(b, [(0, "off", _floats(b, meta.mean)), (1, "off", _floats(b, meta.std))])
        unit = _table(b, [(0, "u8", _UNIT_NORMALIZATION), (1, "off", norm)])
        low = tuple((0.0 - m) / s for m, s in zip(meta.mean, meta.std))
        high = tuple((255.0 - m) / s for m, s in zip(meta.mean, meta.std))
        stats_in = _stats(b, low, high)
    in_fields = [(0, "off", _string(b, meta.input_name)),
                 (1, "off", _string(b, "Input image to be classified.")),
                 (3, "off", content_in)]
    if unit is not None:
        in_fields.append((4, "off", _offsets(b, [unit])))
        in_fields.append((5, "off", stats_in))
    tensor_in = _table(b, in_fields)

    # Output tensor: one score per label, labels in an associated file.
    feature = _table(b, [])
    content_out = _table(b, [(0, "u8", _CONTENT_FEATURE), (1, "off", feature)])
    out_fields = [(0, "off", _string(b, meta.output_name)),
                  (1, "off", _string(b, "Scores of the labels respectively.")),
                  (3, "off", content_out)]
    if meta.labels:
        labels_file = _table(b, [(0, "off", _string(b, LABELS_FILE)),
                                 (1, "off", _string(b, "Labels for categories that the model can recognize.")),
                                 (2, "u8", _TENSOR_AXIS_LABELS)])
        out_fields.append((6, "off", _offsets(b, [labels_file])))
    tensor_out = _table(b, out_fields)

    subgraph = _table(b, [(2, "off", _offsets(b, [tensor_in])), (3, "off", _offsets(b, [tensor_out]))])
    model_fields = [(0, "off", _string(b, meta.name))]
    if meta.description:
        model_fields.append((1, "off", _string(b, meta.description)))
    model_fields += [(3, "off", _offsets(b, [subgraph])), (7, "off", _string(b, MIN_PARSER_VERSION))]
    b.Finish(_table(b, model_fields), file_identifier=METADATA_IDENTIFIER)
    return bytes(b.Output())


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _align(flatbuffer: bytes) -> bytes:
    """Re-serialize with TFLM's C++ aligner (16-byte aligned weight buffers, as the converter had)."""
    from tflite_micro.tensorflow.lite.micro.tools import tflite_flatbuffer_align_wrapper as aligner

    with tempfile.TemporaryDirectory() as folder:
        src, dst = Path(folder) / "in.tflite", Path(folder) / "out.tflite"
        src.write_bytes(flatbuffer)
        aligner.align_tflite_model(os.fspath(src), os.fspath(dst))
        return dst.read_bytes()


def _zip(files: dict[str, bytes]) -> bytes:
    """A zip archive of ``files`` with fixed timestamps, so the model bytes are reproducible."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in sorted(files.items()):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return out.getvalue()


def write_metadata(tflite: bytes, meta: ClassifierMetadata) -> bytes:
    """``tflite`` with ``meta`` as its TFLite metadata (any earlier metadata is replaced)."""
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    model.buffers = model.buffers or []
    data = np.frombuffer(encode_metadata(meta), dtype=np.uint8)
    existing = [m for m in (model.metadata or []) if _text(m.name) == METADATA_NAME]
    if existing:  # rewrite in place: the same buffer index, so a rewrite is idempotent
        model.buffers[existing[0].buffer].data = data
    else:
        buffer = schema.BufferT()
        buffer.data = data
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = METADATA_NAME
        entry.buffer = len(model.buffers) - 1
        model.metadata = list(model.metadata or []) + [entry]
    builder = flatbuffers.Builder(len(tflite) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    packed = _align(bytes(builder.Output()))
    if not meta.labels:
        return packed
    labels = "".join(f"{label}\n" for label in meta.labels).encode("utf-8")
    return packed + _zip({LABELS_FILE: labels})


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value or "")


# ------------------------------------------------------------------------------------------ read

class _Reader:
    """Field access by slot on a flatbuffers table (the schema's field order gives the slot)."""

    def __init__(self, buf: bytes, pos: int):
        self.tab = Table(bytearray(buf), pos)

    def _offset(self, slot: int) -> int:
        return self.tab.Offset(4 + 2 * slot)

    def string(self, slot: int) -> str:
        o = self._offset(slot)
        return self.tab.String(o + self.tab.Pos).decode("utf-8") if o else ""

    def u8(self, slot: int) -> int:
        o = self._offset(slot)
        return self.tab.Get(N.Uint8Flags, o + self.tab.Pos) if o else 0

    def table(self, slot: int) -> "_Reader | None":
        o = self._offset(slot)
        return _Reader(self.tab.Bytes, self.tab.Indirect(o + self.tab.Pos)) if o else None

    def tables(self, slot: int) -> list["_Reader"]:
        o = self._offset(slot)
        if not o:
            return []
        start, count = self.tab.Vector(o), self.tab.VectorLen(o)
        return [_Reader(self.tab.Bytes, self.tab.Indirect(start + 4 * i)) for i in range(count)]

    def floats(self, slot: int) -> tuple[float, ...]:
        o = self._offset(slot)
        if not o:
            return ()
        start, count = self.tab.Vector(o), self.tab.VectorLen(o)
        return tuple(float(self.tab.Get(N.Float32Flags, start + 4 * i)) for i in range(count))


def metadata_buffer(tflite: bytes) -> bytes | None:
    """The raw ModelMetadata flatbuffer of ``tflite``, or None when it has none."""
    schema = _schema()
    model = schema.Model.GetRootAs(bytearray(tflite), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if _text(entry.Name()) != METADATA_NAME:
            continue
        buffer = model.Buffers(entry.Buffer())
        if buffer.Offset() > 1:  # data stored after the flatbuffer (models over 2 GB)
            return bytes(tflite[buffer.Offset():buffer.Offset() + buffer.Size()])
        return bytes(buffer.DataAsNumpy().tobytes()) if buffer.DataLength() else None
    return None


def associated_files(tflite: bytes) -> dict[str, bytes]:
    """Files packed in the zip archive appended to the model (empty when there is none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(tflite)) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    except zipfile.BadZipFile:
        return {}


def read_metadata(tflite: bytes, origin: str = "<model>") -> ClassifierMetadata | None:
    """The classifier metadata of ``tflite`` (ours or tflite-support's), or None if it has none."""
    raw = metadata_buffer(tflite)
    if raw is None:
        return None
    if raw[4:8] != METADATA_IDENTIFIER:
        raise ModelError(f"{origin}: its {METADATA_NAME} buffer is not TFLite metadata (no 'M001' "
                         f"identifier); rewrite the metadata or strip it.")
    root = _Reader(raw, N.UOffsetTFlags.py_type(int.from_bytes(raw[:4], "little")))
    files = associated_files(tflite)
    subgraphs = root.tables(3)
    inputs = subgraphs[0].tables(2) if subgraphs else []
    outputs = subgraphs[0].tables(3) if subgraphs else []
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    channels = 1
    input_name = output_name = ""
    if inputs:
        tensor = inputs[0]
        input_name = tensor.string(0)
        content = tensor.table(3)
        if content is not None and content.u8(0) == _CONTENT_IMAGE:
            props = content.table(1)
            channels = 3 if props is not None and props.u8(0) == _COLOR_RGB else 1
        for unit in tensor.tables(4):
            if unit.u8(0) == _UNIT_NORMALIZATION and unit.table(1) is not None:
                options = unit.table(1)
                mean, std = options.floats(0), options.floats(1)
    labels: tuple[str, ...] = ()
    if outputs:
        output_name = outputs[0].string(0)
        for entry in outputs[0].tables(6):
            name = entry.string(0)
            if entry.u8(2) == _TENSOR_AXIS_LABELS and name in files:
                text = files[name].decode("utf-8")
                labels = tuple(line for line in text.splitlines() if line)
    return ClassifierMetadata(name=root.string(0), description=root.string(1), labels=labels, mean=mean,
                              std=std, channels=channels, input_name=input_name, output_name=output_name,
                              extra={"min_parser_version": root.string(7)})
