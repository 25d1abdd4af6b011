"""Reading a model back from its generated sources: the bytes the firmware compiles in.

Why: a check that has only the generated folder (twister, the op trace, a committed sample) can
then use exactly the model the device runs, with no work folder or ``.tflite`` at hand; and a
build can reuse the committed model instead of training another one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..fileio import sha256_bytes
from .arena import FACTS


def model_from_sources(model_data_cc: Path) -> bytes:
    """The model array of a generated ``model_data.cc``, as bytes."""
    text = Path(model_data_cc).read_text()
    start, end = text.find("{", text.find("model_data[]")), text.find("};")
    if start < 0 or end < start:
        raise ValueError(f"{model_data_cc} holds no model array")
    return bytes(int(token, 16) for token in re.findall(r"0x([0-9a-fA-F]{2})", text[start:end]))


def generated_facts(folder: Path) -> dict[str, Any]:
    """``tinyml_model.json`` of a generated folder."""
    return json.loads((Path(folder) / FACTS).read_text())


def generated_model(folder: Path, remedy: str = "regenerate with `west tinyml build`") -> bytes:
    """The ``.tflite`` compiled into the image: ``model_data.cc``'s bytes, checked against the facts file.

    ``remedy`` ends the error message: what the caller's user should do (regenerate, restore the
    committed folder, retrain...).
    """
    folder = Path(folder)
    source, facts_file = folder / "model_data.cc", folder / FACTS
    try:
        model, facts = model_from_sources(source), generated_facts(folder)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read the generated model in {folder} ({err}): {remedy}") from None
    if sha256_bytes(model) != facts.get("model_sha256"):
        raise ModelError(f"{source} does not hold the model {facts_file} describes (sha256 differs): {remedy}")
    return model
