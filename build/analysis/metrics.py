"""Evaluation metrics on numpy arrays: what the model gets right, where, and how sure it should be.

Everything takes true class indices, predicted probabilities in output order and the class codes, so it
runs the same on a Keras model's, a TFLite file's or a bundle's outputs::

    >>> metrics = evaluate(y_true, probabilities, ["akiec", "bcc", ...], malignant_indices=[0, 1, 4])
    >>> metrics.balanced_accuracy, metrics.malignant["sensitivity"]
    >>> metrics.save("run/eval/metrics.json")
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from build.atomic import write_text_atomic
from build.analysis.significance import balanced_accuracy_interval

# Calibration error is computed where the temperature is fitted (the build's lower layer); the report reads it here.
from build.make.calibration import ECE_BINS, expected_calibration_error, reliability_bins  # noqa: F401
from edge.accuracy import balanced_accuracy

DEFAULT_THRESHOLD = 0.5
AGE_BANDS = ((0, 30, "<30"), (30, 45, "30-44"), (45, 60, "45-59"), (60, 75, "60-74"), (75, math.inf, "75+"))
# Metadata columns the subgroup table reads, with the name a reader sees.
SUBGROUP_COLUMNS = {"sex": "sex", "age_band": "age band", "localization": "body site"}
MELANOMA = "mel"
# Groups smaller than this get a row but no balanced accuracy: a handful of images says nothing.
MIN_SUBGROUP = 10


@dataclass(frozen=True)
class Metrics:
    """How a model did on one labelled data set. All rates are in 0..1; undefined values are None.

    Attributes:
        classes: Class codes in output order.
        n: Number of images evaluated.
        n_per_class: Class code -> number of images whose true label it is.
        accuracy: Share of images whose top class is right.
        balanced_accuracy: Mean recall over the classes present (the headline number for HAM10000,
            where 2 of 3 images are nevi).
        balanced_accuracy_interval: Its 95 % stratified-bootstrap interval
            (``build.analysis.significance``): how far the same model could score on another draw of images.
        per_class: Class code -> {precision, recall, f1, auc, support}.
        macro: Unweighted mean over classes of precision, recall, f1 and one-vs-rest auc.
        weighted: Support-weighted mean of precision, recall and f1.
        melanoma: {sensitivity, specificity} of the top class being ``mel``, and ``flagged``: the share of
            melanomas whose malignant probability reaches the operating point (what a user at that point
            is told: "see a doctor"; None when mel is not a malignant class). None without a mel class.
        malignant: Malignant-vs-benign on the summed malignant probability: {auc, threshold,
            sensitivity, specificity, n_malignant}; None when no class is malignant.
        confusion_matrix: Rows are true classes, columns predicted classes, in ``classes`` order.
        ece: Expected calibration error of the top probability (15 equal-width bins).
        subgroups: Rows {attribute, group, n, accuracy, balanced_accuracy} by sex, age band, body site.
        abstained: Share of images the abstain rule refused (None when not measured); all other
            numbers count every image, refused or not.
    """

    classes: tuple[str, ...]
    n: int
    n_per_class: dict[str, int]
    accuracy: float
    balanced_accuracy: float
    per_class: dict[str, dict[str, float | int | None]]
    macro: dict[str, float | None]
    weighted: dict[str, float]
    melanoma: dict[str, float | None] | None
    malignant: dict[str, float | int | None] | None
    confusion_matrix: list[list[int]]
    ece: float
    subgroups: list[dict[str, Any]] = field(default_factory=list)
    abstained: float | None = None
    balanced_accuracy_interval: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Metrics:
        names = {f.name for f in dataclasses.fields(cls)}
        tuples = ("classes", "balanced_accuracy_interval")
        return cls(
            **{k: (tuple(v) if k in tuples and v is not None else v) for k, v in data.items() if k in names}
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Writes metrics.json atomically and returns its path."""
        return write_text_atomic(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Metrics:
        return cls.from_dict(json.loads(Path(path).read_text()))


def evaluate(
    y_true: Sequence[int] | Sequence[str] | np.ndarray,
    probabilities: np.ndarray,
    classes: Sequence[str],
    malignant_indices: Sequence[int] = (),
    *,
    metadata: pd.DataFrame | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    abstained: np.ndarray | None = None,
) -> Metrics:
    """Computes every number of the evaluation report.

    Args:
        y_true: True class per image, as indices into ``classes`` or as class codes.
        probabilities: (N, num_classes) probabilities in ``classes`` order.
        classes: Class codes in output order.
        malignant_indices: Output indices whose probabilities sum to the malignant probability.
        metadata: Optional frame aligned with ``y_true`` (same order) with ``age``, ``sex``,
            ``localization`` columns where known, for the subgroup table.
        threshold: Operating point: malignant probability at or above it counts as "malignant".
        abstained: Optional boolean per image, whether the abstain rule refused it.

    Raises:
        ValueError: Shapes disagree, probabilities are not finite, or a label is not in ``classes``.
    """
    classes = tuple(classes)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y = label_indices(y_true, classes)
    if probabilities.ndim != 2 or probabilities.shape != (len(y), len(classes)):
        raise ValueError(
            f"probabilities must have shape (n_images, n_classes) = ({len(y)}, {len(classes)}), "
            f"got {probabilities.shape}"
        )
    if len(y) == 0:
        raise ValueError("cannot evaluate on zero images; check the data set and split")
    if not np.isfinite(probabilities).all():
        raise ValueError("probabilities contain NaN or inf; the model output is broken")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a probability in 0..1, got {threshold}")
    pred = probabilities.argmax(axis=1)
    indices = list(range(len(classes)))
    present = np.unique(y)

    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y, pred, labels=indices, zero_division=0
    )
    aucs = [_one_vs_rest_auc(y == k, probabilities[:, k]) for k in indices]
    per_class = {
        code: {
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f1": float(f1[k]),
            "auc": aucs[k],
            "support": int(support[k]),
        }
        for k, code in enumerate(classes)
    }
    # Macro means are over the classes that occur, so a data set without vasc is not punished for it.
    defined_aucs = [aucs[k] for k in present if aucs[k] is not None]
    macro = {
        "precision": float(np.mean(precision[present])),
        "recall": float(np.mean(recall[present])),
        "f1": float(np.mean(f1[present])),
        "auc": float(np.mean(defined_aucs)) if defined_aucs else None,
    }
    weighted = {
        name: float(np.average(values, weights=support))
        for name, values in (("precision", precision), ("recall", recall), ("f1", f1))
    }

    score = probabilities[:, list(malignant_indices)].sum(axis=1)
    melanoma = None
    if MELANOMA in classes:
        k = classes.index(MELANOMA)
        flagged = None
        if k in malignant_indices and (y == k).any():
            flagged = float(np.mean(score[y == k] >= threshold))
        melanoma = {**_sensitivity_specificity(y == k, pred == k), "flagged": flagged}
    malignant = None
    if len(malignant_indices):
        is_malignant = np.isin(y, list(malignant_indices))
        malignant = {
            "auc": _one_vs_rest_auc(is_malignant, score),
            "threshold": float(threshold),
            **_sensitivity_specificity(is_malignant, score >= threshold),
            "n_malignant": int(is_malignant.sum()),
        }

    return Metrics(
        classes=classes,
        n=len(y),
        n_per_class={code: int((y == k).sum()) for k, code in enumerate(classes)},
        accuracy=float(skm.accuracy_score(y, pred)),
        balanced_accuracy=balanced_accuracy(y, pred),
        per_class=per_class,
        macro=macro,
        weighted=weighted,
        melanoma=melanoma,
        malignant=malignant,
        confusion_matrix=skm.confusion_matrix(y, pred, labels=indices).tolist(),
        ece=expected_calibration_error(probabilities, y),
        subgroups=subgroup_table(y, pred, metadata) if metadata is not None else [],
        abstained=None if abstained is None else float(np.mean(np.asarray(abstained, dtype=bool))),
        balanced_accuracy_interval=balanced_accuracy_interval(y, pred),
    )


