"""Malignant thresholds chosen on validation: the screening point calls 9 in 10 malignant lesions."""

from __future__ import annotations

import numpy as np
import pytest

from build.make.operating_points import fit_operating_points


def scores(seed: int = 0, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    malignant = rng.random(n) < 0.2
    probability = np.clip(np.where(malignant, rng.normal(0.6, 0.2, n), rng.normal(0.25, 0.15, n)), 0, 1)
    return probability, malignant


@pytest.mark.parametrize("seed", range(5))
def test_the_screening_point_finds_nine_in_ten_and_the_high_point_spares_most_benign(seed):
    probability, malignant = scores(seed)

    points = fit_operating_points(probability, malignant)

    screening, high = points["screening"], points["high"]
    assert screening["sensitivity"] >= 0.90 and high["specificity"] >= 0.85
    assert screening["threshold"] <= high["threshold"]
    # The highest such threshold: nudging it up loses malignant lesions below 90 %.
    above = probability[malignant] >= np.nextafter(screening["threshold"], 1)
    assert above.mean() < 0.90
    # Reported numbers are what the threshold does on the same images.
    assert screening["specificity"] == pytest.approx(
        (probability[~malignant] < screening["threshold"]).mean()
    )
    assert screening["fitted_on"] == high["fitted_on"] == "val"


def test_a_perfect_separation_puts_both_points_between_the_groups():
    probability = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    points = fit_operating_points(probability, probability > 0.5)
    assert points["screening"]["sensitivity"] == 1.0 and points["screening"]["specificity"] == 1.0
    assert points["high"]["threshold"] == points["screening"]["threshold"] == 0.8


def test_operating_points_need_both_groups():
    with pytest.raises(ValueError, match="malignant and benign"):
        fit_operating_points(np.array([0.2, 0.4]), np.array([False, False]))
    with pytest.raises(ValueError, match="entries"):
        fit_operating_points(np.array([0.2, 0.4]), np.array([True]))


def test_the_card_gets_the_points_and_its_threshold_is_the_screening_one():
    pytest.importorskip("tensorflow", reason="the build needs TensorFlow (the [build] extra)")
    from build.make.export import operating_point_fields
    from edge.card import ModelCard
    from edge.tasks import HAM10000_CLASSES
    from edge.preprocess import InputSpec

    card = ModelCard(
        name="t",
        version="1",
        created="",
        task="t",
        classes=HAM10000_CLASSES,
        input=InputSpec(height=32, width=32),
    )
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(HAM10000_CLASSES), 300)
    probabilities = rng.dirichlet(np.ones(len(HAM10000_CLASSES)), 300)
    probabilities[np.arange(300), labels] += 1.0  # the model leans towards the truth
    probabilities /= probabilities.sum(axis=1, keepdims=True)

    fields = operating_point_fields(card, probabilities, labels)

    assert fields["malignant_threshold"] == fields["operating_points"]["screening"]["threshold"]
    assert fields["operating_points"]["screening"]["sensitivity"] >= 0.90
    msid = ModelCard(
        name="m",
        version="1",
        created="",
        task="m",
        classes=(HAM10000_CLASSES[2],) * 2,
        input=InputSpec(height=32, width=32),
    )
    assert operating_point_fields(msid, probabilities[:, :2], labels % 2) == {}
    # Validation images without a malignant one (a small export.validation_images): no points, no crash.
    benign = np.isin(labels, [2, 3, 5, 6])
    assert operating_point_fields(card, probabilities[benign], labels[benign]) == {}
