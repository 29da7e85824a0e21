"""Malignant-probability thresholds chosen on validation for stated sensitivity and specificity.

The card records them (``card.operating_points``); the demo's risk bands start at them and the card's
``malignant_threshold`` is the screening point, so a new release brings its own thresholds instead of
inheriting constants that suited another model::

    >>> points = fit_operating_points(malignant_probability, is_malignant)
    >>> points["screening"]["sensitivity"] >= 0.90
    True
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SCREENING_SENSITIVITY = 0.90  # at least 9 in 10 malignant lesions at or above the screening point
HIGH_SPECIFICITY = 0.85  # at least 85 in 100 benign lesions below the "high" point


def fit_operating_points(
    malignant_probability: np.ndarray,
    is_malignant: np.ndarray,
    *,
    screening_sensitivity: float = SCREENING_SENSITIVITY,
    high_specificity: float = HIGH_SPECIFICITY,
    fitted_on: str = "val",
) -> dict[str, Any]:
    """The ``screening`` point (the highest threshold that still calls ``screening_sensitivity`` of the
    malignant lesions) and the ``high`` point (the lowest threshold that leaves ``high_specificity`` of
    the benign ones below it), each with the sensitivity and specificity it reached.

    A lesion is called malignant when its probability is at or above the threshold.

    Raises:
        ValueError: Either group is empty, or the arrays differ in length.
    """
    score = np.asarray(malignant_probability, dtype=np.float64)
    actual = np.asarray(is_malignant, dtype=bool)
    if score.shape != actual.shape:
        raise ValueError(f"malignant_probability has {score.shape} entries, is_malignant {actual.shape}")
    if actual.all() or not actual.any():
        raise ValueError(
            f"operating points need malignant and benign images; got {int(actual.sum())} "
            f"malignant of {len(actual)}"
        )
    malignant = np.sort(score[actual])[::-1]
    benign = np.sort(score[~actual])
    screening = float(malignant[math.ceil(screening_sensitivity * len(malignant)) - 1])
    # Just above the benign score at the wanted quantile, so that score itself stays below the threshold.
    high = float(np.nextafter(benign[math.ceil(high_specificity * len(benign)) - 1], np.inf))
    high = max(high, screening)  # "high" never starts below "screening"
    return {
        name: _point(threshold, score, actual, fitted_on)
        for name, threshold in (("screening", screening), ("high", high))
    }


def _point(threshold: float, score: np.ndarray, actual: np.ndarray, fitted_on: str) -> dict[str, Any]:
    called = score >= threshold
    return {
        "threshold": threshold,
        "sensitivity": float(called[actual].mean()),
        "specificity": float((~called[~actual]).mean()),
        "fitted_on": fitted_on,
    }
