"""How sure a balanced accuracy is: bootstrap intervals, and whether one model really beats another.

HAM10000's rare classes make balanced accuracy noisy: the 1,000-image validation split holds about a dozen
dermatofibromas, so one of them more or less moves the score by more than a point. Both functions resample
images within each true class (a stratified bootstrap, so every resample keeps the split's class counts)::

    >>> balanced_accuracy_interval(y_true, y_pred)                         # (0.63, 0.72)
    >>> compare_predictions(read_predictions("a/predictions.csv"), read_predictions("b/predictions.csv"))

Images of one lesion are resampled independently, so the intervals are, if anything, a little narrow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from edge.accuracy import balanced_accuracy

RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Comparison:
    """Model B against model A on the same labelled images.

    Attributes:
        n: Images both were evaluated on.
        balanced_accuracy_a, balanced_accuracy_b: Each model's balanced accuracy on them.
        difference: ``b - a``.
        interval: The ``level`` bootstrap interval of the difference (paired: both models scored on the
            same resampled images).
        b_better_share: Share of resamples in which B scored higher than A.
        level: Confidence level of ``interval``.
        per_class: Class -> ``{"n", "recall_a", "recall_b", "difference", "interval"}``, the recall of each
            model and the interval of B's minus A's on the same resamples.
        left_out: Images only one evaluation holds (``{"a": n, "b": n}``), left out with ``shared_only``.
    """

    n: int
    balanced_accuracy_a: float
    balanced_accuracy_b: float
    difference: float
    interval: tuple[float, float]
    b_better_share: float
    level: float
    per_class: dict[str, dict] = field(default_factory=dict)
    left_out: dict[str, int] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        low, high = self.interval
        if low > 0:
            return "B is better"
        if high < 0:
            return "A is better"
        return "no measurable difference"


def balanced_accuracy_interval(
    y_true: np.ndarray, y_pred: np.ndarray, *, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0
) -> tuple[float, float]:
    """The ``level`` percentile-bootstrap interval of the balanced accuracy of ``y_pred``."""
    scores = _resampled_recalls(np.asarray(y_true), [np.asarray(y_pred)], resamples, seed)[0].mean(axis=1)
    return _percentiles(scores, level)


def compare_predictions(
    a: pd.DataFrame,
    b: pd.DataFrame,
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
    shared_only: bool = False,
) -> Comparison:
    """Compares two ``predictions.csv`` tables of ``skinlesion evaluate`` (columns image_id, label, predicted).

    With ``shared_only`` the images only one table holds are left out (and counted), e.g. two releases
    whose test splits differ by a few images.

    Raises:
        ValueError: The tables do not hold the same images (unless ``shared_only``) with the same labels.
    """
    merged = a.merge(b, on="image_id", suffixes=("_a", "_b"), validate="one_to_one")
    left_out = {"a": len(a) - len(merged), "b": len(b) - len(merged)}
    if any(left_out.values()) and not shared_only:
        raise ValueError(
            f"the two evaluations share {len(merged)} images of {len(a)} and {len(b)}: evaluate "
            "both models on the same --data and --split, or pass --shared-only to compare on the "
            "images both hold"
        )
    if merged.empty:
        raise ValueError("the two evaluations share no image: evaluate both models on the same data")
    if not (merged["label_a"] == merged["label_b"]).all():
        raise ValueError("the two evaluations label some images differently: evaluate both on the same data")
    classes = sorted(set(merged["label_a"]) | set(merged["predicted_a"]) | set(merged["predicted_b"]))
    index = {code: i for i, code in enumerate(classes)}
    y_true = merged["label_a"].map(index).to_numpy()
    predictions = [merged[column].map(index).to_numpy() for column in ("predicted_a", "predicted_b")]
    score_a, score_b = (balanced_accuracy(y_true, p) for p in predictions)
    recalls = _resampled_recalls(y_true, predictions, resamples, seed)
    scores_a, scores_b = recalls.mean(axis=2)
    differences = scores_b - scores_a
    per_class = {}
    for column, k in enumerate(np.unique(y_true)):
        hits = [float(np.mean(p[y_true == k] == k)) for p in predictions]
        per_class[classes[k]] = {
            "n": int(np.sum(y_true == k)),
            "recall_a": hits[0],
            "recall_b": hits[1],
            "difference": hits[1] - hits[0],
            "interval": _percentiles(recalls[1, :, column] - recalls[0, :, column], level),
        }
    return Comparison(
        n=len(merged),
        balanced_accuracy_a=score_a,
        balanced_accuracy_b=score_b,
        difference=score_b - score_a,
        interval=_percentiles(differences, level),
        b_better_share=float(np.mean(differences > 0)),
        level=level,
        per_class=per_class,
        left_out=left_out if shared_only else {},
    )


def read_predictions(path: str | os.PathLike) -> pd.DataFrame:
    """A ``predictions.csv``, or the ``skinlesion evaluate --out`` folder holding one."""
    path = Path(path)
    file = path / "predictions.csv" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(
            f"{path}: no predictions.csv; pass the --out folder of `skinlesion evaluate` "
            "or its predictions.csv"
        )
    table = pd.read_csv(file, dtype={"image_id": str, "label": str, "predicted": str})
    missing = {"image_id", "label", "predicted"} - set(table.columns)
    if missing:
        raise ValueError(
            f"{file} has no {', '.join(sorted(missing))} column: is it a predictions.csv of "
            "`skinlesion evaluate`?"
        )
    return table


def format_comparison(comparison: Comparison, name_a: str, name_b: str) -> str:
    """The comparison as a few lines of terminal text, with each class's recall below."""
    low, high = comparison.interval
    lines = [
        f"{comparison.n} images, balanced accuracy",
        f"  A {comparison.balanced_accuracy_a:.3f}  {name_a}",
        f"  B {comparison.balanced_accuracy_b:.3f}  {name_b}",
        f"  B - A {100 * comparison.difference:+.1f} pt ({comparison.level:.0%} interval "
        f"{100 * low:+.1f} to {100 * high:+.1f} pt; B higher in {comparison.b_better_share:.0%} of resamples)",
        f"  {comparison.verdict}",
    ]
    lines += [
        f"  left out: {n} images only {side.upper()} was evaluated on"
        for side, n in comparison.left_out.items()
        if n
    ]
    if comparison.per_class:
        lines.append("recall per class (B - A, interval)")
    lines += [
        f"  {code:>10} n={row['n']:<4} A {row['recall_a']:.3f}  B {row['recall_b']:.3f}  "
        f"{100 * row['difference']:+.1f} pt ({100 * row['interval'][0]:+.1f} to {100 * row['interval'][1]:+.1f})"
        for code, row in comparison.per_class.items()
    ]
    return "\n".join(lines)


def _resampled_recalls(
    y_true: np.ndarray, predictions: list[np.ndarray], resamples: int, seed: int
) -> np.ndarray:
    """Per-class recall of each prediction on the same ``resamples`` stratified bootstrap resamples:
    (predictions, resamples, classes present); their mean over classes is the balanced accuracy.

    Within a class, recall on a resample is the mean of that class's hit indicators drawn with
    replacement, so only the hits need resampling: (resamples, class size) draws per class.
    """
    rng = np.random.default_rng(seed)
    present = np.unique(y_true)
    recalls = np.zeros((len(predictions), resamples, len(present)))
    for column, k in enumerate(present):
        members = np.flatnonzero(y_true == k)
        draws = members[rng.integers(0, members.size, size=(resamples, members.size))]
        for row, y_pred in enumerate(predictions):
            recalls[row, :, column] = (y_pred[draws] == k).mean(axis=1)
    return recalls


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
