"""The abstain rule: when the runtime should say "I can't tell" instead of naming a class.

The rule is a dict stored in the bundle's card (``card.abstain``) and fitted on the validation split by
the build (``build.trust.fit_abstain_rule``). It has two independent checks, both plain numbers:

* ``pixel_check``: is this a dermoscopy image at all? A classifier's top probability says nothing about
  that (it is often confident on a holiday photo), so a few cheap image statistics (colour moments,
  centre-vs-border contrast, vignette darkness, texture energy) are compared with those of the training
  images by a Mahalanobis distance. Images farther than ``max_distance`` are refused.
* ``min_confidence``: is the model sure enough? Refuses when the top calibrated probability is lower.

An empty rule never abstains. Everything here is numpy, so a Raspberry Pi evaluates it without
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
# chosen by backward elimination from 35 candidates on HAM10000 train/val and half of the MSID photos.
FEATURE_NAMES = (
    "mean_r", "mean_g", "std_luma", "mean_saturation", "std_red_green",
    "log_gradient_energy", "log_fine_detail", "log_full_res_detail", "log_coarse_gradient", "edge_share",
    "quadrant_red_green_spread", "ring_3_saturation", "p95_luma",
    "log_centre_contrast_ratio", "contrast_mass_radius",
)
_EPS = 1e-6
# Distance of each grid cell from the image centre, 0 at the centre and 1 at the middle of each side.
_RADIUS = np.hypot(*np.meshgrid(*(2 * [np.linspace(-1, 1, GRID)]), indexing="ij"))


def abstain_reason(probabilities: np.ndarray, pixels: np.ndarray, rule: dict[str, Any]) -> str | None:
    """Returns why the model should not answer for this image, or None when it may answer.

    Args:
        probabilities: Calibrated class probabilities, shape (num_classes,).
        pixels: The preprocessed RGB uint8 image the model saw, shape (H, W, 3).
        rule: The card's abstain rule, e.g. ``{"min_confidence": 0.4, "pixel_check": {...}}``.
    """
    pixel_check = rule.get("pixel_check")
    if pixel_check:
        distance = dermoscopy_distance(pixels, pixel_check)
        if distance > float(pixel_check["max_distance"]):
            return ("this does not look like a dermoscopy image of a skin lesion (image statistics are "
                    f"{distance:.1f} units from the training images, the limit is "
                    f"{float(pixel_check['max_distance']):.1f}); take a close-up through a dermatoscope")
    min_confidence = rule.get("min_confidence")
    if min_confidence is not None and float(np.max(probabilities)) < min_confidence:
        return (f"the model is unsure (top probability {float(np.max(probabilities)):.0%} "
                f"is below {min_confidence:.0%})")
    return None


def dermoscopy_distance(pixels: np.ndarray, pixel_check: dict[str, Any]) -> float:
    """Mahalanobis distance of an image's statistics from the training images' (0 = typical).

    Args:
        pixels: RGB uint8 image, shape (H, W, 3).
        pixel_check: ``{"mean": [...], "inv_cov": [[...]], "max_distance": float}`` from the card.
    """
    names = tuple(pixel_check.get("features", FEATURE_NAMES))
    if names != FEATURE_NAMES:
        raise ValueError(f"abstain rule was fitted on features {list(names)}, this runtime computes "
                         f"{list(FEATURE_NAMES)}; refit the rule or upgrade skinlesion")
    return float(mahalanobis(image_features(pixels)[None], np.asarray(pixel_check["mean"]),
                             np.asarray(pixel_check["inv_cov"]))[0])


def mahalanobis(features: np.ndarray, mean: np.ndarray, inv_cov: np.ndarray) -> np.ndarray:
    """Row-wise Mahalanobis distances of ``features`` (N, F) from ``mean`` (F,) under ``inv_cov`` (F, F)."""
    centred = np.asarray(features, dtype=np.float64) - mean
    return np.sqrt(np.maximum(np.einsum("nf,fg,ng->n", centred, inv_cov, centred), 0.0))


def image_features(pixels: np.ndarray) -> np.ndarray:
    """A short vector of image statistics that tells dermoscopy from other photos (see FEATURE_NAMES).

    Args:
        pixels: RGB uint8 image, shape (H, W, 3), at least 3x3.

    Returns:
        float64 array of shape (len(FEATURE_NAMES),).
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or min(pixels.shape[:2]) < 3:
        raise ValueError(f"image_features expects RGB pixels of shape (H, W, 3), got {pixels.shape}")
    rgb = _to_grid(pixels.astype(np.float64) / 255.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    high, low = rgb.max(axis=2), rgb.min(axis=2)
    saturation = (high - low) / (high + _EPS)
    red_green = r - g
    yellow_blue = (r + g) / 2 - b

    # Texture at four scales: sensor noise and JPEG/PNG detail at the input resolution, fine and coarse
    # structure on the grid. Dermoscopy under a lens is smooth at every scale but the lesion's.
    full = pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 255.0
    full_detail = np.abs(full[1:-1, 1:-1] - (full[:-2, 1:-1] + full[2:, 1:-1] + full[1:-1, :-2]
                                             + full[1:-1, 2:]) / 4).mean()
    gradient = np.abs(np.diff(luma, axis=0)).mean() + np.abs(np.diff(luma, axis=1)).mean()
    padded = np.pad(luma, 1, mode="edge")
    blurred = sum(padded[i:i + GRID, j:j + GRID] for i in range(3) for j in range(3)) / 9.0
    fine = np.abs(luma - blurred).mean()
    coarse = luma.reshape(16, GRID // 16, 16, GRID // 16).mean(axis=(1, 3))
    coarse_gradient = np.abs(np.diff(coarse, axis=0)).mean() + np.abs(np.diff(coarse, axis=1)).mean()
    magnitude = np.hypot(np.diff(luma, axis=0)[:, :-1], np.diff(luma, axis=1)[:-1, :])

    half = GRID // 2
    quadrant_red_green = [red_green[rows, cols].mean() for rows in (slice(None, half), slice(half, None))
                          for cols in (slice(None, half), slice(half, None))]
    ring_saturation = saturation[_RADIUS >= 0.75].mean() - saturation[_RADIUS < 0.25].mean()

    # One lesion in the middle of plain skin: the colour difference from the surrounding skin concentrates
    # in the centre. A rash, a face or a room spreads it over the whole picture.
    eighth = GRID // 8
    border = np.ones_like(luma, dtype=bool)
    border[eighth:-eighth, eighth:-eighth] = False
    opponent = np.stack([luma, red_green, yellow_blue], axis=-1)
    contrast = np.linalg.norm(opponent - np.median(opponent[border], axis=0), axis=-1)
    centre_ratio = np.log((contrast[_RADIUS < 0.5].mean() + 1e-3) / (contrast[_RADIUS >= 0.5].mean() + 1e-3))
    mass_radius = (contrast * _RADIUS).sum() / (contrast.sum() + _EPS)

    return np.array([
        r.mean(), g.mean(), luma.std(), saturation.mean(), red_green.std(),
        np.log(gradient + 1e-3), np.log(fine + 1e-3), np.log(full_detail + 1e-3), np.log(coarse_gradient + 1e-3),
        (magnitude > 0.1).mean(),
        np.std(quadrant_red_green), ring_saturation, np.percentile(luma, 95),
        centre_ratio, mass_radius,
    ], dtype=np.float64)


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