def label_indices(y_true: Sequence[int] | Sequence[str] | np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Class codes or indices -> int indices into ``classes``; names unknown labels in the error."""
    values = np.asarray(y_true)
    if values.dtype.kind in "iu":
        if len(values) and (values.min() < 0 or values.max() >= len(classes)):
            raise ValueError(
                f"class indices must lie in 0..{len(classes) - 1}, got {values.min()}..{values.max()}"
            )
        return values.astype(np.int64)
    lookup = {code: k for k, code in enumerate(classes)}
    unknown = sorted({str(v) for v in values} - set(lookup))
    if unknown:
        raise ValueError(
            f"labels {unknown} are not classes of this model {list(classes)}; map them first "
            "(e.g. with a label map) or evaluate a model trained on them"
        )
    return np.array([lookup[str(v)] for v in values], dtype=np.int64)


def age_band(age: float | None) -> str | None:
    """Age in years -> ``"<30"``, ``"30-44"``, ``"45-59"``, ``"60-74"`` or ``"75+"``; None when unknown."""
    if age is None or (isinstance(age, float) and math.isnan(age)):
        return None
    for low, high, name in AGE_BANDS:
        if low <= age < high:
            return name
    return None


def subgroup_table(y_true: np.ndarray, y_pred: np.ndarray, metadata: pd.DataFrame) -> list[dict[str, Any]]:
    """Accuracy and balanced accuracy by sex, age band and body site, where the metadata has them.

    Args:
        y_true: True class indices.
        y_pred: Predicted class indices.
        metadata: Frame aligned with ``y_true`` with any of ``sex``, ``age``, ``localization``.

    Returns:
        Rows ``{attribute, group, n, accuracy, balanced_accuracy}``; missing or "unknown" values are
        left out, and balanced accuracy is None for groups under MIN_SUBGROUP images.
    """
    if len(metadata) != len(y_true):
        raise ValueError(
            f"metadata has {len(metadata)} rows but there are {len(y_true)} labels; "
            "pass the evaluated rows, in the same order"
        )
    columns = {}
    if "sex" in metadata:
        columns["sex"] = metadata["sex"]
    if "age" in metadata:
        columns["age_band"] = pd.to_numeric(metadata["age"], errors="coerce").map(age_band)
    if "localization" in metadata:
        columns["localization"] = metadata["localization"]
    rows = []
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    for column, values in columns.items():
        values = values.astype(object).where(values.notna(), None).to_numpy()
        groups = [g for g in dict.fromkeys(values) if g is not None and str(g).lower() not in ("unknown", "")]
        order = [band for _, _, band in AGE_BANDS] if column == "age_band" else sorted(groups, key=str)
        for group in (g for g in order if g in groups):
            member = values == group
            n = int(member.sum())
            rows.append(
                {
                    "attribute": SUBGROUP_COLUMNS[column],
                    "group": str(group),
                    "n": n,
                    "accuracy": float(np.mean(y_true[member] == y_pred[member])),
                    "balanced_accuracy": (
                        balanced_accuracy(y_true[member], y_pred[member]) if n >= MIN_SUBGROUP else None
                    ),
                }
            )
    return rows


def _one_vs_rest_auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    # AUC is undefined when the data set has only one side (e.g. no vasc image in a small split).
    if positive.all() or not positive.any():
        return None
    return float(skm.roc_auc_score(positive, score))


def _sensitivity_specificity(actual: np.ndarray, called: np.ndarray) -> dict[str, float | None]:
    positives, negatives = actual.sum(), (~actual).sum()
    return {
        "sensitivity": float((called & actual).sum() / positives) if positives else None,
        "specificity": float((~called & ~actual).sum() / negatives) if negatives else None,
    }
