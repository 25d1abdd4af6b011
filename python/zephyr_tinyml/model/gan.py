"""Train stage of a GAN spec: a generator and a discriminator trained against each other.

Why a loop of our own rather than ``model.fit``: the two networks take turns on every batch with
their own optimizers, which ``fit`` does not express.  Everything random comes from numpy
generators seeded by ``training.seed`` (latent vectors, shuffling) or from Keras' seeded generator
(dropout), with TF's deterministic kernels, so the same spec trains the same weights.  The loss is
the non-saturating one of the DCGAN paper: the discriminator scores real images against 1 and
generated ones against 0; the generator is trained to make it say 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .data import Dataset, normalize
from ..fileio import write_atomic
from .keras_stack import build_stack
from .spec import Spec
from .train import _keras_object, set_determinism

EpochCallback = Callable[[int, dict[str, float]], None]
SamplesCallback = Callable[[int, np.ndarray], None]  # epoch (1-based), images in [-1, 1]
GRID_VECTORS = 64  # latent vectors of the sample grids, fixed for the whole training


@dataclass
class GanResult:
    """The trained networks and the per-epoch history (generator/discriminator loss, seconds)."""

    generator: Any
    discriminator: Any
    history: dict[str, list[float]]


def latent_vectors(count: int, latent_dim: int, seed: int) -> np.ndarray:
    """``count`` latent vectors from N(0, 1), float32, seeded: the generator's training distribution."""
    return np.random.default_rng(seed).standard_normal((count, latent_dim)).astype(np.float32)


def build_generator(spec: Spec, batch_size: int | None = None) -> Any:
    """The spec's generator stack on a ``latent_dim`` input (batch 1 for conversion)."""
    assert spec.model.gan is not None
    return build_stack(spec.model.gan.generator, (spec.model.gan.latent_dim,), f"{spec.name}_generator", batch_size)


def build_discriminator(spec: Spec) -> Any:
    assert spec.model.gan is not None
    return build_stack(spec.model.gan.discriminator, tuple(spec.dataset.input_shape), f"{spec.name}_discriminator")


def train_gan(spec: Spec, data: Dataset, on_epoch: EpochCallback | None = None,
              on_batch: Callable[[int, int], None] | None = None,
              on_samples: SamplesCallback | None = None) -> GanResult:
    """Train the spec's GAN on ``data.x_train``; ``on_samples`` gets a grid's images every few epochs."""
    import tensorflow as tf

    assert spec.model.gan is not None
    set_determinism(spec.training.seed)
    generator, discriminator = build_generator(spec), build_discriminator(spec)
    g_optimizer = _keras_object("optimizer", spec.training.optimizer)
    d_optimizer = _keras_object("optimizer", spec.training.optimizer)
    loss = _keras_object("loss", spec.training.loss)
    real = normalize(data.x_train, spec.dataset.norm_scale, spec.dataset.norm_offset).reshape((-1,) + tuple(spec.dataset.input_shape))
    latent_dim = spec.model.gan.latent_dim

    @tf.function
    def step(images: Any, z_d: Any, z_g: Any) -> tuple[Any, Any]:
        with tf.GradientTape() as tape:
            fake = generator(z_d, training=True)
            real_logits = discriminator(images, training=True)
            fake_logits = discriminator(fake, training=True)
            d_loss = loss(tf.ones_like(real_logits), real_logits) + loss(tf.zeros_like(fake_logits), fake_logits)
        grads = tape.gradient(d_loss, discriminator.trainable_variables)
        d_optimizer.apply_gradients(zip(grads, discriminator.trainable_variables))
        with tf.GradientTape() as tape:
            fake_logits = discriminator(generator(z_g, training=True), training=True)
            g_loss = loss(tf.ones_like(fake_logits), fake_logits)
        grads = tape.gradient(g_loss, generator.trainable_variables)
        g_optimizer.apply_gradients(zip(grads, generator.trainable_variables))
        return d_loss, g_loss

    rng = np.random.default_rng(spec.training.seed)
    grid_z = latent_vectors(GRID_VECTORS, latent_dim, spec.training.seed + 2)
    batch = spec.training.batch_size
    steps = len(real) // batch  # whole batches only: a last small batch would unbalance the two losses
    history: dict[str, list[float]] = {}
    for epoch in range(spec.training.epochs):
        started = time.perf_counter()
        order = rng.permutation(len(real))
        d_sum = g_sum = 0.0
        for i in range(steps):
            images = real[order[i * batch:(i + 1) * batch]]
            z = rng.standard_normal((2, batch, latent_dim)).astype(np.float32)
            d_loss, g_loss = step(tf.constant(images), tf.constant(z[0]), tf.constant(z[1]))
            d_sum += float(d_loss)
            g_sum += float(g_loss)
            if on_batch and ((i + 1) % 20 == 0 or i + 1 == steps):
                on_batch(i + 1, steps)
        logs = {"generator_loss": g_sum / steps, "discriminator_loss": d_sum / steps,
                "seconds": time.perf_counter() - started}
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
        if on_epoch:
            on_epoch(epoch, logs)
        if on_samples and ((epoch + 1) % spec.training.sample_every == 0 or epoch + 1 == spec.training.epochs):
            on_samples(epoch + 1, np.asarray(generator(grid_z, training=False)))
    return GanResult(generator, discriminator, history)


def to_pixels(images: np.ndarray, spec: Spec) -> np.ndarray:
    """Generated images (real values, the dataset's normalization) -> uint8 pixels, rounded and clipped."""
    pixels = (np.asarray(images, dtype=np.float64) - spec.dataset.norm_offset) / spec.dataset.norm_scale
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def grid_png(path: Path, pixels: np.ndarray, columns: int = 8, captions: list[str] | None = None,
             scale: int = 2) -> None:
    """A grid of grey images as a PNG (Pillow, no timestamps: same pixels, same bytes).

    ``captions`` (one per image, e.g. the classifier's label) are drawn under each image.
    """
    from PIL import Image, ImageDraw

    import io

    count, height, width = pixels.shape[0], pixels.shape[1], pixels.shape[2]
    rows = -(-count // columns)
    pad, caption_h = 2, 12 if captions else 0
    cell_w, cell_h = width * scale + pad, height * scale + pad + caption_h
    canvas = Image.new("L", (columns * cell_w + pad, rows * cell_h + pad), 255)
    draw = ImageDraw.Draw(canvas)
    for n in range(count):
        tile = Image.fromarray(pixels[n].reshape(height, width)).resize((width * scale, height * scale),
                                                                       Image.NEAREST)
        x, y = pad + (n % columns) * cell_w, pad + (n // columns) * cell_h
        canvas.paste(tile, (x, y))
        if captions:
            draw.text((x + 1, y + height * scale), captions[n], fill=0)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=False)
    write_atomic(Path(path), buffer.getvalue())
