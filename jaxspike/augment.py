"""Random, keyed distortions of images for enlarging a training set.

:func:`distort_images` moves every image by its own random affine map
(rotation, zoom, shift about the centre) followed by an elastic distortion:
a random displacement field, uniform in [-1, 1] per pixel, smoothed by a
Gaussian of width ``sigma`` and scaled by ``alpha`` (Simard, Steinkraus &
Platt 2003, "Best practices for convolutional neural networks applied to
visual document analysis", ICDAR). The image is resampled at the displaced
coordinates by bilinear interpolation, zero outside, and clipped to [0, 1].

:func:`translate` shifts each image by a random whole number of pixels, a
differentiable augmentation a discriminator can be trained through
(DiffAugment, Zhao et al. 2020, "Differentiable augmentation for
data-efficient GAN training").

Pure JAX: the same key gives the same images on any backend, and the whole
batch is one vmapped, jit-able computation.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy import ndimage

__all__ = ["distort_images", "translate"]


def _gaussian_kernel(sigma: float) -> jax.Array:
    radius = int(4.0 * sigma + 0.5)
    x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    k = jnp.exp(-0.5 * (x / sigma) ** 2)
    return k / jnp.sum(k)


def _smooth(field: jax.Array, kernel: jax.Array) -> jax.Array:
    """Separable Gaussian smoothing of a 2-D field, edges mirrored."""
    r = (kernel.shape[0] - 1) // 2
    padded = jnp.pad(field, r, mode="symmetric")
    rows = jax.vmap(lambda v: jnp.convolve(v, kernel, mode="valid"))(padded)
    return jax.vmap(lambda v: jnp.convolve(v, kernel, mode="valid"), in_axes=1, out_axes=1)(rows)


def _distort_one(key, image, rotate_deg, zoom, shift, alpha, kernel):
    h, w, _ = image.shape
    k_rot, k_zoom, k_shift, k_dy, k_dx = jax.random.split(key, 5)
    angle = jnp.deg2rad(jax.random.uniform(k_rot, (), minval=-rotate_deg, maxval=rotate_deg))
    scale = 1.0 + jax.random.uniform(k_zoom, (), minval=-zoom, maxval=zoom)
    ty, tx = jax.random.uniform(k_shift, (2,), minval=-shift, maxval=shift)
    yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32), indexing="ij")
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    # Output pixel (y, x) reads the input at the inverse-mapped point.
    c, s = jnp.cos(angle) / scale, jnp.sin(angle) / scale
    dy, dx = yy - cy - ty, xx - cx - tx
    src_y = c * dy - s * dx + cy
    src_x = s * dy + c * dx + cx
    if kernel is not None:
        src_y = src_y + alpha * _smooth(jax.random.uniform(k_dy, (h, w), minval=-1.0, maxval=1.0), kernel)
        src_x = src_x + alpha * _smooth(jax.random.uniform(k_dx, (h, w), minval=-1.0, maxval=1.0), kernel)
    resample = lambda plane: ndimage.map_coordinates(plane, [src_y, src_x], order=1, mode="constant", cval=0.0)
    out = jax.vmap(resample, in_axes=-1, out_axes=-1)(image)
    return jnp.clip(out, 0.0, 1.0)


def distort_images(
    key: jax.Array,
    images: jax.Array,
    *,
    rotate_deg: float = 12.0,
    zoom: float = 0.1,
    shift: float = 2.0,
    alpha: float = 6.0,
    sigma: float = 3.0,
) -> jax.Array:
    """``[N, H, W, C]`` images in [0, 1], each randomly distorted; same shape and range.

    Per image: rotation uniform in ``±rotate_deg`` degrees, zoom factor
    uniform in ``1 ± zoom``, shift uniform in ``±shift`` pixels on each axis,
    then an elastic displacement of strength ``alpha`` pixels smoothed over
    ``sigma`` pixels (``alpha=0`` = affine only). Image ``i`` uses
    ``fold_in(key, i)``, so a prefix of the batch does not depend on its length.
    The defaults keep MNIST digits legible (they were checked by eye on mnist5k).
    """
    if images.ndim != 4:
        raise ValueError(f"distort_images expects [N, H, W, C] images, got shape {tuple(images.shape)}")
    for name, value in (("rotate_deg", rotate_deg), ("zoom", zoom), ("shift", shift), ("alpha", alpha)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if zoom >= 1:
        raise ValueError(f"zoom must be < 1 (the scale factor is 1 ± zoom), got {zoom}")
    if alpha > 0 and not (isinstance(sigma, (int, float)) and sigma > 0):
        raise ValueError(f"sigma must be > 0 when alpha > 0, got {sigma!r}")
    kernel = _gaussian_kernel(float(sigma)) if alpha > 0 else None
    if kernel is not None and kernel.shape[0] // 2 >= min(images.shape[1:3]):
        raise ValueError(f"sigma={sigma} is too wide for {images.shape[1]}x{images.shape[2]} images")
    keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(images.shape[0]))
    one = lambda k, im: _distort_one(k, im, float(rotate_deg), float(zoom), float(shift), float(alpha), kernel)
    return jax.vmap(one)(keys, jnp.asarray(images, jnp.float32))


def translate(key: jax.Array, images: jax.Array, max_shift: int) -> jax.Array:
    """Shifts each image of ``[B, H, W, C]`` by its own random offset in
    ``[-max_shift, max_shift]^2`` pixels, filling with zeros; differentiable in
    the pixels (a gather)."""
    if images.ndim != 4:
        raise ValueError(f"translate expects images [B, H, W, C], got shape {tuple(images.shape)}")
    if max_shift < 0:
        raise ValueError(f"augment shift must be >= 0 pixels, got {max_shift}")
    if max_shift == 0:
        return images
    batch, height, width, _ = images.shape
    offsets = jax.random.randint(key, (batch, 2), 0, 2 * max_shift + 1)
    padded = jnp.pad(images, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, image.shape[-1]))

    return jax.vmap(crop)(padded, offsets)
