"""Plots and the evaluation report: Markdown for the repository, one self-contained HTML file to share.

The words are generated from the numbers, so a reader who never opens metrics.json learns where the
model is strong, where it is weak and which mistakes matter for a patient::

    >>> plots = make_plots(metrics, y_true, probabilities, out_dir, training_log=run / "log.csv")
    >>> md_path, html_path = write_report(out_dir, metrics, plots, title="HAM10000 test split",
    ...                                   context={"model": "bundle v1.0 int8"})
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # the object API needs no GUI backend, pyplot or global state

from build.atomic import write_bytes_atomic, write_text_atomic
from build.analysis.metrics import Metrics, label_indices, reliability_bins

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
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
# Interpretation thresholds: what a reader would call good, usable or weak for a 7-class dermoscopy model.
STRONG_RECALL, WEAK_RECALL = 0.80, 0.50
ECE_OK, ECE_POOR = 0.05, 0.10
# Mistakes a dermatologist would flag, (true, predicted) -> why it matters.
DANGEROUS_CONFUSIONS = {
    ("mel", "nv"): "melanoma called a harmless mole: the patient may not seek care in time",
    ("mel", "bkl"): "melanoma called a benign keratosis: a missed cancer",
    ("bcc", "bkl"): "basal cell carcinoma called a benign keratosis: a missed (slow) cancer",
    ("bcc", "nv"): "basal cell carcinoma called a mole: a missed (slow) cancer",
    ("akiec", "bkl"): "actinic keratosis / Bowen's disease called a benign keratosis: a missed precancer",
}
DPI = 110


# -- plots ---------------------------------------------------------------------------------------------------


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


# -- words ---------------------------------------------------------------------------------------------------


def interpret(metrics: Metrics) -> list[str]:
    """Plain-language findings generated from the numbers: strengths, weaknesses, dangerous confusions."""
    lines = [
        (
            f"On {metrics.n} images the model names the right class for {metrics.accuracy:.0%} of them; "
            f"averaged over classes, so that rare diseases count as much as common moles, it finds "
            f"{metrics.balanced_accuracy:.0%} (balanced accuracy)."
        )
    ]
    if metrics.balanced_accuracy_interval:
        low, high = format_interval(*metrics.balanced_accuracy_interval)
        lines.append(
            f"On another draw of as many images it could plausibly land anywhere from {low} to {high} "
            "(95% bootstrap interval): judge two models with `skinlesion compare`, not by their scores alone."
        )
    recalls = {c: v["recall"] for c, v in metrics.per_class.items() if metrics.n_per_class[c] > 0}
    strong = [c for c, r in recalls.items() if r >= STRONG_RECALL]
    weak = [c for c, r in recalls.items() if r < WEAK_RECALL]
    if strong:
        lines.append("Strong: " + ", ".join(f"{c} ({recalls[c]:.0%} found)" for c in strong) + ".")
    if weak:
        lines.append(
            "Weak: "
            + ", ".join(f"{c} (only {recalls[c]:.0%} found, n={metrics.n_per_class[c]})" for c in weak)
            + "; most of these images are given another name."
        )
    if metrics.melanoma and metrics.melanoma["sensitivity"] is not None:
        lines.append(
            f"Melanoma: {metrics.melanoma['sensitivity']:.0%} of melanomas are called melanoma "
            f"(sensitivity); {metrics.melanoma['specificity']:.0%} of other lesions are correctly not "
            f"called melanoma (specificity)."
        )
    if metrics.malignant and metrics.malignant["sensitivity"] is not None:
        m = metrics.malignant
        auc = f"AUC {m['auc']:.3f}; " if m["auc"] is not None else ""
        lines.append(
            f"Malignant vs benign ({auc}flagged when the malignant probability is at least "
            f"{m['threshold']:.0%}): {m['sensitivity']:.0%} of the {m['n_malignant']} malignant lesions "
            f"are flagged and {m['specificity']:.0%} of benign ones are left alone."
        )
    lines += _confusion_findings(metrics)
    if metrics.ece <= ECE_OK:
        lines.append(
            f"Calibration is good (ECE {metrics.ece:.3f}): a stated 80% is right about 80% of the time."
        )
    else:
        quality = "poor" if metrics.ece > ECE_POOR else "fair"
        lines.append(
            f"Calibration is {quality} (ECE {metrics.ece:.3f}): the stated probabilities are off by "
            f"about {metrics.ece:.0%} on average; see the reliability diagram."
        )
    if metrics.abstained is not None:
        lines.append(f"The abstain rule declined to answer for {metrics.abstained:.1%} of these images.")
    return lines


def recommendations(metrics: Metrics, card: Any = None) -> list[str]:
    """What to do next, derived from the same numbers as :func:`interpret` and the card's facts.

    Args:
        metrics: The evaluation.
        card: The bundle's :class:`edge.card.ModelCard` (None for a bare model file): whether a
            calibration temperature was fitted, what the model was trained on, whether it abstains.
    """
    out = []
    mel = metrics.melanoma
    if mel and mel["sensitivity"] is not None and mel["sensitivity"] < STRONG_RECALL:
        out.append(
            "Melanoma sensitivity is below 80%: lower the malignant operating threshold (stored in the "
            "card) or weight melanoma higher in training before any clinical-style use."
        )
    malignant = metrics.malignant
    if malignant and malignant["sensitivity"] is not None and malignant["sensitivity"] < 0.9:
        out.append(
            f"At threshold {malignant['threshold']:.2f} the malignant screen misses "
            f"{1 - malignant['sensitivity']:.0%} of malignant lesions; a screening tool usually runs at "
            "90%+ sensitivity at the cost of more false alarms."
        )
    weak = [c for c, v in metrics.per_class.items() if metrics.n_per_class[c] and v["recall"] < WEAK_RECALL]
    if weak:
        out.append(f"Collect or augment more images of {', '.join(weak)}, or raise their class weights.")
    if metrics.ece > ECE_OK:
        temperature = getattr(card, "temperature", 1.0)
        if temperature != 1.0:
            out.append(
                f"The probabilities are still off after the fitted calibration temperature ({temperature:.2f}, "
                "in the card): refit it on more validation images, or check that these images resemble the "
                "validation split it was fitted on."
            )
        else:
            out.append(
                "Fit a calibration temperature on the validation split (build.make.calibration.fit_temperature) "
                "and store it in the card."
            )
    spread = _subgroup_spread(metrics)
    if spread:
        out.append(spread)
    out.append(_scope_advice(card))
    return out


def _scope_advice(card: Any) -> str:
    """The closing caution, in the card's own words about its training data and abstain rule."""
    advice = "Treat every output as decision support for a clinician, never as a diagnosis"
    limitations = list(getattr(card, "limitations", None) or ())
    if not limitations:
        return advice + "; what the model was trained on is in its model card."
    abstains = ("; its abstain rule declines photos unlike its training images" if getattr(card, "abstain", None)
                else "; it has no abstain rule, so it answers for any photo")
    return f"{advice}{abstains}. {limitations[0].rstrip('.')}."


