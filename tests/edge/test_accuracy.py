"""The one balanced-accuracy function, on cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from edge.accuracy import balanced_accuracy


def test_balanced_accuracy_weights_classes_equally():
    labels = np.array([0, 0, 0, 0, 1])
    assert balanced_accuracy(labels, np.array([0, 0, 0, 0, 0])) == 0.5
    assert balanced_accuracy(labels, np.array([0, 0, 1, 1, 1])) == 0.75


def test_a_class_never_predicted_counts_zero_and_a_class_never_true_counts_not_at_all():
    # Recalls: class 0 is 2/3, class 1 is 0 (never predicted), class 2 is 1; class 3 is only predicted.
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 3, 3, 0, 2]
    assert balanced_accuracy(y_true, y_pred) == pytest.approx((2 / 3 + 0 + 1) / 3)


def test_it_is_sklearns_balanced_accuracy():
    metrics = pytest.importorskip("sklearn.metrics", reason="the comparison needs scikit-learn ([build])")
    rng = np.random.default_rng(0)
    for _ in range(20):
        y_true = rng.integers(0, 5, 40)
        y_pred = np.where(rng.random(40) < 0.6, y_true, rng.integers(0, 7, 40))
        assert balanced_accuracy(y_true, y_pred) == metrics.balanced_accuracy_score(y_true, y_pred)


def test_no_images_score_zero_and_mismatched_lengths_are_refused():
    assert balanced_accuracy([], []) == 0.0
    with pytest.raises(ValueError, match=r"one entry per image, got shapes \(3,\) and \(2,\)"):
        balanced_accuracy([0, 1, 1], [0, 1])
