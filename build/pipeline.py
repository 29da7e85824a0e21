"""The input pipeline: decode every image once into a uint8 cache, then augment and balance in tf.data.

The cache is a memory-mapped ``.npy`` file of shape (N, H, W, 3) written by :func:`build_cache` through
``edge.preprocess.load_image`` — the same function the phone, the Pi and the demo call — keyed by the
image list and the input spec, so a changed data set or size rebuilds it. Training, int8 calibration
and validation all read from it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edge.preprocess import InputSpec, load_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AugmentConfig:
    """Random augmentation applied to training images (all ranges symmetric around "no change").

    Attributes:
        flip: Random horizontal and vertical flips (dermoscopy has no up or left).
        rotate_90: Random multiples of 90 degrees (square inputs only).
        rotation: Extra random rotation, in degrees, up to this value.
        shift: Random translation, as a fraction of the side.
        zoom: Random zoom in or out, as a fraction (0.2 = 0.8x..1.2x).
        brightness: Random brightness change, as a fraction of 255.
        contrast: Random contrast factor range (0.2 = 0.8x..1.2x).
        saturation: Random saturation factor range.
        hue: Random hue shift (fraction of the colour wheel).
        noise: Standard deviation of Gaussian pixel noise, in 0..255 units.
    """

    flip: bool = True
    rotate_90: bool = True
    rotation: float = 20.0
    shift: float = 0.08
    zoom: float = 0.15
    brightness: float = 0.1
    contrast: float = 0.15
    saturation: float = 0.15
    hue: float = 0.02
    noise: float = 3.0


@dataclass(frozen=True)
class BalanceConfig:
    """How classes are balanced during training.

    Attributes:
        mode: ``"oversample"`` draws classes with probability proportional to count**power
            (power 0 = fully balanced, 1 = natural frequencies), ``"undersample"`` caps every class at
            ``max_per_class`` images per epoch, ``"class_weight"`` keeps natural sampling and weights
            the loss by inverse frequency, ``"none"`` does nothing.
        power: Exponent of the class counts for ``oversample``.
        max_per_class: Cap for ``undersample`` (0 = the smallest class count).
    """

    mode: str = "oversample"
    power: float = 0.5
    max_per_class: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("oversample", "undersample", "class_weight", "none"):
            raise ValueError(f"balance mode must be oversample|undersample|class_weight|none, got {self.mode!r}")


@dataclass(frozen=True)
class CachedImages:
    """Decoded images (memory-mapped) and their integer labels."""

    pixels: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int32


def build_cache(paths: Sequence[str], spec: InputSpec, cache_dir: str | Path, *, workers: int = 0) -> np.ndarray:
    """Decodes ``paths`` once through ``edge.preprocess`` into a memory-mapped uint8 array.

    The file name hashes the paths, their sizes and modification times, and the spec, so the cache is
    rebuilt when any of them changes and reused otherwise. Writing goes to a temporary file that is
    renamed into place, so a crash never leaves half a cache.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = _cache_key(paths, spec)
    target = cache_dir / f"pixels-{spec.height}x{spec.width}-{key}.npy"
    if target.exists():
        return np.load(target, mmap_mode="r")
    started = time.perf_counter()
    tmp = target.with_suffix(f".tmp{os.getpid()}.npy")
    pixels = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), spec.height, spec.width, 3))

    def decode(i: int) -> None:
        pixels[i] = load_image(paths[i], spec)

    try:
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            for done, _ in enumerate(pool.map(decode, range(len(paths))), start=1):
                if done % 2000 == 0:
                    log.info("cache: decoded %d/%d images", done, len(paths))
        pixels.flush()
    except BaseException:
        # A corrupt image (ImageError names it) or Ctrl-C: leave no multi-GB partial file behind.
        tmp.unlink(missing_ok=True)
        raise
    pixels = None  # close the memory map before the rename  # noqa: F841
    os.replace(tmp, target)
    log.info("cache: %d images at %dx%d in %.1f s -> %s", len(paths), spec.height, spec.width,
             time.perf_counter() - started, target)
    return np.load(target, mmap_mode="r")


