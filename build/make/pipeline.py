"""The training stream: balanced draws from the image cache, augmented and normalized in tf.data.

Batch ``k`` is a pure function of ``(seed, k)`` (:func:`training_dataset`), so a resumed run sees the
batches an uninterrupted one would have. The pieces it stands on live beside it: the uint8 cache in
``build.make.cache``, the augmentation in ``build.make.augment``::

    >>> data = CachedImages(build_cache(paths, spec, run / "cache"), labels)
    >>> stream = training_dataset(data, spec, num_classes=7, batch_size=32, augment=AugmentConfig(),
    ...                           balance=BalanceConfig(), seed=42)
"""

from __future__ import annotations


import numpy as np

from build.make.augment import make_augmenter
from build.make.cache import CachedImages
from build.stage_configs import AugmentConfig, BalanceConfig, MixConfig
from edge.preprocess import InputSpec


def class_sampling_weights(labels: np.ndarray, num_classes: int, balance: BalanceConfig) -> np.ndarray:
    """The probability of drawing each class per training example under ``balance``."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    if balance.mode == "oversample":
        weights = np.where(counts > 0, counts**balance.power, 0.0)
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


def training_dataset(
    data: CachedImages,
    spec: InputSpec,
    *,
    num_classes: int,
    batch_size: int,
    augment: AugmentConfig,
    balance: BalanceConfig,
    seed: int,
    label_smoothing: float = 0.0,
    start_step: int = 0,
    mix: MixConfig | None = None,
):
    """An endless, balanced and augmented ``tf.data.Dataset`` of (normalized images, one-hot targets).

    Batch ``k`` (counted from ``start_step``) is a pure function of ``(seed, k)``: which images are
    drawn (each draw picks a class by the balanced weights, then an image of it), how each is framed,
    how pairs are mixed (``mix``: CutMix or mixup, their targets mixed alike; ``build.make.mixing``) and
    every augmentation parameter. So the same seed gives the same batches on any machine run, and a
    run resumed at step ``k`` sees exactly the batches an uninterrupted run would have.
    """
    from build.make.framing import frame_batch
    from build.make.mixing import mix_batch
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
        labels = data.labels[index].astype(np.int32)
        if mix is None or not mix.mixes:
            return images, labels, labels, np.ones(batch_size, np.float32)
        partner, share = mix_batch(images, rng, mix)  # the last draws: unmixed batches stay as they were
        return images, labels, labels[partner], share.astype(np.float32)

    def fetch(step):
        images, labels, partners, shares = tf.numpy_function(
            draw, [step], (tf.uint8, tf.int32, tf.int32, tf.float32), stateful=False
        )
        images.set_shape([batch_size, spec.height, spec.width, 3])
        for per_image in (labels, partners, shares):
            per_image.set_shape([batch_size])
        return step, images, labels, partners, shares

    augmenter = make_augmenter(augment, spec, seed=seed)

    def finish(step, images, labels, partners, shares):
        images = augmenter(tf.cast(images, tf.float32), step)
        images = (images - tf.constant(spec.mean, tf.float32)) / tf.constant(spec.std, tf.float32)
        shares = shares[:, None]
        targets = shares * tf.one_hot(labels, num_classes) + (1 - shares) * tf.one_hot(partners, num_classes)
        if label_smoothing:
            targets = targets * (1 - label_smoothing) + label_smoothing / num_classes
        return images, targets

    return (
        tf.data.Dataset.range(start_step, 2**62)
        .map(fetch, num_parallel_calls=tf.data.AUTOTUNE)
        .map(finish, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


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
        yield normalize(np.asarray(pixels[start : start + batch_size]), spec)
