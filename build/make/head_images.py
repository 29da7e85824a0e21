"""What the abstain head learns from: training images and negative images, each framed three ways.

An image reaches the model as the runtime frames it, as a phone frames it (a crop, another resize
filter, blur, JPEG) or from a sharper camera than the training data's: HAM10000's 200x150 files are
softer than the 600x450 originals that the ISIC test set and phones show, and a head that learned only
the soft look refused a quarter of those originals. Both kinds of images are framed the same three ways,
so the framing itself tells the head nothing and only what the image shows does (measured on release
2's QAT features, docs/experiments.md: originals answered 0.88 -> 0.96, point-sampled 0.71 -> 0.90,
MSID's unseen half still refused 0.98)::

    >>> positives, labels, groups = head_training_images(ctx, sample)
    >>> negatives, negative_groups = head_negative_images(sources, spec, seed=config.train.seed)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from build.make.context import RunContext
from build.make.framing import frame_batch, runtime_view
from build.make.negatives import (
    SYNTHETIC_PER_KIND,
    SYNTHETIC_SEED,
    negative_sources,
    photo_size,
    synthetic_images,
)
from build.stage_configs import FILTERS, AugmentConfig
from edge.preprocess import InputSpec

HEAD_SAMPLE = 2000  # training images the head learns from (of the export's sample), each in three views
# How a phone frames an image: the HAM10000 recipe's framing, whatever the model's own augmentation was.
PHONE_FRAMING = AugmentConfig(
    crop_area=(0.35, 1.0),
    crop_aspect=(0.75, 4 / 3),
    resample_filters=tuple(FILTERS),
    blur=1.2,
    jpeg=0.3,
    jpeg_quality=(50, 95),
)
# A sharper camera: the whole frame, unsharp-masked, resized with any filter (point sampling included,
# as MediaPipe and GPU runtimes resize).
SHARPER_CAMERA = AugmentConfig(resample_filters=tuple(FILTERS), sharpen=1.0)


def head_views(sources: Sequence[np.ndarray], spec: InputSpec, rng: np.random.Generator) -> list[np.ndarray]:
    """Each source image (H x W x 3 uint8) as the runtime frames it, then each as a phone frames it,
    then each from a sharper camera: ``3 * len(sources)`` images at the model's input size."""
    views = [runtime_view(source, spec) for source in sources]
    for framing in (PHONE_FRAMING, SHARPER_CAMERA):
        views += list(frame_batch(list(sources), spec, framing, rng))
    return views


def head_training_images(
    ctx: RunContext, sample: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The first :data:`HEAD_SAMPLE` training images of ``sample`` in their three views, the class of each
    view and the source image it shows (views of one image share a cross-validation fold)."""
    indices = np.sort(np.asarray(sample)[:HEAD_SAMPLE])
    sources = [ctx.train.source(i) for i in indices]
    views = head_views(sources, ctx.spec, np.random.default_rng(ctx.config.train.seed))
    return views, np.tile(ctx.train.labels[indices], 3), view_sources(len(sources))


def head_negative_images(
    sources: Sequence[str | Path], spec: InputSpec, *, seed: int = 0
) -> tuple[list[np.ndarray], np.ndarray]:
    """The negative sources' fit halves in their three views, and synthetic images no camera would take:
    drawn at the model's input size as they are, and drawn at a photo's size in the three views. With
    each image, the source image it shows."""
    photographs = negative_sources(sources, spec, seed=seed)
    views = head_views(photographs, spec, np.random.default_rng(seed + 1))
    synthetic = [
        image
        for images in synthetic_images(
            SYNTHETIC_PER_KIND, (spec.height, spec.width), seed=SYNTHETIC_SEED
        ).values()
        for image in images
    ]
    photos = synthetic_images(SYNTHETIC_PER_KIND, photo_size(spec), seed=SYNTHETIC_SEED + 1)
    photo_sources = [image for images in photos.values() for image in images]
    photo_views = head_views(photo_sources, spec, np.random.default_rng(seed + 2))
    groups = np.r_[
        view_sources(len(photographs)),
        len(photographs) + np.arange(len(synthetic)),
        len(photographs) + len(synthetic) + view_sources(len(photo_sources)),
    ]
    return views + synthetic + photo_views, groups


def view_sources(n: int) -> np.ndarray:
    """The source image of each of :func:`head_views`' ``3 * n`` views."""
    return np.tile(np.arange(n), 3)
