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

from build.atomic import write_with
from build.console import Progress
from build.stage_configs import AugmentConfig, BalanceConfig
from edge.preprocess import InputSpec, load_image, open_rgb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedImages:
    """Decoded images (memory-mapped) and their integer labels.

    ``sizes`` is set for a source-aspect cache (:func:`build_source_cache`): each image's (height,
    width) at the top left of its canvas.
    """

    pixels: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int32
    sizes: np.ndarray | None = None  # (N, 2) int32

    def source(self, index: int) -> np.ndarray:
        """Image ``index`` without its canvas margin."""
        if self.sizes is None:
            return self.pixels[index]
        height, width = self.sizes[index]
        return self.pixels[index, :height, :width]


def build_cache(paths: Sequence[str], spec: InputSpec, cache_dir: str | Path, *, workers: int = 0) -> np.ndarray:
    """Decodes ``paths`` once through ``edge.preprocess`` into a memory-mapped uint8 array.

    The file name hashes the paths, their sizes and modification times, and the spec, so the cache is
    rebuilt when any of them changes and reused otherwise. Writing goes to a temporary file that is
    renamed into place, so a crash never leaves half a cache.
    """
    target = Path(cache_dir) / f"pixels-{spec.height}x{spec.width}-{_cache_key(paths, spec)}.npy"
    if not target.exists():
        _write_cache(target, paths, (spec.height, spec.width), lambda path: load_image(path, spec), workers)
    return np.load(target, mmap_mode="r")


def build_source_cache(paths: Sequence[str], spec: InputSpec, cache_dir: str | Path, *,
                       workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Decodes ``paths`` at their own aspect onto a square canvas (``build.make.framing.canvas_side``), for
    training crops; returns the memory-mapped pixels and each image's (height, width) on its canvas.

    Decoding goes through ``edge.preprocess.open_rgb`` (orientation, colour mode, size limits), then the
    runtime's filter scales the image to the canvas. Cached like :func:`build_cache`.
    """
    from build.make.framing import canvas_side, fit_on_canvas

    side = canvas_side(spec)
    target = Path(cache_dir) / f"sources-{side}-{_cache_key(paths, spec)}.npy"
    sizes_file = target.with_name(target.stem + "-sizes.npy")
    if not target.exists():
        sizes = np.zeros((len(paths), 2), dtype=np.int32)

        def decode(path_index: tuple[str, int]) -> np.ndarray:
            path, index = path_index
            canvas, sizes[index] = fit_on_canvas(open_rgb(path, max_pixels=spec.max_pixels), side)
            return canvas

        _write_cache(target, list(zip(paths, range(len(paths)))), (side, side), decode, workers,
                     before_rename=lambda: write_with(sizes_file, lambda tmp: np.save(tmp, sizes)))
    return np.load(target, mmap_mode="r"), np.load(sizes_file)


def _write_cache(target: Path, items: Sequence, shape: tuple[int, int], decode, workers: int,
                 before_rename=None) -> None:
    """Decodes every item into a temporary (N, *shape, 3) memory map renamed to ``target`` when complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = target.with_suffix(f".tmp{os.getpid()}.npy")
    pixels = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(items), *shape, 3))

    def fill(i: int) -> None:
        pixels[i] = decode(items[i])

    progress = Progress(f"cache: decoding into {target}", len(items))
    try:
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            for done, _ in enumerate(pool.map(fill, range(len(items))), start=1):
                progress.update(done)
        progress.close()
        pixels.flush()
        if before_rename is not None:
            before_rename()
    except BaseException:
        # A corrupt image (ImageError names it) or Ctrl-C: leave no multi-GB partial file behind.
        tmp.unlink(missing_ok=True)
        raise
    pixels = None  # close the memory map before the rename  # noqa: F841
    os.replace(tmp, target)
    log.info("cache: %d images at %dx%d in %.1f s -> %s", len(items), shape[0], shape[1],
             time.perf_counter() - started, target)


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
                     augment: AugmentConfig, balance: BalanceConfig, seed: int, label_smoothing: float = 0.0,
                     start_step: int = 0):
    """An endless, balanced and augmented ``tf.data.Dataset`` of (normalized images, one-hot targets).

    Batch ``k`` (counted from ``start_step``) is a pure function of ``(seed, k)``: which images are
    drawn (each draw picks a class by the balanced weights, then an image of it), how each is framed and
    every augmentation parameter. So the same seed gives the same batches on any machine run, and a
    run resumed at step ``k`` sees exactly the batches an uninterrupted run would have.
    """
    from build.make.framing import frame_batch
    from models.keras import tf

    weights = class_sampling_weights(data.labels, num_classes, balance)
    members = [np.flatnonzero(data.labels == label) for label in range(num_classes)]
    framed = augment.frames or data.sizes is not None

    def draw(step):
        rng = np.random.default_rng([seed, int(step)])
        classes = rng.choice(num_classes, size=batch_size, p=weights)
        index = np.array([members[c][rng.integers(len(members[c]))] for c in classes])
        if framed:
            images = frame_batch([data.source(i) for i in index], spec, augment, rng)
        else:
            order = np.argsort(index)  # sorted reads are kinder to the memory map
            images = np.empty((batch_size, spec.height, spec.width, 3), dtype=np.uint8)
            images[order] = data.pixels[index[order]]
        return images, data.labels[index].astype(np.int32)

    def fetch(step):
        images, labels = tf.numpy_function(draw, [step], (tf.uint8, tf.int32), stateful=False)
        images.set_shape([batch_size, spec.height, spec.width, 3])
        labels.set_shape([batch_size])
        return step, images, labels

    augmenter = make_augmenter(augment, spec, seed=seed)

    def finish(step, images, labels):
        images = augmenter(tf.cast(images, tf.float32), step)
        images = (images - tf.constant(spec.mean, tf.float32)) / tf.constant(spec.std, tf.float32)
        targets = tf.one_hot(labels, num_classes)
        if label_smoothing:
            targets = targets * (1 - label_smoothing) + label_smoothing / num_classes
        return images, targets

    return (tf.data.Dataset.range(start_step, 2**62)
            .map(fetch, num_parallel_calls=tf.data.AUTOTUNE)
            .map(finish, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def calibration_sample(data: CachedImages, spec: InputSpec, count: int, seed: int) -> list[np.ndarray]:
    """A seeded sample of training images as the runtime's preprocessing frames them (uint8), in file
    order, for quantization ranges."""
    from build.make.framing import runtime_view

    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(len(data.labels), size=min(count, len(data.labels)), replace=False))
    return [runtime_view(data.source(i), spec) for i in index]


def evaluation_batches(pixels: np.ndarray, spec: InputSpec, batch_size: int = 64):
    """Normalized float batches of cached pixels, in order, for prediction."""
    from edge.preprocess import normalize

    for start in range(0, len(pixels), batch_size):
        yield normalize(np.asarray(pixels[start:start + batch_size]), spec)


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
    geometric = bool(config.flip or (config.rotate_90 and square) or config.rotation or config.shift
                     or config.zoom)
    # Two compiled steps, not one: with the warp and the per-image mean (contrast) in one program,
    # XLA re-runs the warp's gathers inside each consumer; a materialized warp is cheaper.
    move = tf.function(functools.partial(_move_pixels, geometric=geometric), jit_compile=True)
    shade = tf.function(functools.partial(_shade_pixels, config=config), jit_compile=True)

    def augment(images, step=0):
        rng = _StatelessDraws(tf.stack([tf.constant(seed, tf.int64), tf.cast(step, tf.int64)]))
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
