"""Train stage pieces that can be checked without a full training run."""

from __future__ import annotations

import numpy as np

from zephyr_tinyml.model.train import affine_images, shift_images


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


def test_affine_without_motion_is_identity(mnist):
    images = mnist.x_train[:64]
    out = affine_images(images, 0, 0, 0, np.random.default_rng(0))
    assert out.shape == images.shape and np.array_equal(out, images.astype(np.float32))


def test_affine_whole_pixel_shift_matches_a_numpy_roll():
    """A pure shift through the TF transform lands where the arithmetic says (sign conventions)."""
    image = np.zeros((1, 9, 9, 1), np.uint8)
    image[0, 4, 4, 0] = 200

    class FixedShift:  # the generator's draws: angle 0, scale 1, tx = +2, ty = -1
        def __init__(self):
            self.draws = iter([[0.0], [1.0], [2.0], [-1.0]])

        def uniform(self, low, high, n):
            return np.array(next(self.draws))

    out = affine_images(image, 2, 0, 0, FixedShift())
    assert np.argwhere(out[0, :, :, 0] == 200).tolist() == [[3, 6]]  # row 4-1, column 4+2


def test_affine_rotation_keeps_ink_and_is_seeded(mnist):
    images = mnist.x_train[:256]
    a = affine_images(images, 2, 12, 0.1, np.random.default_rng(3))
    b = affine_images(images, 2, 12, 0.1, np.random.default_rng(3))
    assert np.array_equal(a, b) and not np.array_equal(a, images.astype(np.float32))
    ink_before = images.reshape(256, -1).sum(1).astype(float)
    ratio = a.reshape(256, -1).sum(1) / ink_before
    assert 0.75 < ratio.min() and ratio.max() < 1.3  # zoom <= 10 % changes area by <= 21 %; digits stay in frame
