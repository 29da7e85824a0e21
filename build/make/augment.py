"""Training augmentation: the options, and the seeded, XLA-compiled warp and colour jitter that apply them.

Every random parameter is a pure function of ``(seed, step)``, so a batch's augmentation is the same
on any machine and after a resume (``build.make.pipeline.training_dataset`` calls it per batch)::

    >>> augment = make_augmenter(AugmentConfig(rotation=10.0), spec, seed=42)
    >>> images = augment(tf.cast(batch, tf.float32), step)
"""

from __future__ import annotations

import functools

import numpy as np

from build.stage_configs import AugmentConfig
from edge.preprocess import InputSpec


def make_augmenter(config: AugmentConfig, spec: InputSpec, *, seed: int):
    """Returns a function float32 [B, H, W, 3] in 0..255 -> augmented float32 in 0..255.

    Random parameters are drawn per image as a pure function of ``(seed, step)`` (stateless random
    numbers), so a batch's augmentation does not depend on what ran before it; the pixel work (one warp for
    flips, quarter turns, rotation, shift and zoom, then brightness, contrast, saturation, hue and
    noise) runs in two XLA-compiled functions, which fuse the passes over the batch into a few loops
    (about 8x faster on CPU than one TensorFlow kernel per step, measured on 32 x 192 x 192 batches).
    """
    from models.keras import tf

    square = spec.height == spec.width
    geometric = bool(
        config.flip or (config.rotate_90 and square) or config.rotation or config.shift or config.zoom
    )
    # Two compiled steps, not one: with the warp and the per-image mean (contrast) in one program,
    # XLA re-runs the warp's gathers inside each consumer; a materialized warp is cheaper.
    move = tf.function(functools.partial(_move_pixels, geometric=geometric), jit_compile=True)
    shade = tf.function(functools.partial(_shade_pixels, config=config), jit_compile=True)

    def augment(images, step=0):
        rng = _StatelessDraws(tf.stack([tf.constant(seed, tf.int64), tf.cast(step, tf.int64)]))
        batch = tf.shape(images)[0]
        unit = tf.ones([batch, 1, 1, 1])
        transforms = (
            _random_transforms(config, spec, rng, batch, square) if geometric else tf.zeros([batch, 8])
        )
        brightness = (
            rng.uniform([batch, 1, 1, 1], -config.brightness, config.brightness) * 255.0
            if config.brightness
            else 0.0 * unit
        )
        contrast = (
            rng.uniform([batch, 1, 1, 1], 1 - config.contrast, 1 + config.contrast)
            if config.contrast
            else unit
        )
        hue = rng.uniform([batch, 1, 1], -config.hue, config.hue) if config.hue else tf.zeros([batch, 1, 1])
        saturation = (
            rng.uniform([batch, 1, 1], 1 - config.saturation, 1 + config.saturation)
            if config.saturation
            else tf.ones([batch, 1, 1])
        )
        # XLA's own random numbers are slow on CPU: draw uniforms here, shape them to a Gaussian in XLA.
        # The open interval keeps erfinv finite (tails cut at 4.9 standard deviations).
        noise = rng.uniform(tf.shape(images), 5e-7, 1 - 5e-7) if config.noise else tf.zeros([batch, 1, 1, 1])
        return shade(move(images, transforms, brightness), contrast, hue, saturation, noise)

    return augment


class _StatelessDraws:
    """Uniform random numbers that are a pure function of a key: the n-th draw folds n into it."""

    def __init__(self, key):
        self.key = key
        self.count = 0

    def uniform(self, shape, minval=0.0, maxval=1.0):
        from models.keras import tf

        self.count += 1
        seed = tf.random.experimental.stateless_fold_in(self.key, self.count)
        return tf.random.stateless_uniform(shape, seed=seed, minval=minval, maxval=maxval)


