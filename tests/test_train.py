"""Train stage pieces that can be checked without a full training run."""

from __future__ import annotations

import numpy as np

from zephyr_tinyml.train import shift_images


def test_shift_moves_pixels_and_fills_zero():
    image = np.zeros((1, 5, 5, 1), np.uint8)
    image[0, 2, 2, 0] = 255
    rng = np.random.default_rng(0)
    shifted = shift_images(np.repeat(image, 200, axis=0), 1, rng)
    assert shifted.shape == (200, 5, 5, 1) and shifted.dtype == np.uint8
    assert (shifted.reshape(200, -1) == 255).sum(axis=1).tolist() == [1] * 200  # pixel kept, moved by <= 1
    ys, xs = np.nonzero(shifted[:, :, :, 0] == 255)[1:]
    assert set(ys) <= {1, 2, 3} and set(xs) <= {1, 2, 3} and len(set(zip(ys, xs))) == 9


def test_shift_is_seeded():
    images = np.random.default_rng(1).integers(0, 255, (50, 28, 28, 1), dtype=np.uint8)
    a = shift_images(images, 2, np.random.default_rng(7))
    b = shift_images(images, 2, np.random.default_rng(7))
    assert np.array_equal(a, b) and not np.array_equal(a, images)


def test_zero_shift_is_identity():
    images = np.ones((3, 4, 4, 1), np.uint8)
    assert shift_images(images, 0, np.random.default_rng(0)) is images
