"""A made-up stand-in for CIFAR-10: 32×32 RGB images of 10 learnable classes, in Keras' cifar10.npz form.

Why: CIFAR-10 cannot be downloaded on the machines this repository is built on, yet the CIFAR-10
specs must still be trained, quantized, verified and run on the device.  Each class is a colour and
a stripe orientation with a random phase, plus noise: a network learns it in an epoch or two, so
the pipeline's stages and the device's bit-exactness are exercised, but an accuracy measured on it
says nothing about CIFAR-10.  The zoo's cifar10_* sources (samples/zoo) were generated from it:

    python tests/synthetic_cifar.py DIR && tinyml build cifar10_dscnn --data-dir DIR --offline
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ABOUT = "made-up images (tests/synthetic_cifar.py), not CIFAR-10: accuracy on them means nothing"


def synthetic_cifar(train: int = 2000, test: int = 500, seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays shaped as ``keras.datasets.cifar10.load_data()`` gives them (labels N×1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    colours = rng.uniform(40, 215, (10, 3)).astype(np.float32)
    angles = np.linspace(0, np.pi, 10, endpoint=False)

    def make(count: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.integers(0, 10, count)
        phase = rng.uniform(0, 2 * np.pi, count).astype(np.float32)
        images = np.empty((count, 32, 32, 3), np.float32)
        for i, (label, p) in enumerate(zip(labels, phase)):
            wave = np.sin((xx * np.cos(angles[label]) + yy * np.sin(angles[label])) * 0.6 + p)
            images[i] = colours[label] + 40.0 * wave[..., None]
        images += rng.normal(0, 25, images.shape)
        return np.clip(np.round(images), 0, 255).astype(np.uint8), labels.astype(np.uint8)[:, None]

    x_train, y_train = make(train)
    x_test, y_test = make(test)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test, "about": np.asarray(ABOUT)}


def write(folder: Path) -> Path:
    """``folder/cifar10.npz`` (where ``--data-dir folder`` finds it for ``dataset.name: cifar10``)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "cifar10.npz"
    np.savez_compressed(path, **synthetic_cifar())
    return path


if __name__ == "__main__":
    print(write(Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