def _random_transforms(config: AugmentConfig, spec: InputSpec, rng, batch, square: bool):
    """Per image, the 8 projective coefficients mapping an output pixel to where it samples the input.

    Flips and the quarter turn (a transpose) are exact integer maps, so folding them into the one warp
    gives the same pixels as flipping first, without extra passes over the batch.
    """
    from models.keras import tf

    height, width = float(spec.height), float(spec.width)
    one, zero = tf.ones([batch]), tf.zeros([batch])

    def matrix(row0, row1):
        return tf.stack(
            [tf.stack(row0, axis=1), tf.stack(row1, axis=1), tf.stack([zero, zero, one], axis=1)], axis=1
        )

    result = tf.eye(3, batch_shape=[batch])
    if config.flip:
        sx = tf.where(rng.uniform([batch]) < 0.5, -1.0, 1.0)
        sy = tf.where(rng.uniform([batch]) < 0.5, -1.0, 1.0)
        result = matrix([sx, zero, (1 - sx) / 2 * (width - 1)], [zero, sy, (1 - sy) / 2 * (height - 1)])
    if config.rotate_90 and square:
        swap = tf.cast(rng.uniform([batch]) < 0.5, tf.float32)
        result = result @ matrix([1 - swap, swap, zero], [swap, 1 - swap, zero])
    if config.rotation or config.shift or config.zoom:
        angle = rng.uniform([batch], -config.rotation, config.rotation) * (np.pi / 180.0)
        scale = 1.0 / rng.uniform([batch], 1 - config.zoom, 1 + config.zoom)
        dx = rng.uniform([batch], -config.shift, config.shift) * width
        dy = rng.uniform([batch], -config.shift, config.shift) * height
        cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
        cx, cy = (width - 1) / 2, (height - 1) / 2
        # Output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2): rotate/scale about
        # the centre.
        result = result @ matrix(
            [cos, -sin, cx - cos * cx + sin * cy + dx], [sin, cos, cy - sin * cx - cos * cy + dy]
        )
    return tf.reshape(result, [batch, 9])[:, :8]


def _move_pixels(images, transforms, brightness, *, geometric: bool):
    """Compiled step 1 of :func:`make_augmenter`: the warp and the brightness shift, per image."""
    if geometric:
        images = _warp_bilinear_reflect(images, transforms)
    return images + brightness


def _shade_pixels(images, contrast, hue, saturation, noise, *, config: AugmentConfig):
    """Compiled step 2 of :func:`make_augmenter`: contrast, saturation, hue and noise, then the clip.

    Parameters are per image; ``noise`` holds uniform (0, 1) draws per pixel.
    """
    from models.keras import tf

    if config.contrast:
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        images = (images - mean) * contrast + mean
    if config.saturation or config.hue:
        hsv = tf.image.rgb_to_hsv(tf.clip_by_value(images / 255.0, 0.0, 1.0))
        hsv = tf.stack(
            [
                tf.math.floormod(hsv[..., 0] + hue, 1.0),
                tf.clip_by_value(hsv[..., 1] * saturation, 0.0, 1.0),
                hsv[..., 2],
            ],
            axis=-1,
        )
        images = tf.image.hsv_to_rgb(hsv) * 255.0
    if config.noise:
        # Uniform (0, 1) -> N(0, noise^2) through the inverse normal CDF.
        images += (np.sqrt(2.0) * config.noise) * tf.math.erfinv(2.0 * noise - 1.0)
    return tf.clip_by_value(images, 0.0, 255.0)


def _warp_bilinear_reflect(images, transforms):
    """Bilinear projective warp with reflect padding, as ``ImageProjectiveTransformV3`` does it.

    Written with gathers so XLA can compile it; the TensorFlow kernel cannot be, and is the slowest
    step of the augmentation on CPU. Transforms are affine here (c0 = c1 = 0).
    """
    from models.keras import tf

    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    ys, xs = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32), indexing="ij")
    a0, a1, a2, b0, b1, b2 = (transforms[:, k, None, None] for k in range(6))
    source_x, source_y = a0 * xs + a1 * ys + a2, b0 * xs + b1 * ys + b2
    x0, y0 = tf.floor(source_x), tf.floor(source_y)
    wx, wy = (source_x - x0)[..., None], (source_y - y0)[..., None]
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    flat = tf.reshape(images, [-1, 3])
    base = (tf.range(batch) * height * width)[:, None, None]

    def reflect(index, size):
        # d c b a | a b c d | d c b a: the edge pixel repeats, like the kernel's REFLECT mode.
        index = tf.math.floormod(index, 2 * size)
        return tf.where(index >= size, 2 * size - 1 - index, index)

    def at(y, x):
        return tf.gather(flat, base + reflect(y, height) * width + reflect(x, width))

    top = at(y0, x0) * (1 - wx) + at(y0, x0 + 1) * wx
    bottom = at(y0 + 1, x0) * (1 - wx) + at(y0 + 1, x0 + 1) * wx
    return top * (1 - wy) + bottom * wy
