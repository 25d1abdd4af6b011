"""Training-curve and confusion-matrix PNGs (matplotlib, headless Agg backend).

Images are rendered to memory and written atomically, like every other output.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..fileio import write_atomic


def _figure_bytes(fig) -> bytes:  # noqa: ANN001 - matplotlib Figure
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def training_curve(history: dict[str, list[float]], path: Path, title: str) -> None:
    """Loss and accuracy per epoch (with validation curves when present)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "generator_loss" in history:  # a GAN: the two networks' losses side by side
        panels = (("generator_loss", "generator loss"), ("discriminator_loss", "discriminator loss"))
    else:
        panels = (("loss", "loss"), ("accuracy", "accuracy"))
    epochs = np.arange(1, len(history.get(panels[0][0], [])) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for (key, name), axis in zip(panels, axes):
        axis.plot(epochs, history.get(key, []), label="train")
        if f"val_{key}" in history:
            axis.plot(epochs, history[f"val_{key}"], label="validation")
        axis.set_xlabel("epoch")
        axis.set_ylabel(name)
        axis.grid(alpha=0.3)
        axis.legend()
    fig.suptitle(title)
    write_atomic(path, _figure_bytes(fig))
    plt.close(fig)


def confusion_plot(matrix: np.ndarray, labels: tuple[str, ...], path: Path, title: str) -> None:
    """Counts per (true, predicted) class, annotated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(5.2, 4.6))
    axis.imshow(np.log1p(matrix), cmap="Blues")
    ticks = np.arange(len(labels))
    axis.set_xticks(ticks, labels)
    axis.set_yticks(ticks, labels)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    threshold = np.log1p(matrix).max() / 2
    for (row, col), count in np.ndenumerate(matrix):
        if count:
            axis.text(col, row, str(count), ha="center", va="center", fontsize=7,
                      color="white" if np.log1p(count) > threshold else "black")
    axis.set_title(title)
    write_atomic(path, _figure_bytes(fig))
    plt.close(fig)
