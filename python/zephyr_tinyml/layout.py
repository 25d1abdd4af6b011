"""Where things are: the repository's apps, and the folder a model's outputs go to.

Stated once, for the command layer and the library alike.
"""

from __future__ import annotations

from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
# The generic app: runs any generated model (TINYML_MODEL_DIR) and checks it against host TFLM.
SAMPLE_APP = REPOSITORY / "samples" / "run_model"
# The evaluation app: answers test inputs streamed over the console UART (docs/protocol.md).
EVAL_APP = REPOSITORY / "samples" / "mnist_eval"
# The non-secure app of a secure model (`tinyml build --secure`; the model runs in a TF-M partition).
SECURE_APP = REPOSITORY / "samples" / "secure_model"
# The board a command builds for when none is named: QEMU's Cortex-M3, which every Zephyr release has.
DEFAULT_BOARD = "qemu_cortex_m3"


def work_dir(name: str, given: str | Path | None = None) -> Path:
    """``given`` (``--work-dir``), else ./build/tinyml/<model>: where a model's cache, sources and builds go."""
    return Path(given) if given else Path.cwd() / "build" / "tinyml" / name
