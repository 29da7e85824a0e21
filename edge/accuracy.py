"""Balanced accuracy: the mean recall over the true classes, the one score every part of the project quotes.

Training picks its best epoch by it, the parity gate compares a TFLite file with its float model by it,
evaluation reports it per data set and subgroup, and the significance test resamples it. One function, so
all of them mean the same number::

    >>> balanced_accuracy([0, 0, 1, 2], [0, 1, 1, 1])    # recalls 1/2, 1, 0
    0.5
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def balanced_accuracy(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray) -> float:
    """Mean recall over the classes present in ``y_true``; 0.0 when there is no image.

    The same number as sklearn's ``balanced_accuracy_score``, without its warning when the predictions
    name a class ``y_true`` lacks (normal in a small subgroup): such a class has no recall to average.
    A class in ``y_true`` that is never predicted counts with recall 0.

    Raises:
        ValueError: ``y_true`` and ``y_pred`` differ in shape.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must have one entry per image, got shapes {y_true.shape} and {y_pred.shape}"
        )
    classes = np.unique(y_true)
    if classes.size == 0:
        return 0.0
    return float(np.mean([np.mean(y_pred[y_true == k] == k) for k in classes]))
