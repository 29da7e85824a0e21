"""The evaluation report's plots: confusion matrix, ROC curves, reliability diagram, training curves.

Each plot is drawn with matplotlib's object API (no GUI backend, no pyplot state) and written
atomically as a PNG; ``build.analysis.report.write_report`` links or embeds them::

    >>> plots = make_plots(metrics, y_true, probabilities, out_dir, training_log=run / "log.csv")
    >>> plots["roc"]
    PosixPath('.../roc_curves.png')
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # the object API needs no GUI backend, pyplot or global state

from build.atomic import write_bytes_atomic
from build.analysis.metrics import Metrics, label_indices, reliability_bins

PLOT_FILES = {
    "confusion": "confusion_matrix.png",
    "roc": "roc_curves.png",
    "reliability": "reliability.png",
    "training": "training_curves.png",
}
PLOT_TITLES = {
    "confusion": "Confusion matrix",
    "roc": "ROC curves (one class vs the rest)",
    "reliability": "Reliability diagram",
    "training": "Training curves",
}
DPI = 110


def make_plots(
    metrics: Metrics,
    y_true: Sequence[int] | Sequence[str] | np.ndarray,
    probabilities: np.ndarray,
    out_dir: str | os.PathLike,
    *,
    training_log: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Draws every plot of the report into ``out_dir``; returns name -> PNG path (see PLOT_FILES)."""
    out_dir = Path(out_dir)
    y = label_indices(y_true, metrics.classes)
    plots = {
        "confusion": plot_confusion_matrix(metrics, out_dir / PLOT_FILES["confusion"]),
        "roc": plot_roc_curves(y, probabilities, metrics.classes, out_dir / PLOT_FILES["roc"]),
        "reliability": plot_reliability(y, probabilities, out_dir / PLOT_FILES["reliability"]),
    }
    if training_log is not None and Path(training_log).exists():
        plots["training"] = plot_training_curves(training_log, out_dir / PLOT_FILES["training"])
    return plots


def plot_confusion_matrix(metrics: Metrics, path: str | os.PathLike) -> Path:
    """Counts (left) and row-normalized shares, i.e. per-class recall on the diagonal (right)."""
    counts = np.asarray(metrics.confusion_matrix, dtype=np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = max(4.0, 0.6 * len(metrics.classes) + 2)
    figure = Figure(figsize=(2 * size + 1, size), layout="constrained")
    for axes, values, title, fmt in zip(
        figure.subplots(1, 2), (counts, shares), ("Counts", "Share of each true class"), ("{:.0f}", "{:.2f}")
    ):
        image = axes.imshow(values, cmap="Blues", vmin=0)
        figure.colorbar(image, ax=axes, shrink=0.8)
        axes.set(
            title=title,
            xlabel="Predicted",
            ylabel="True",
            xticks=range(len(metrics.classes)),
            yticks=range(len(metrics.classes)),
            xticklabels=metrics.classes,
            yticklabels=metrics.classes,
        )
        axes.tick_params(axis="x", labelrotation=45)
        high = values.max() if values.size else 0
        for (i, j), value in np.ndenumerate(values):
            axes.text(
                j,
                i,
                fmt.format(value),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if high and value > 0.6 * high else "black",
            )
    return _save(figure, path)


def plot_roc_curves(
    y_true: np.ndarray, probabilities: np.ndarray, classes: Sequence[str], path: str | os.PathLike
) -> Path:
    """One-vs-rest ROC curve per class present in ``y_true``, with its AUC in the legend."""
    from sklearn.metrics import roc_auc_score, roc_curve

    figure = Figure(figsize=(6, 5.5), layout="constrained")
    axes = figure.subplots()
    for k, code in enumerate(classes):
        positive = np.asarray(y_true) == k
        if positive.all() or not positive.any():
            continue  # a class absent from the data has no ROC curve
        fpr, tpr, _ = roc_curve(positive, probabilities[:, k])
        axes.plot(fpr, tpr, label=f"{code} (AUC {roc_auc_score(positive, probabilities[:, k]):.3f})")
    axes.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="chance")
    axes.set(
        xlabel="False positive rate (1 - specificity)",
        ylabel="True positive rate (sensitivity)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title="ROC, one class vs the rest",
    )
    axes.legend(loc="lower right", fontsize=8)
    return _save(figure, path)


def plot_reliability(
    y_true: np.ndarray, probabilities: np.ndarray, path: str | os.PathLike, n_bins: int = 15
) -> Path:
    """Accuracy against confidence per bin (a calibrated model follows the diagonal), with bin counts."""
    confidence, accuracy, counts = reliability_bins(probabilities, y_true, n_bins)
    edges = np.linspace(0, 1, n_bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    filled = counts > 0
    figure = Figure(figsize=(5.5, 6), layout="constrained")
    top, bottom = figure.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    top.bar(
        centres[filled], accuracy[filled], width=1 / n_bins, edgecolor="black", alpha=0.7, label="accuracy"
    )
    top.plot(
        confidence[filled], accuracy[filled], "o", color="darkred", markersize=4, label="mean confidence"
    )
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    top.set(ylabel="Accuracy", ylim=(0, 1), title="Reliability of the top class")
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(centres, counts, width=1 / n_bins, edgecolor="black", color="grey")
    bottom.set(xlabel="Top-class probability", ylabel="Images", xlim=(0, 1))
    return _save(figure, path)


def plot_training_curves(log_csv: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Loss, accuracy and learning rate per epoch from a run's CSV log, using whichever columns exist.

    Expected columns (all optional but ``epoch``): stage, loss, accuracy, val_loss, val_accuracy,
    val_balanced_accuracy, lr. Stages (e.g. head, fine-tune, qat) are drawn one after another.
    """
    log = pd.read_csv(log_csv)
    if "epoch" not in log or log.empty:
        raise ValueError(
            f"{log_csv}: a training log needs an 'epoch' column and at least one row; "
            f"found columns {list(log.columns)}"
        )
    # Epochs restart per stage; number them consecutively so stages follow each other on one axis.
    x = np.arange(1, len(log) + 1)
    panels = [
        ("Loss", [c for c in ("loss", "val_loss") if c in log]),
        ("Accuracy", [c for c in ("accuracy", "val_accuracy", "val_balanced_accuracy") if c in log]),
        ("Learning rate", [c for c in ("lr", "learning_rate") if c in log]),
    ]
    panels = [(title, columns) for title, columns in panels if columns]
    if not panels:
        raise ValueError(f"{log_csv}: no loss, accuracy or lr column to plot; found {list(log.columns)}")
    figure = Figure(figsize=(5 * len(panels), 4), layout="constrained")
    for axes, (title, columns) in zip(np.atleast_1d(figure.subplots(1, len(panels))), panels):
        for column in columns:
            axes.plot(x, pd.to_numeric(log[column], errors="coerce"), marker=".", label=column)
        if "stage" in log:
            starts = np.flatnonzero(log["stage"].ne(log["stage"].shift()).to_numpy())
            for start in starts[1:]:
                axes.axvline(x[start] - 0.5, color="grey", linestyle=":", linewidth=1)
            for start in starts:
                axes.annotate(
                    str(log["stage"].iloc[start]),
                    (x[start], 1.0),
                    xycoords=("data", "axes fraction"),
                    fontsize=7,
                    va="top",
                    color="grey",
                )
        if title == "Learning rate":
            axes.set_yscale("log")
        axes.set(title=title, xlabel="epoch (all stages)")
        axes.legend(fontsize=8)
    return _save(figure, path)


def _save(figure: Figure, path: str | os.PathLike) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return write_bytes_atomic(path, buffer.getvalue())
