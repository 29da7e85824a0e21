"""How sure a balanced accuracy is: bootstrap intervals, and whether one model really beats another.

HAM10000's rare classes make balanced accuracy noisy: the 1,000-image validation split holds about a dozen
dermatofibromas, so one of them more or less moves the score by more than a point. Both functions resample
images within each true class (a stratified bootstrap, so every resample keeps the split's class counts)::

    >>> balanced_accuracy_interval(y_true, y_pred)                         # (0.63, 0.72)
    >>> compare_predictions(read_predictions("a/predictions.csv"), read_predictions("b/predictions.csv"))

Where both tables hold the class probabilities (``p_<class>`` columns, as ``skinlesion evaluate`` writes
them), the comparison also scores macro AUC on the same resamples: a ranking measure that does not hinge
on one decision per image, so it resolves smaller differences; the verdict stays balanced accuracy's.
Where the classes include malignant ones (``edge.tasks``), it also scores the screening view's AUC: the
summed malignant probability ranking malignant lesions above benign ones.

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
        macro_auc: ``{"a", "b", "difference", "interval", "b_better_share"}``: one-vs-rest AUC averaged over
            the classes, on the same resamples; None when a table has no class probabilities.
        malignant_auc: The same for malignant against benign lesions (the summed probability of the
            malignant classes, named in ``"classes"``); None without probabilities or without both kinds.
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
    macro_auc: dict | None = None
    malignant_auc: dict | None = None

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
    y_true = np.asarray(y_true)
    draws = _stratified_draws(y_true, resamples, seed)
    scores = _resampled_recalls(y_true, [np.asarray(y_pred)], draws)[0].mean(axis=1)
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
    draws = _stratified_draws(y_true, resamples, seed)
    recalls = _resampled_recalls(y_true, predictions, draws)
    counts = _draw_counts(draws, len(y_true))  # the same resamples, for both AUCs
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
        macro_auc=_macro_auc_comparison(merged, classes, y_true, counts, level),
        malignant_auc=_malignant_auc_comparison(merged, classes, y_true, counts, level),
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
    if comparison.macro_auc is not None:
        lines.append(_auc_line("macro AUC", comparison.macro_auc))
    if comparison.malignant_auc is not None:
        malignant = ", ".join(comparison.malignant_auc["classes"])
        lines.append(_auc_line(f"malignant AUC ({malignant} against the rest)", comparison.malignant_auc))
    if comparison.per_class:
        lines.append("recall per class (B - A, interval)")
    lines += [
        f"  {code:>10} n={row['n']:<4} A {row['recall_a']:.3f}  B {row['recall_b']:.3f}  "
        f"{100 * row['difference']:+.1f} pt ({100 * row['interval'][0]:+.1f} to {100 * row['interval'][1]:+.1f})"
        for code, row in comparison.per_class.items()
    ]
    return "\n".join(lines)


def _auc_line(name: str, auc: dict) -> str:
    return (
        f"{name} A {auc['a']:.3f}  B {auc['b']:.3f}  B - A {100 * auc['difference']:+.1f} pt "
        f"({100 * auc['interval'][0]:+.1f} to {100 * auc['interval'][1]:+.1f}; B higher in "
        f"{auc['b_better_share']:.0%} of resamples)"
    )


def _stratified_draws(y_true: np.ndarray, resamples: int, seed: int) -> list[np.ndarray]:
    """Image indices of ``resamples`` stratified bootstrap resamples, per class present (in sorted
    order): a (resamples, class size) array each, drawn with replacement within the class."""
    rng = np.random.default_rng(seed)
    draws = []
    for k in np.unique(y_true):
        members = np.flatnonzero(y_true == k)
        draws.append(members[rng.integers(0, members.size, size=(resamples, members.size))])
    return draws


def _resampled_recalls(
    y_true: np.ndarray, predictions: list[np.ndarray], draws: list[np.ndarray]
) -> np.ndarray:
    """Per-class recall of each prediction on the resamples ``draws``: (predictions, resamples, classes
    present); their mean over classes is the balanced accuracy."""
    present = np.unique(y_true)
    recalls = np.zeros((len(predictions), len(draws[0]), len(present)))
    for column, (k, drawn) in enumerate(zip(present, draws)):
        for row, y_pred in enumerate(predictions):
            recalls[row, :, column] = (y_pred[drawn] == k).mean(axis=1)
    return recalls


def _macro_auc_comparison(
    merged: pd.DataFrame, classes: list[str], y_true: np.ndarray, counts: np.ndarray, level: float
) -> dict | None:
    """Both models' macro AUC and the paired interval of B's minus A's (see :class:`Comparison`)."""
    present = [classes[k] for k in np.unique(y_true)]
    columns = [[f"p_{code}_{side}" for code in present] for side in ("a", "b")]
    if len(present) < 2 or not all(c in merged.columns for side in columns for c in side):
        return None
    aucs = np.stack(
        [
            np.mean(
                [
                    _weighted_auc(y_true == k, merged[column].to_numpy(float), counts)
                    for k, column in zip(np.unique(y_true), side)
                ],
                axis=0,
            )
            for side in columns
        ]
    )
    return _auc_comparison(aucs, level)


def _malignant_auc_comparison(
    merged: pd.DataFrame, classes: list[str], y_true: np.ndarray, counts: np.ndarray, level: float
) -> dict | None:
    """Both models' malignant-against-benign AUC and the paired interval (see :class:`Comparison`)."""
    from edge.tasks import known_class

    malignant = [code for code in classes if (info := known_class(code)) is not None and info.malignant]
    columns = [[f"p_{code}_{side}" for code in malignant] for side in ("a", "b")]
    positive = np.isin(np.asarray(classes)[y_true], malignant)
    if positive.all() or not positive.any() or not all(c in merged.columns for side in columns for c in side):
        return None
    aucs = np.stack(
        [_weighted_auc(positive, merged[side].to_numpy(float).sum(axis=1), counts) for side in columns]
    )
    return {**_auc_comparison(aucs, level), "classes": malignant}


def _draw_counts(draws: list[np.ndarray], n: int) -> np.ndarray:
    """How often each image is drawn in each resample; the first row is the evaluated set itself."""
    counts = np.zeros((len(draws[0]) + 1, n))
    counts[0] = 1
    rows = np.arange(1, len(counts))[:, None]
    for drawn in draws:
        np.add.at(counts, (rows, drawn), 1)
    return counts


def _auc_comparison(aucs: np.ndarray, level: float) -> dict:
    """``aucs`` (2 models, 1 + resamples): each model's AUC on the set, B's minus A's with its interval."""
    differences = aucs[1, 1:] - aucs[0, 1:]
    return {
        "a": float(aucs[0, 0]),
        "b": float(aucs[1, 0]),
        "difference": float(aucs[1, 0] - aucs[0, 0]),
        "interval": _percentiles(differences, level),
        "b_better_share": float(np.mean(differences > 0)),
    }


def _weighted_auc(positive: np.ndarray, score: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """One-vs-rest AUC of ``score`` for each row of image ``counts`` (a tie counts half, as in
    sklearn): the share of (positive, negative) pairs the positive outscores."""
    order = np.argsort(score, kind="stable")
    ranked = score[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # groups of equal scores
    weights = counts[:, order]
    pos = np.add.reduceat(weights * positive[order], starts, axis=1)
    neg = np.add.reduceat(weights * ~positive[order], starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    return (pos * (below + 0.5 * neg)).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
