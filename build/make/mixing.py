"""CutMix and mixup: training examples made of two images of a batch, with targets in the same proportion.

A lesion model that sees a box of another lesion pasted in (CutMix), or two lesions blended (mixup),
must weigh the evidence of the whole image instead of one telling patch, and learns scores that say
how much of each it saw; both regularize long fine-tuning schedules. The batch is mixed as uint8 pixels
where it is drawn (``build.make.pipeline``), so it stays a pure function of ``(seed, step)``:

    >>> partner, share = mix_batch(images, rng, MixConfig(cutmix=0.5))
    >>> target = share * one_hot(labels) + (1 - share) * one_hot(labels[partner])
"""

from __future__ import annotations

import numpy as np

from build.stage_configs import MixConfig


def mix_batch(images: np.ndarray, rng: np.random.Generator, mix: MixConfig) -> tuple[np.ndarray, np.ndarray]:
    """Mixes a batch of uint8 images ``(n, height, width, 3)`` in place as ``mix`` draws it.

    Returns:
        ``(partner, share)``: image ``i`` is now ``share[i]`` of itself and ``1 - share[i]`` of the
        original image ``partner[i]`` (``share`` is 1 for a batch left alone).
    """
    n, height, width = images.shape[:3]
    partner = rng.permutation(n)
    share = np.ones(n)
    roll = rng.random()
    if roll < mix.cutmix:
        original = images.copy()
        kept = rng.beta(mix.cutmix_alpha, mix.cutmix_alpha, size=n)
        for i in range(n):
            top, bottom, left, right = _box(height, width, 1.0 - kept[i], rng)
            images[i, top:bottom, left:right] = original[partner[i], top:bottom, left:right]
            share[i] = 1.0 - (bottom - top) * (right - left) / (height * width)
    elif roll < mix.cutmix + mix.mixup:
        share = rng.beta(mix.mixup_alpha, mix.mixup_alpha, size=n)
        weight = share[:, None, None, None]
        blended = weight * images + (1.0 - weight) * images[partner]
        images[:] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return partner, share


def _box(height: int, width: int, area: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A box of about ``area`` of the image around a uniform centre, clipped to the image (so its true
    area, which the target follows, may be smaller)."""
    side = np.sqrt(area)
    box_height, box_width = int(round(height * side)), int(round(width * side))
    centre_y, centre_x = rng.integers(height), rng.integers(width)
    top, bottom = np.clip([centre_y - box_height // 2, centre_y + box_height - box_height // 2], 0, height)
    left, right = np.clip([centre_x - box_width // 2, centre_x + box_width - box_width // 2], 0, width)
    return int(top), int(bottom), int(left), int(right)
