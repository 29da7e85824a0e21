"""The input pipeline: decode every image once into a uint8 cache, then augment and balance in tf.data.

The cache is a memory-mapped ``.npy`` file of shape (N, H, W, 3) written by :func:`build_cache` through
``edge.preprocess.load_image`` — the same function the phone, the Pi and the demo call — keyed by the
image list and the input spec, so a changed data set or size rebuilds it. Training, int8 calibration
and validation all read from it.
"""

from __future__ import annotations

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

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for done, _ in enumerate(pool.map(decode, range(len(paths))), start=1):
            if done % 2000 == 0:
                log.info("cache: decoded %d/%d images", done, len(paths))
    pixels.flush()
    del pixels
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


def evaluation_batches(pixels: np.ndarray, spec: InputSpec, batch_size: int = 64):
    """Normalized float batches of cached pixels, in order, for prediction."""
    from edge.preprocess import normalize

    for start in range(0, len(pixels), batch_size):
        yield normalize(np.asarray(pixels[start:start + batch_size]), spec)


def make_augmenter(config: AugmentConfig, spec: InputSpec, *, seed: int):
    """Returns a function float32 [B, H, W, 3] in 0..255 -> augmented float32 in 0..255."""
    from models.keras import tf

    rng = tf.random.Generator.from_seed(seed)
    square = spec.height == spec.width

    def augment(images):
        batch = tf.shape(images)[0]
        if config.flip:
            images = tf.where(rng.uniform([batch, 1, 1, 1]) < 0.5, tf.reverse(images, axis=[2]), images)
            images = tf.where(rng.uniform([batch, 1, 1, 1]) < 0.5, tf.reverse(images, axis=[1]), images)
        if config.rotate_90 and square:
            images = tf.where(rng.uniform([batch, 1, 1, 1]) < 0.5, tf.transpose(images, [0, 2, 1, 3]), images)
        if config.rotation or config.shift or config.zoom:
            images = _random_affine(images, config, spec, rng)
        if config.brightness:
            images += rng.uniform([batch, 1, 1, 1], -config.brightness, config.brightness) * 255.0
        if config.contrast:
            mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
            factor = rng.uniform([batch, 1, 1, 1], 1 - config.contrast, 1 + config.contrast)
            images = (images - mean) * factor + mean
        if config.saturation or config.hue:
            scaled = tf.clip_by_value(images / 255.0, 0.0, 1.0)
            hsv = tf.image.rgb_to_hsv(scaled)
            hue_shift = rng.uniform([batch, 1, 1], -config.hue, config.hue)
            sat_factor = rng.uniform([batch, 1, 1], 1 - config.saturation, 1 + config.saturation)
            hsv = tf.stack([tf.math.floormod(hsv[..., 0] + hue_shift, 1.0),
                            tf.clip_by_value(hsv[..., 1] * sat_factor, 0.0, 1.0), hsv[..., 2]], axis=-1)
            images = tf.image.hsv_to_rgb(hsv) * 255.0
        if config.noise:
            images += rng.normal(tf.shape(images), stddev=config.noise)
        return tf.clip_by_value(images, 0.0, 255.0)

    return augment


def _random_affine(images, config: AugmentConfig, spec: InputSpec, rng):
    """One projective warp per image for rotation, shift and zoom (reflect padding keeps skin at the edges)."""
    from models.keras import tf

    batch = tf.shape(images)[0]
    height, width = float(spec.height), float(spec.width)
    angle = rng.uniform([batch], -config.rotation, config.rotation) * (np.pi / 180.0)
    scale = 1.0 / rng.uniform([batch], 1 - config.zoom, 1 + config.zoom)
    dx = rng.uniform([batch], -config.shift, config.shift) * width
    dy = rng.uniform([batch], -config.shift, config.shift) * height
    cos, sin = tf.cos(angle) * scale, tf.sin(angle) * scale
    cx, cy = (width - 1) / 2, (height - 1) / 2
    # Output pixel (x, y) samples input (a0 x + a1 y + a2, b0 x + b1 y + b2): rotate/scale about the centre.
    a2 = cx - cos * cx + sin * cy + dx
    b2 = cy - sin * cx - cos * cy + dy
    zeros = tf.zeros([batch])
    transforms = tf.stack([cos, -sin, a2, sin, cos, b2, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.shape(images)[1:3],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")
