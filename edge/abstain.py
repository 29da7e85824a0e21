"""The abstain rule: when the runtime should say "I can't tell" instead of naming a class.

The rule is a dict stored in the bundle's card (``card.abstain``) and fitted on the validation split by
the build (``build.analysis.trust.fit_abstain_rule``). It has two independent checks, both plain numbers:

* ``pixel_check``: is this a dermoscopy image at all? A classifier's top probability says nothing about
  that (it is often confident on a holiday photo), so cheap image statistics (colour moments, texture
  energy at several scales, the radial brightness profile of a lens, centre-vs-border contrast) are
  compared with those of the training images by a Mahalanobis distance. Images farther than
  ``max_distance`` are refused. It catches noise, flat and synthetic images and most clinical photos
  (about 9 in 10 of the MSID rash photos); a close-up of a single mole with a phone camera can pass.
* ``min_confidence``: is the model sure enough? Refuses when the top calibrated probability is lower.

A model file exported with the abstain head (``converters.abstain_head``) answers the first question
itself, in its second output; then that score replaces the pixel check (``other_score=``), so the phone
(MediaPipe Tasks) and this runtime apply one rule. An empty rule never abstains. Everything here is numpy, so a Raspberry Pi evaluates it without
TensorFlow or scikit-learn::

    >>> reason = abstain_reason(probabilities, pixels, card.abstain)
    >>> reason is None  # the model may answer
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Statistics are taken on a fixed grid so the rule does not depend on the model's input size.
GRID = 64
# Order matters: it is the order of the mean vector and inverse covariance stored in the card. The set was
# chosen by backward elimination from 37 candidates (HAM10000 train/val, half of the MSID clinical photos,
# half of the non-HAM ISIC-archive dermoscopy, the 600x450 HAM originals). Every statistic is taken on
# the GRID, never at the input resolution: detail at the input resolution fingerprints how a data set
# was resized and compressed, and a rule using it refused 98% of the very same lesions photographed at
# 600x450 instead of 200x150.
FEATURE_NAMES = (
    "mean_r",
    "mean_g",
    "mean_b",
    "std_luma",
    "skew_luma",
    "mean_saturation",
    "std_saturation",
    "p10_saturation",
    "p90_saturation",
    "std_red_green",
    "mean_yellow_blue",
    "std_yellow_blue",
    "red_share",
    "non_skin_share",
    "dark_share",
    "p95_luma",
    "log_gradient_energy",
    "log_fine_detail",
    "log_coarse_gradient",
    "log_chroma_detail",
    "edge_share",
    "quadrant_luma_spread",
    "quadrant_red_green_spread",
    "border_minus_centre_luma",
    "ring_1_luma",
    "ring_2_luma",
    "ring_3_luma",
    "log_centre_contrast_ratio",
    "mean_contrast",
)
_EPS = 1e-6
# What a refusal tells the user to do when no task says otherwise (the pixel check is HAM10000's).
DERMOSCOPY_RETAKE = "take a close-up through a dermatoscope"
HEAD_REFUSE_AT = 0.5  # the head's "other" score from which it refuses, when the card does not say
# Distance of each grid cell from the image centre, 0 at the centre and 1 at the middle of each side.
_RADIUS = np.hypot(*np.meshgrid(*(2 * [np.linspace(-1, 1, GRID)]), indexing="ij"))


def abstain_reason(
    probabilities: np.ndarray,
    pixels: np.ndarray,
    rule: dict[str, Any],
    *,
    other_score: float | None = None,
    retake: str = DERMOSCOPY_RETAKE,
) -> str | None:
    """Returns why the model should not answer for this image, or None when it may answer.

    Args:
        probabilities: Calibrated class probabilities, shape (num_classes,).
        pixels: The preprocessed RGB uint8 image the model saw, shape (H, W, 3).
        rule: The card's abstain rule, e.g. ``{"min_confidence": 0.4, "pixel_check": {...}}``.
        other_score: The model's in-graph abstain head's "other" score, when the file has the head. Then
            the head decides whether the image looks like the training data (the rule's ``head`` entry
            says from which score on it refuses) and the numpy pixel check is not consulted: one rule,
            the one a phone running the same file applies.
        retake: What to do instead, after a refusal for the kind of image (the model's task's
            ``edge.tasks.Task.retake``).
    """
    pixel_check = rule.get("pixel_check")
    if other_score is not None:
        head = rule.get("head") or {}
        refuse_at = float(head.get("refuse_at", HEAD_REFUSE_AT))
        if other_score >= refuse_at:
            return (
                "this does not look like the images the model was trained on (its abstain head scores "
                f"'{head.get('refuse_label', 'other')}' {other_score:.0%}, the limit is {refuse_at:.0%}); "
                + retake
            )
    elif pixel_check:
        distance = dermoscopy_distance(pixels, pixel_check)
        if distance > float(pixel_check["max_distance"]):
            return (
                "this does not look like a dermoscopy image of a skin lesion (image statistics are "
                f"{distance:.1f} units from the training images, the limit is "
                f"{float(pixel_check['max_distance']):.1f}); {retake}"
            )
    min_confidence = rule.get("min_confidence")
    if min_confidence is not None and float(np.max(probabilities)) < min_confidence:
        return (
            f"the model is unsure (top probability {float(np.max(probabilities)):.0%} "
            f"is below {min_confidence:.0%})"
        )
    return None


def dermoscopy_distance(pixels: np.ndarray, pixel_check: dict[str, Any]) -> float:
    """Mahalanobis distance of an image's statistics from the training images' (0 = typical).

    Args:
        pixels: RGB uint8 image, shape (H, W, 3).
        pixel_check: ``{"mean": [...], "inv_cov": [[...]], "max_distance": float}`` from the card.
    """
    names = tuple(pixel_check.get("features", FEATURE_NAMES))
    if names != FEATURE_NAMES:
        raise ValueError(
            f"abstain rule was fitted on features {list(names)}, this runtime computes "
            f"{list(FEATURE_NAMES)}; refit the rule or upgrade skinlesion"
        )
    return float(
        mahalanobis(
            image_features(pixels)[None], np.asarray(pixel_check["mean"]), np.asarray(pixel_check["inv_cov"])
        )[0]
    )


def mahalanobis(features: np.ndarray, mean: np.ndarray, inv_cov: np.ndarray) -> np.ndarray:
    """Row-wise Mahalanobis distances of ``features`` (N, F) from ``mean`` (F,) under ``inv_cov`` (F, F)."""
    centred = np.asarray(features, dtype=np.float64) - mean
    return np.sqrt(np.maximum(np.einsum("nf,fg,ng->n", centred, inv_cov, centred), 0.0))


def image_features(pixels: np.ndarray) -> np.ndarray:
    """A short vector of image statistics that tells dermoscopy from other photos (see FEATURE_NAMES).

    Args:
        pixels: RGB uint8 image, shape (H, W, 3).

    Returns:
        float64 array of shape (len(FEATURE_NAMES),).
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or min(pixels.shape[:2]) < 1:
        raise ValueError(f"image_features expects RGB pixels of shape (H, W, 3), got {pixels.shape}")
    rgb = _to_grid(pixels.astype(np.float64) / 255.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    high, low = rgb.max(axis=2), rgb.min(axis=2)
    saturation = (high - low) / (high + _EPS)
    red_green = r - g
    yellow_blue = (r + g) / 2 - b
    luma_std = luma.std()
    skew = ((luma - luma.mean()) ** 3).mean() / (luma_std**3 + _EPS)

    # Texture at three scales and in colour: skin under a lens is smooth except for the lesion; a rash,
    # a room, text or noise is not.
    gradient = np.abs(np.diff(luma, axis=0)).mean() + np.abs(np.diff(luma, axis=1)).mean()
    fine = np.abs(luma - _box_blur(luma)).mean()
    chroma_fine = np.abs(red_green - _box_blur(red_green)).mean()
    coarse = luma.reshape(16, GRID // 16, 16, GRID // 16).mean(axis=(1, 3))
    coarse_gradient = np.abs(np.diff(coarse, axis=0)).mean() + np.abs(np.diff(coarse, axis=1)).mean()
    magnitude = np.hypot(np.diff(luma, axis=0)[:, :-1], np.diff(luma, axis=1)[:-1, :])

    half = GRID // 2
    quadrants = [
        (rows, cols)
        for rows in (slice(None, half), slice(half, None))
        for cols in (slice(None, half), slice(half, None))
    ]

    # Dermoscopy centres one lesion on plain skin, lit evenly through a round lens: the colour difference
    # from the surrounding skin concentrates in the middle and brightness changes with the radius.
    eighth = GRID // 8
    border = np.ones_like(luma, dtype=bool)
    border[eighth:-eighth, eighth:-eighth] = False
    centre = luma[_RADIUS < 0.5].mean()
    core = luma[_RADIUS < 0.25].mean()
    rings = [
        luma[(_RADIUS >= low) & (_RADIUS < high)].mean() - core
        for low, high in ((0.25, 0.5), (0.5, 0.75), (0.75, np.inf))
    ]
    opponent = np.stack([luma, red_green, yellow_blue], axis=-1)
    contrast = np.linalg.norm(opponent - np.median(opponent[border], axis=0), axis=-1)
    centre_ratio = np.log((contrast[_RADIUS < 0.5].mean() + 1e-3) / (contrast[_RADIUS >= 0.5].mean() + 1e-3))

    return np.array(
        [
            r.mean(),
            g.mean(),
            b.mean(),
            luma_std,
            np.clip(skew, -10.0, 10.0),
            saturation.mean(),
            saturation.std(),
            *np.percentile(saturation, [10, 90]),
            red_green.std(),
            yellow_blue.mean(),
            yellow_blue.std(),
            (r / (r + g + b + _EPS)).mean(),
            ((g > r) | (b > r)).mean(),
            (luma < 0.15).mean(),
            np.percentile(luma, 95),
            np.log(gradient + 1e-3),
            np.log(fine + 1e-3),
            np.log(coarse_gradient + 1e-3),
            np.log(chroma_fine + 1e-3),
            (magnitude > 0.1).mean(),
            np.std([luma[q].mean() for q in quadrants]),
            np.std([red_green[q].mean() for q in quadrants]),
            luma[border].mean() - centre,
            *rings,
            centre_ratio,
            contrast.mean(),
        ],
        dtype=np.float64,
    )


def _box_blur(channel: np.ndarray) -> np.ndarray:
    """3x3 mean filter with edge padding, on a GRID x GRID channel."""
    padded = np.pad(channel, 1, mode="edge")
    return sum(padded[i : i + GRID, j : j + GRID] for i in range(3) for j in range(3)) / 9.0


def _to_grid(image: np.ndarray) -> np.ndarray:
    """Area-averages (or, for small inputs, nearest-samples) an HxWxC float image to GRID x GRID."""
    height, width = image.shape[:2]
    if height >= GRID and width >= GRID:
        rows = np.linspace(0, height, GRID + 1).astype(int)
        cols = np.linspace(0, width, GRID + 1).astype(int)
        sums = np.add.reduceat(np.add.reduceat(image, rows[:-1], axis=0), cols[:-1], axis=1)
        counts = np.outer(np.diff(rows), np.diff(cols))[..., None]
        return sums / counts
    rows = (np.arange(GRID) * height // GRID).clip(0, height - 1)
    cols = (np.arange(GRID) * width // GRID).clip(0, width - 1)
    return image[rows][:, cols]