# -- the report ----------------------------------------------------------------------------------------------


def write_report(
    out_dir: str | os.PathLike,
    metrics: Metrics,
    plots: Mapping[str, str | os.PathLike],
    *,
    title: str,
    context: Mapping[str, str] | None = None,
    card: Any = None,
) -> tuple[Path, Path]:
    """Writes report.md (plots linked) and report.html (plots embedded as base64) into ``out_dir``.

    Args:
        out_dir: Output folder (created). The Markdown links plots relative to it.
        metrics: The evaluation.
        plots: Plot name -> PNG path, e.g. from :func:`make_plots`.
        title: Report heading, e.g. ``"skinlesion int8 on HAM10000 test"``.
        context: What was evaluated, shown as a table (model, data, split, variant, TTA...).
        card: The evaluated bundle's model card, whose facts shape the recommendations.

    Returns:
        ``(md_path, html_path)``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    missing = [str(p) for p in plots.values() if not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"plots not found: {missing}; draw them first (build.analysis.report.make_plots)")
    sections = _sections(metrics, context or {}, card)
    md = _markdown(title, sections, plots, out_dir)
    page = _html(title, sections, plots)
    return write_text_atomic(out_dir / REPORT_MD, md), write_text_atomic(out_dir / REPORT_HTML, page)


def _sections(metrics: Metrics, context: Mapping[str, str], card: Any = None) -> dict[str, object]:
    headline = [
        ("Images", str(metrics.n)),
        ("Accuracy", _pct(metrics.accuracy)),
        ("Balanced accuracy", _pct(metrics.balanced_accuracy) + _interval(metrics.balanced_accuracy_interval)),
        ("Macro F1", _pct(metrics.macro["f1"])),
        ("Macro AUC", _num(metrics.macro["auc"])),
        ("ECE (15 bins)", _num(metrics.ece)),
    ]
    if metrics.melanoma:
        headline += [
            ("Melanoma sensitivity", _pct(metrics.melanoma["sensitivity"])),
            ("Melanoma specificity", _pct(metrics.melanoma["specificity"])),
        ]
    if metrics.malignant:
        m = metrics.malignant
        headline += [
            ("Malignant AUC", _num(m["auc"])),
            (f"Malignant sensitivity @ {m['threshold']:.2f}", _pct(m["sensitivity"])),
            (f"Malignant specificity @ {m['threshold']:.2f}", _pct(m["specificity"])),
        ]
    if metrics.abstained is not None:
        headline.append(("Abstained", _pct(metrics.abstained)))
    per_class = [
        [
            c,
            str(metrics.n_per_class[c]),
            _pct(v["precision"]),
            _pct(v["recall"]),
            _pct(v["f1"]),
            _num(v["auc"]),
        ]
        for c, v in metrics.per_class.items()
    ]
    subgroups = [
        [r["attribute"], r["group"], str(r["n"]), _pct(r["accuracy"]), _pct(r["balanced_accuracy"])]
        for r in metrics.subgroups
    ]
    return {
        "context": [(str(k), str(v)) for k, v in context.items()],
        "headline": headline,
        "interpretation": interpret(metrics),
        "recommendations": recommendations(metrics, card),
        "per_class": per_class,
        "subgroups": subgroups,
    }


PER_CLASS_HEADER = ["class", "n", "precision", "recall", "F1", "AUC"]
SUBGROUP_HEADER = ["attribute", "group", "n", "accuracy", "balanced accuracy"]


def _markdown(title: str, s: dict, plots: Mapping[str, str | os.PathLike], out_dir: Path) -> str:
    def table(header: list[str], rows: list) -> str:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])

    parts = [f"# {title}", ""]
    if s["context"]:
        parts += [table(["", ""], s["context"]), ""]
    parts += [
        "## Summary",
        "",
        table(["metric", "value"], s["headline"]),
        "",
        "## What the numbers say",
        "",
        *[f"- {line}" for line in s["interpretation"]],
        "",
        "## Recommendations",
        "",
        *[f"- {line}" for line in s["recommendations"]],
        "",
        "## Per class",
        "",
        table(PER_CLASS_HEADER, s["per_class"]),
        "",
    ]
    parts += ["## Subgroups", ""]
    parts += [
        table(SUBGROUP_HEADER, s["subgroups"])
        if s["subgroups"]
        else "No sex, age or body-site metadata in this data set.",
        "",
    ]
    parts += ["## Plots", ""]
    for name, path in plots.items():
        relative = os.path.relpath(Path(path).resolve(), out_dir.resolve())
        parts += [
            f"### {PLOT_TITLES.get(name, name)}",
            "",
            f"![{PLOT_TITLES.get(name, name)}]({relative})",
            "",
        ]
    return "\n".join(parts)


def _html(title: str, s: dict, plots: Mapping[str, str | os.PathLike]) -> str:
    e = html.escape

    def table(header: list[str] | None, rows: list) -> str:
        head = "<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>" if header else ""
        body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in rows)
        return f"<table>{head}{body}</table>"

    def items(lines: list[str]) -> str:
        return "<ul>" + "".join(f"<li>{e(line)}</li>" for line in lines) + "</ul>"

    figures = "".join(
        f'<figure><img alt="{e(PLOT_TITLES.get(name, name))}" src="data:image/png;base64,'
        f'{base64.b64encode(Path(path).read_bytes()).decode("ascii")}"><figcaption>'
        f"{e(PLOT_TITLES.get(name, name))}</figcaption></figure>"
        for name, path in plots.items()
    )
    subgroups = (
        table(SUBGROUP_HEADER, s["subgroups"])
        if s["subgroups"]
        else "<p>No sex, age or body-site metadata in this data set.</p>"
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }}
table {{ border-collapse: collapse; margin: 0.5rem 0 1.5rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }}
th {{ background: #f3f3f3; }}
figure {{ margin: 1rem 0; }} img {{ max-width: 100%; }} figcaption {{ color: #555; font-size: 0.9rem; }}
</style></head><body>
<h1>{e(title)}</h1>
{table(None, s["context"]) if s["context"] else ""}
<h2>Summary</h2>{table(["metric", "value"], s["headline"])}
<h2>What the numbers say</h2>{items(s["interpretation"])}
<h2>Recommendations</h2>{items(s["recommendations"])}
<h2>Per class</h2>{table(PER_CLASS_HEADER, s["per_class"])}
<h2>Subgroups</h2>{subgroups}
<h2>Plots</h2>{figures}
</body></html>
"""


