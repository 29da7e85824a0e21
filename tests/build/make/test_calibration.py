"""Temperature scaling fixes a deliberately over-confident model without changing its answers."""

from __future__ import annotations

import numpy as np
import pytest

from build.make.calibration import apply_temperature, calibrate, fit_balanced_shift, fit_temperature, softmax
from build.make.calibration import expected_calibration_error
from edge.classifier import apply_temperature as runtime_apply_temperature


def calibrated_logits(n: int = 4000, classes: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is calibrated by construction: labels are sampled from it."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, size=(n, classes))
    probs = softmax(logits)
    labels = np.array([rng.choice(classes, p=p) for p in probs])
    return logits, labels


def test_recovers_overconfidence_and_lowers_ece():
    logits, y = calibrated_logits()
    overconfident = 3.0 * logits  # the same ranking, three times too sure
    result = calibrate(overconfident, y)
    assert result.temperature == pytest.approx(3.0, rel=0.15)
    assert result.ece_after < result.ece_before / 3
    assert result.nll_after < result.nll_before
    calibrated = apply_temperature(overconfident, result.temperature)
    assert np.array_equal(calibrated.argmax(1), overconfident.argmax(1))
    assert expected_calibration_error(calibrated, y) == pytest.approx(result.ece_after)


def test_probabilities_and_logits_give_the_same_temperature():
    logits, y = calibrated_logits(n=1500, seed=1)
    overconfident = 2.0 * logits
    assert fit_temperature(softmax(overconfident), y) == pytest.approx(
        fit_temperature(overconfident, y), rel=0.02
    )


def test_underconfident_model_gets_temperature_below_one():
    logits, y = calibrated_logits(n=1500, seed=2)
    assert fit_temperature(logits / 2.0, y) < 0.7


def test_build_and_runtime_apply_the_same_temperature():
    logits, _ = calibrated_logits(n=20, seed=3)
    probs = softmax(2.5 * logits)
    ours = apply_temperature(probs, 2.5)
    runtime = np.stack([runtime_apply_temperature(p, 2.5) for p in probs])
    np.testing.assert_allclose(ours, runtime, atol=1e-6)


def test_rejects_bad_input():
    logits, y = calibrated_logits(n=10)
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(logits, y + 10)
    with pytest.raises(ValueError, match="N labels"):
        fit_temperature(logits, y[:5])
    with pytest.raises(ValueError, match="positive"):
        apply_temperature(logits, 0.0)


def test_uint8_quantized_probabilities_are_recognized_as_probabilities():
    from build.make.calibration import looks_like_probabilities

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 7)) * 2
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    dequantized = np.round(probabilities * 256) / 256  # what a uint8 output tensor gives back
    assert np.abs(dequantized.sum(axis=1) - 1).max() > 1e-3
    assert looks_like_probabilities(dequantized)
    assert not looks_like_probabilities(logits)


# --- balanced decisions ----------------------------------------------------------------------------------


def _scores_with_a_class_bias(seed: int, n: int = 4000):
    """Imbalanced labels (60/30/10 %) and logits that also favour class 2 by a constant the model
    picked up in training (e.g. an oversampled rare class)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    honest = 2.0 * np.eye(3)[y] + rng.normal(0, 1, (n, 3))
    return honest + np.array([0.0, 0.0, 2.5]), honest, y


def _balanced_accuracy(y, predicted):
    return np.mean([np.mean(predicted[y == c] == c) for c in np.unique(y)])


def test_a_fitted_shift_undoes_a_class_bias_and_balances_the_decisions():
    biased, honest, y = _scores_with_a_class_bias(seed=0)
    shift = fit_balanced_shift(biased, y)
    assert shift.shape == (3,) and abs(shift.sum()) < 1e-9
    assert shift[2] > shift[0]  # the favoured class is pulled back
    # Judged on fresh data: as good as the Bayes rule for balanced accuracy on the honest scores.
    fresh_biased, fresh_honest, fresh_y = _scores_with_a_class_bias(seed=1)
    before = _balanced_accuracy(fresh_y, fresh_biased.argmax(axis=1))
    after = _balanced_accuracy(fresh_y, (fresh_biased - shift).argmax(axis=1))
    ideal = _balanced_accuracy(fresh_y, fresh_honest.argmax(axis=1))  # equal-prior scores: already balanced
    assert after > before + 0.05
    assert after == pytest.approx(ideal, abs=0.02)


def test_a_shift_needs_every_class_in_the_held_out_data():
    logits = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"classes \[2\] have no examples"):
        fit_balanced_shift(logits, np.array([0, 1, 0, 1]))