def _cache_key(paths: Sequence[str], spec: InputSpec) -> str:
    digest = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def class_sampling_weights(labels: np.ndarray, num_classes: int, balance: BalanceConfig) -> np.ndarray:
    """The probability of drawing each class per training example under ``balance``."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    if balance.mode == "oversample":
        weights = np.where(counts > 0, counts ** balance.power, 0.0)
    elif balance.mode == "undersample":
        cap = balance.max_per_class or counts[counts > 0].min()
        weights = np.minimum(counts, cap)
    else:
        weights = counts
    return weights / weights.sum()


def class_loss_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Inverse-frequency loss weights (mean 1 over examples), for ``balance.mode == "class_weight"``."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    return {i: float(w) for i, w in enumerate(weights)}


def training_dataset(data: CachedImages, spec: InputSpec, *, num_classes: int, batch_size: int,
                     augment: AugmentConfig, balance: BalanceConfig, seed: int, label_smoothing: float = 0.0):
    """An endless, shuffled, balanced and augmented ``tf.data.Dataset`` of (normalized images, one-hot).

    Epoch length is the caller's choice (``steps_per_epoch``); sampling is with replacement per class so
    minority classes can be drawn more often than they occur.
    """
    from models.keras import tf

    weights = class_sampling_weights(data.labels, num_classes, balance)
    per_class = []
    class_weights = []
    for label in range(num_classes):
        indices = np.flatnonzero(data.labels == label)
        if len(indices) == 0 or weights[label] == 0:
            continue
        per_class.append(tf.data.Dataset.from_tensor_slices(indices).repeat().shuffle(
            min(len(indices), 10_000), seed=seed + label))
        class_weights.append(weights[label])
    indices = tf.data.Dataset.sample_from_datasets(per_class, weights=class_weights, seed=seed)

    pixels, labels = data.pixels, data.labels

    def fetch(index_batch):
        def gather(idx):
            idx = np.sort(idx)  # sorted reads are kinder to the memory map
            return np.asarray(pixels[idx]), labels[idx].astype(np.int32)
        images, batch_labels = tf.numpy_function(gather, [index_batch], (tf.uint8, tf.int32))
        images.set_shape([None, spec.height, spec.width, 3])
        batch_labels.set_shape([None])
        return images, batch_labels

    augmenter = make_augmenter(augment, spec, seed=seed)

    def finish(images, batch_labels):
        images = augmenter(tf.cast(images, tf.float32))
        images = (images - tf.constant(spec.mean, tf.float32)) / tf.constant(spec.std, tf.float32)
        targets = tf.one_hot(batch_labels, num_classes)
        if label_smoothing:
            targets = targets * (1 - label_smoothing) + label_smoothing / num_classes
        return images, targets

    return (indices.batch(batch_size, drop_remainder=True)
            .map(fetch, num_parallel_calls=tf.data.AUTOTUNE)
            .map(finish, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def calibration_sample(pixels: np.ndarray, count: int, seed: int) -> list[np.ndarray]:
    """A seeded sample of cached training images (uint8), in file order, for quantization ranges."""
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(len(pixels), size=min(count, len(pixels)), replace=False))
    return [np.asarray(pixels[i]) for i in index]


def evaluation_batches(pixels: np.ndarray, spec: InputSpec, batch_size: int = 64):
    """Normalized float batches of cached pixels, in order, for prediction."""
    from edge.preprocess import normalize

    for start in range(0, len(pixels), batch_size):
        yield normalize(np.asarray(pixels[start:start + batch_size]), spec)


def make_augmenter(config: AugmentConfig, spec: InputSpec, *, seed: int):
    """Returns a function float32 [B, H, W, 3] in 0..255 -> augmented float32 in 0..255.

    Random parameters are drawn per image from one seeded generator; the pixel work (one warp for
    flips, quarter turns, rotation, shift and zoom, then brightness, contrast, saturation, hue and
    noise) runs in two XLA-compiled functions, which fuse the passes over the batch into a few loops
    (about 8x faster on CPU than one TensorFlow kernel per step, measured on 32 x 192 x 192 batches).
    """
    from models.keras import tf

    rng = tf.random.Generator.from_seed(seed)
    square = spec.height == spec.width
    geometric = bool(config.flip or (config.rotate_90 and square) or config.rotation or config.shift
                     or config.zoom)
    # Two compiled steps, not one: with the warp and the per-image mean (contrast) in one program,
    # XLA re-runs the warp's gathers inside each consumer; a materialized warp is cheaper.
    move = tf.function(functools.partial(_move_pixels, geometric=geometric), jit_compile=True)
    shade = tf.function(functools.partial(_shade_pixels, config=config), jit_compile=True)

    def augment(images):
        batch = tf.shape(images)[0]
        unit = tf.ones([batch, 1, 1, 1])
        transforms = (_random_transforms(config, spec, rng, batch, square) if geometric
                      else tf.zeros([batch, 8]))
        brightness = rng.uniform([batch, 1, 1, 1], -config.brightness, config.brightness) * 255.0 \
            if config.brightness else 0.0 * unit
        contrast = rng.uniform([batch, 1, 1, 1], 1 - config.contrast, 1 + config.contrast) \
            if config.contrast else unit
        hue = rng.uniform([batch, 1, 1], -config.hue, config.hue) if config.hue else tf.zeros([batch, 1, 1])
        saturation = rng.uniform([batch, 1, 1], 1 - config.saturation, 1 + config.saturation) \
            if config.saturation else tf.ones([batch, 1, 1])
        # XLA's own random numbers are slow on CPU: draw uniforms here, shape them to a Gaussian in XLA.
        # The open interval keeps erfinv finite (tails cut at 4.9 standard deviations).
        noise = rng.uniform(tf.shape(images), 5e-7, 1 - 5e-7) if config.noise else tf.zeros([batch, 1, 1, 1])
        return shade(move(images, transforms, brightness), contrast, hue, saturation, noise)

    return augment


def _random_transforms(config: AugmentConfig, spec: InputSpec, rng, batch, square: bool):
    """Per image, the 8 projective coefficients mapping an output pixel to where it samples the input.

    Flips and the quarter turn (a transpose) are exact integer maps, so folding them into the one warp
    gives the same pixels as flipping first, without extra passes over the batch.
    """
    from models.keras import tf

    height, width = float(spec.height), float(spec.width)
    one, zero = tf.ones([batch]), tf.zeros([batch])

    def matrix(row0, row1):
        return tf.stack([tf.stack(row0, axis=1), tf.stack(row1, axis=1), tf.stack([zero, zero, one], axis=1)],
                        axis=1)

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
        result = result @ matrix([cos, -sin, cx - cos * cx + sin * cy + dx],
                                 [sin, cos, cy - sin * cx - cos * cy + dy])
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
        hsv = tf.stack([tf.math.floormod(hsv[..., 0] + hue, 1.0),
                        tf.clip_by_value(hsv[..., 1] * saturation, 0.0, 1.0), hsv[..., 2]], axis=-1)
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