def _confusion_findings(metrics: Metrics) -> list[str]:
    """The largest clinically dangerous confusions, then the largest confusion overall."""
    counts = np.asarray(metrics.confusion_matrix)
    index = {c: k for k, c in enumerate(metrics.classes)}
    lines = []
    for (true, predicted), why in DANGEROUS_CONFUSIONS.items():
        if true in index and predicted in index and metrics.n_per_class[true]:
            n = int(counts[index[true], index[predicted]])
            if n:
                lines.append(
                    f"{n} of {metrics.n_per_class[true]} {true} images "
                    f"({n / metrics.n_per_class[true]:.0%}) were called {predicted}: {why}."
                )
    off_diagonal = counts - np.diag(np.diag(counts))
    if off_diagonal.sum():
        i, j = np.unravel_index(np.argmax(off_diagonal), off_diagonal.shape)
        lines.append(
            f"The most frequent mistake overall: {metrics.classes[i]} called {metrics.classes[j]} "
            f"({int(off_diagonal[i, j])} images)."
        )
    return lines


def _subgroup_spread(metrics: Metrics) -> str | None:
    """A recommendation when accuracy differs a lot between sizeable subgroups of one attribute."""
    worst = None
    for attribute in dict.fromkeys(r["attribute"] for r in metrics.subgroups):
        rows = [
            r for r in metrics.subgroups if r["attribute"] == attribute and r["balanced_accuracy"] is not None
        ]
        if len(rows) >= 2:
            low = min(rows, key=lambda r: r["balanced_accuracy"])
            high = max(rows, key=lambda r: r["balanced_accuracy"])
            gap = high["balanced_accuracy"] - low["balanced_accuracy"]
            if gap >= 0.10 and (worst is None or gap > worst[0]):
                worst = (gap, attribute, low, high)
    if worst is None:
        return None
    gap, attribute, low, high = worst
    return (
        f"Balanced accuracy differs by {gap:.0%} across {attribute} ({low['group']}: "
        f"{low['balanced_accuracy']:.0%}, n={low['n']}; {high['group']}: {high['balanced_accuracy']:.0%}, "
        f"n={high['n']}): check whether that group is under-represented in training."
    )


def _save(figure: Figure, path: str | os.PathLike) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return write_bytes_atomic(path, buffer.getvalue())


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def format_interval(low: float, high: float, *, min_decimals: int = 0, max_decimals: int = 3) -> tuple[str, str]:
    """Both bounds as percentages with the fewest decimals (at least ``min_decimals``) that tell them apart.

        >>> format_interval(0.2512, 0.2549)
        ('25.1%', '25.5%')
    """
    decimals = min_decimals
    while decimals < max_decimals and f"{low:.{decimals}%}" == f"{high:.{decimals}%}":
        decimals += 1
    return f"{low:.{decimals}%}", f"{high:.{decimals}%}"


def _interval(bounds: Sequence[float] | None) -> str:
    if bounds is None:
        return ""
    low, high = format_interval(*bounds, min_decimals=1)
    return f" ({low}–{high})"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
