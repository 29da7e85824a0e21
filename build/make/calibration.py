"""Temperature scaling: one number that makes a model's probabilities mean what they say.

Fitted on the validation split after training, stored in the card (``card.temperature``) and applied by
the runtime to every output. It never changes which class ranks first, only how sure the model sounds::

    >>> temperature = fit_temperature(val_probabilities, val_labels)   # e.g. 1.6 for an over-confident model
    >>> calibrated = apply_temperature(test_probabilities, temperature)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from edge.classifier import LOG_EPSILON

# Searching log T in this range covers T from ~0.05 to ~20, far beyond any sane model.
LOG_T_BOUNDS = (-3.0, 3.0)
ECE_BINS = 15


@dataclass(frozen=True)
class CalibrationResult:
    """A fitted temperature and what it did on the data it was fitted on.

    Attributes:
        temperature: Divide logits by this (>1 softens an over-confident model).
        nll_before: Mean negative log-likelihood of the true class at T = 1.
        nll_after: The same at the fitted temperature.
        ece_before: Expected calibration error (15 bins) at T = 1.
        ece_after: The same at the fitted temperature.
        n: Number of images it was fitted on.
    """

    temperature: float
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def fit_temperature(probs_or_logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimizes the validation negative log-likelihood.

    Args:
        probs_or_logits: (N, C) softmax probabilities (rows in 0..1 summing to 1) or raw logits;
            probabilities are turned into logits with ``log``, which softmax inverts exactly.
        y: (N,) true class indices.

    Returns:
        The temperature T > 0; calibrated probabilities are ``softmax(logits / T)``.
    """
    logits, y = _check(probs_or_logits, y)
    result = minimize_scalar(
        lambda log_t: _nll(logits / np.exp(log_t), y),
        bounds=LOG_T_BOUNDS,
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def calibrate(probs_or_logits: np.ndarray, y: np.ndarray) -> CalibrationResult:
    """Fits the temperature and reports NLL and ECE before and after, on the same data."""
    logits, y = _check(probs_or_logits, y)
    temperature = fit_temperature(logits, y)
    before, after = softmax(logits), softmax(logits / temperature)
    return CalibrationResult(
        temperature=temperature,
        nll_before=_nll(logits, y),
        nll_after=_nll(logits / temperature, y),
        ece_before=expected_calibration_error(before, y),
        ece_after=expected_calibration_error(after, y),
        n=len(y),
    )


def fit_balanced_shift(probs_or_logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A per-class logit shift that turns a model's scores into balanced decisions, fitted on held-out data.

    Fits a temperature and one bias per class by negative log-likelihood (bias-corrected temperature
    scaling): the model's probabilities then match this data's class mix, whatever its training
    sampling did (an oversampled rare class, memorised from its few images, is often predicted far too
    often). Dividing by this data's class frequencies gives the decision with the best expected
    balanced accuracy; the shift expresses it in the model's own logits: argmax(logits - shift).
    Every class must occur in ``y``. Returns the mean-centred shift.
    """
    logits, y = _check(probs_or_logits, y)
    num_classes = logits.shape[1]
    counts = np.bincount(y, minlength=num_classes)
    if np.any(counts == 0):
        missing = np.flatnonzero(counts == 0).tolist()
        raise ValueError(f"cannot fit class biases: classes {missing} have no examples in the held-out data")

    def loss(params: np.ndarray) -> float:
        return _nll(logits / np.exp(params[0]) + params[1:], y)

    fitted = minimize(
        loss,
        np.zeros(num_classes + 1),
        method="L-BFGS-B",
        bounds=[LOG_T_BOUNDS] + [(-20.0, 20.0)] * num_classes,
    ).x
    temperature, bias = np.exp(fitted[0]), fitted[1:]
    shift = -temperature * (bias - np.log(counts / counts.sum()))
    return shift - shift.mean()


def apply_temperature(probs_or_logits: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated ``softmax(logits / temperature)`` for probabilities or logits, any batch shape."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return softmax(to_logits(probs_or_logits) / temperature)


def to_logits(probs_or_logits: np.ndarray) -> np.ndarray:
    """Logits unchanged; probabilities (last axis in 0..1, summing to 1) -> their logs.

    Uses the runtime's epsilon (``edge.classifier``), so a temperature fitted here means the same there.
    """
    values = np.asarray(probs_or_logits, dtype=np.float64)
    if looks_like_probabilities(values):
        return np.log(np.clip(values, 0.0, None) + LOG_EPSILON)
    return values


def looks_like_probabilities(values: np.ndarray) -> bool:
    """Whether every row lies in 0..1 and sums to 1, within the rounding of a quantized output.

    A uint8 output tensor dequantizes in steps of 1/256, so its rows sum to 1 only to within about
    half a step per class; logits almost never fit in 0..1 and sum to 1 by accident.
    """
    values = np.asarray(values)
    tolerance = max(1e-3, values.shape[-1] / 512) if values.ndim else 1e-3
    return bool(
        values.size
        and values.min() >= 0
        and values.max() <= 1
        and np.allclose(values.sum(axis=-1), 1.0, atol=tolerance)
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _nll(logits: np.ndarray, y: np.ndarray) -> float:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(y)), y].mean())


def _check(probs_or_logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = to_logits(probs_or_logits)
    y = np.asarray(y)
    if logits.ndim != 2 or len(logits) != len(y) or len(y) == 0:
        raise ValueError(
            f"need (N, C) outputs and N labels with N > 0, got outputs {logits.shape} and {len(y)} labels"
        )
    if y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= logits.shape[1]:
        raise ValueError(f"labels must be class indices in 0..{logits.shape[1] - 1}, got {y[:5]}...")
    if not np.isfinite(logits).all():
        raise ValueError("outputs contain NaN or inf; the model output is broken")
    return logits, y


def expected_calibration_error(
    probabilities: np.ndarray, y_true: np.ndarray, n_bins: int = ECE_BINS
) -> float:
    """Mean |accuracy - confidence| of the top class over equal-width bins, weighted by bin size."""
    confidence, accuracy, counts = reliability_bins(probabilities, y_true, n_bins)
    total = counts.sum()
    filled = counts > 0
    return float(np.sum(counts[filled] * np.abs(accuracy[filled] - confidence[filled])) / total)


def reliability_bins(
    probabilities: np.ndarray, y_true: np.ndarray, n_bins: int = ECE_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per confidence bin: mean top probability, accuracy and count (empty bins hold NaN and 0).

    Bins are (k/n, (k+1)/n]; a confidence of exactly 0 falls in the first bin.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y_true = np.asarray(y_true)
    top = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y_true
    bins = np.clip(np.ceil(top * n_bins).astype(int) - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(bins, weights=top, minlength=n_bins) / counts
        accuracy = np.bincount(bins, weights=correct.astype(float), minlength=n_bins) / counts
    return confidence, accuracy, counts
