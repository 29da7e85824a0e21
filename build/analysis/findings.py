"""The report's words: plain-language findings and recommendations, generated from the numbers.

A reader who never opens metrics.json learns where the model is strong, where it is weak and which
mistakes matter for a patient; the advice uses the model card's own facts (its calibration, its
training data, its abstain rule)::

    >>> for line in interpret(metrics) + recommendations(metrics, card):
    ...     print("-", line)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from build.analysis.metrics import Metrics
from build.make.operating_points import SCREENING_SENSITIVITY

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
    if metrics.melanoma and metrics.melanoma.get("flagged") is not None and metrics.malignant:
        lines.append(
            f"At the malignant operating point ({metrics.malignant['threshold']:.0%}) "
            f"{metrics.melanoma['flagged']:.0%} of melanomas are flagged, whatever class they are named."
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
        flagged = mel.get("flagged")
        if flagged is not None and flagged >= SCREENING_SENSITIVITY:
            out.append(
                f"Melanoma sensitivity is below 80%, but the malignant flag catches {flagged:.0%} of "
                "melanomas: lead with the flag (the risk band), not the class name, and weight melanoma "
                "higher in training before any clinical-style use."
            )
        else:
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
    abstains = (
        "; its abstain rule declines photos unlike its training images"
        if getattr(card, "abstain", None)
        else "; it has no abstain rule, so it answers for any photo"
    )
    return f"{advice}{abstains}. {limitations[0].rstrip('.')}."


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


def format_interval(
    low: float, high: float, *, min_decimals: int = 0, max_decimals: int = 3
) -> tuple[str, str]:
    """Both bounds as percentages with the fewest decimals (at least ``min_decimals``) that tell them apart.

    >>> format_interval(0.2512, 0.2549)
    ('25.1%', '25.5%')
    """
    decimals = min_decimals
    while decimals < max_decimals and f"{low:.{decimals}%}" == f"{high:.{decimals}%}":
        decimals += 1
    return f"{low:.{decimals}%}", f"{high:.{decimals}%}"
