"""Tests of jaxspike.augment (keyed affine + elastic distortions)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxspike import augment, data


@pytest.fixture(scope="module")
def digits():
    return data.load("mnist5k", "test").images[::100][:6]


def test_shape_range_and_same_key_same_images(digits):
    key = jax.random.key(3)
    a = np.asarray(augment.distort_images(key, digits))
    b = np.asarray(augment.distort_images(key, digits))
    c = np.asarray(augment.distort_images(jax.random.key(4), digits))
    assert a.shape == digits.shape and a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).mean() > 0.01
    # Image i depends on (key, i) only: a prefix gives the same images.
    np.testing.assert_array_equal(np.asarray(augment.distort_images(key, digits[:2])), a[:2])


def _centre_of_mass(images):
    h, w = images.shape[1:3]
    mass = images.sum((1, 2, 3))
    cy = (images.sum((2, 3)) * np.arange(h)).sum(1) / mass
    cx = (images.sum((1, 3)) * np.arange(w)).sum(1) / mass
    return np.stack([cy, cx], 1)


def test_zero_distortion_is_identity_and_shift_is_bounded(digits):
    key = jax.random.key(0)
    same = augment.distort_images(key, digits, rotate_deg=0, zoom=0, shift=0, alpha=0)
    np.testing.assert_allclose(np.asarray(same), digits, atol=1e-6)
    # Shift only: the ink moves rigidly by the drawn offset, at most 2 px per axis, and not by zero.
    moved = np.asarray(augment.distort_images(key, digits, rotate_deg=0, zoom=0, shift=2.0, alpha=0))
    delta = _centre_of_mass(moved) - _centre_of_mass(digits)
    assert np.all(np.abs(delta) <= 2.05), delta
    assert np.abs(delta).max() > 0.3, delta
    np.testing.assert_allclose(moved.sum((1, 2, 3)), digits.sum((1, 2, 3)), rtol=0.05)


def test_distortions_keep_digits_recognisable_but_moved(digits):
    out = np.asarray(augment.distort_images(jax.random.key(1), digits))
    for a, b in zip(out, digits):
        # Moved: not the same image; recognisable: still far closer to its own digit than to the others.
        assert np.abs(a - b).mean() > 0.01
        own = np.corrcoef(a.ravel(), b.ravel())[0, 1]
        assert own > 0.3
    # Ink is roughly preserved (zoom of ±10% changes area by at most ~21%).
    np.testing.assert_allclose(out.sum((1, 2, 3)), digits.sum((1, 2, 3)), rtol=0.35)


def test_jit_matches_eager(digits):
    key = jax.random.key(5)
    eager = augment.distort_images(key, digits)
    jitted = jax.jit(augment.distort_images)(key, jnp.asarray(digits))
    np.testing.assert_allclose(np.asarray(eager), np.asarray(jitted), atol=1e-5)


@pytest.mark.parametrize(
    "images, kwargs, message",
    [
        (np.zeros((28, 28, 1), np.float32), {}, "[N, H, W, C]"),
        (np.zeros((2, 28, 28, 1), np.float32), {"rotate_deg": -1.0}, "rotate_deg"),
        (np.zeros((2, 28, 28, 1), np.float32), {"zoom": 1.0}, "zoom"),
        (np.zeros((2, 28, 28, 1), np.float32), {"alpha": float("nan")}, "alpha"),
        (np.zeros((2, 28, 28, 1), np.float32), {"sigma": 0.0}, "sigma"),
        (np.zeros((2, 8, 8, 1), np.float32), {"sigma": 3.0}, "too wide"),
    ],
)
def test_bad_arguments_raise(images, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        augment.distort_images(jax.random.key(0), images, **kwargs)
