"""What the demo says to a patient, in plain words: risk bands, recommendations, the disclaimer, the card.

Everything here is text built from a :class:`edge.classifier.Prediction` and the bundle's
:class:`edge.card.ModelCard`; no Gradio, no model. The wording never calls a result a diagnosis, and
every recommendation errs towards seeing a doctor.

    >>> band = risk_band(0.62)
    >>> band.name, band.title
    ('high', 'High')
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from edge.card import ModelCard

DISCLAIMER = (
    "**This is not a diagnosis.** This demo is a research tool that compares your photo with "
    "dermatoscope images it was trained on. It can be wrong, it cannot see what a doctor sees or feels, "
    "and it is not a medical device. If a spot on your skin is new, changing, bleeding, itching or "
    "worrying you, see a doctor or dermatologist, whatever this page says."
)

PRIVACY_NOTE = (
    "Your photo is analysed on this server and deleted within a few minutes; it is not stored or "
    "shared."
)

CANT_TELL_LABEL = "I can't tell"

CANT_TELL = (
    "### I can't tell from this photo\n"
    "I will not guess, because {reason}.\n\n"
    "Try a sharp, well-lit close-up of the spot alone, ideally taken through a dermatoscope (a skin "
    "magnifier), with the spot in the middle of the picture. If you are worried about the spot, see a "
    "doctor; you do not need this tool's answer for that."
)

BAD_UPLOAD = (
    "### I could not read this file\n"
    "{cause}.\n\n"
    "Please upload a photo (JPEG, PNG, WebP or an iPhone HEIC picture) of the skin spot, at least a few "
    "hundred pixels wide."
)

NO_IMAGE = "Upload, paste or take a photo of the skin spot to see what the model thinks."

EXPLANATION_NOTE = (
    "Warmer colours mark the parts of the photo that pushed the model towards its top answer. A model "
    "can look at the wrong thing (a ruler, hair, a skin marker): if the warm area is not on the spot, do "
    "not trust the answer."
)


@dataclass(frozen=True)
class RiskBand:
    """A range of malignant probability and what it means for a patient.

    Attributes:
        name: Machine name, also the CSS class suffix (``risk-low``).
        title: Short word shown in the badge.
        lower: Smallest malignant probability in this band.
        summary: One sentence that explains the band.
        urgency: How soon to see a doctor, 0 (routine) .. 3 (as soon as possible).
    """

    name: str
    title: str
    lower: float
    summary: str
    urgency: int


# 0.2 is about the share of malignant lesions among the HAM10000 training images (19.5%): above it the
# model finds this spot more suspicious than the average lesion it learned from. 0.5 means that the
# (calibrated) model thinks cancer is more likely than not.
RISK_BANDS = (
    RiskBand("low", "Low", 0.0, "The model sees mostly features of harmless spots.", 0),
    RiskBand("moderate", "Moderate", 0.2,
             "The model sees some features that also occur in skin cancers.", 2),
    RiskBand("high", "High", 0.5, "The model sees features that often occur in skin cancers.", 3),
)


@dataclass(frozen=True)
class Advice:
    """What to do next, and how urgently (0 routine .. 3 as soon as possible)."""

    urgency: int
    text: str


SEE_SOON = ("**See a dermatologist soon** (within the next few weeks) and show them this spot.")
SEE_NOW = ("**See a dermatologist as soon as you can** (within days, not weeks). Do not wait for the "
           "spot to change.")
WATCH = ("**No urgent visit needed** based on this photo. Keep an eye on the spot: if it grows, changes "
         "shape or colour, bleeds, itches or looks different from your other moles, see a doctor.")

# Per-class advice for the diagnoses our bundles name; any other class falls back to its card's
# ``malignant`` flag (see ``class_advice``).
CLASS_ADVICE: dict[str, Advice] = {
    "mel": Advice(3, SEE_NOW + " Melanoma is the dangerous skin cancer, and early treatment matters most."),
    "bcc": Advice(2, SEE_SOON + " Basal cell carcinoma grows slowly but needs treatment."),
    "akiec": Advice(2, SEE_SOON + " Actinic keratoses and Bowen's disease can turn into skin cancer and are "
                    "easy to treat early."),
    "nv": Advice(0, WATCH + " Most moles are harmless."),
    "bkl": Advice(0, WATCH + " Benign keratoses are harmless growths that are common with age."),
    "df": Advice(0, WATCH + " Dermatofibromas are harmless firm bumps."),
    "vasc": Advice(0, WATCH + " Vascular lesions such as cherry angiomas are harmless."),
    "Monkeypox": Advice(3, "**See a doctor promptly** and phone ahead before you go, so that they can "
                        "protect other patients. Avoid close contact with others until you have been seen."),
    "Measles": Advice(3, "**Phone a doctor today** (phone first: measles spreads very easily), especially "
                      "with a fever, or if you are pregnant or caring for a baby."),
    "Chickenpox": Advice(1, "**Usually mild.** See a doctor if you are an adult, pregnant, have a weak "
                         "immune system, or the rash looks infected or is near the eyes."),
    "Normal": Advice(0, "**No rash found** in this photo. If you have symptoms, see a doctor anyway."),
}


def risk_band(malignant_probability: float) -> RiskBand:
    """The band that ``malignant_probability`` (0..1) falls in."""
    if not 0.0 <= malignant_probability <= 1.0:
        raise ValueError(f"malignant_probability must lie in 0..1, got {malignant_probability}")
    return [band for band in RISK_BANDS if malignant_probability >= band.lower][-1]


def class_advice(code: str, card: ModelCard) -> Advice:
    """Advice for a top finding ``code`` of ``card``'s model."""
    if code in CLASS_ADVICE:
        return CLASS_ADVICE[code]
    malignant = any(info.malignant for info in card.classes if info.code == code)
    return Advice(2, SEE_SOON) if malignant else Advice(0, WATCH)


def recommendation(prediction: Any, card: ModelCard) -> str:
    """Markdown for the "what should I do" box of a prediction that did not abstain.

    The most urgent of the top finding's advice and the risk band's wins, so a mole with a high
    malignant probability still sends the patient to a dermatologist.
    """
    top = prediction.top
    info = next((c for c in card.classes if c.code == top.label), None)
    advice = class_advice(top.label, card)
    paragraphs = [f"### Most similar to: {top.display_name} ({top.score:.0%})"]
    if info is not None and info.description:
        paragraphs.append(info.description)
    if prediction.malignant_probability is not None:
        band = risk_band(prediction.malignant_probability)
        if band.urgency > advice.urgency:
            if advice.urgency == 0:
                paragraphs.append(f"This finding is usually harmless, but the model's overall skin-cancer risk "
                                  f"for this spot is {band.title.lower()} "
                                  f"({prediction.malignant_probability:.0%}), so be careful.")
            advice = Advice(band.urgency, SEE_NOW if band.urgency >= 3 else SEE_SOON)
    paragraphs += ["### What to do", advice.text]
    return "\n\n".join(paragraphs)


def risk_html(malignant_probability: float | None) -> str:
    """A coloured badge for the skin-cancer risk band, or a note when the model estimates none."""
    if malignant_probability is None:
        return ('<div class="risk risk-none">This model does not estimate a skin-cancer risk; it tells '
                "rashes apart.</div>")
    band = risk_band(malignant_probability)
    return (f'<div class="risk risk-{band.name}"><div class="risk-head"><span class="risk-title">Skin-cancer '
            f'risk: <b>{band.title}</b></span><span class="risk-number">model estimate: {malignant_probability:.0%} '
            f"malignant</span></div>{html.escape(band.summary)}</div>")


def cant_tell(reason: str | None) -> str:
    """Markdown for an abstained prediction; ``reason`` comes from ``edge.abstain``."""
    return CANT_TELL.format(reason=reason or "the model is unsure")


def bad_upload(cause: str) -> str:
    """Markdown for an upload that could not be read; ``cause`` is the ImageError message."""
    return BAD_UPLOAD.format(cause=cause.rstrip(". ") or "The file could not be read")


def card_markdown(card: ModelCard) -> str:
    """The model card as Markdown a patient or a reviewer can read."""
    blocks = [f"## {card.name} {card.version}", f"*{card.task}* · exported {card.created}"]
    if card.intended_use:
        blocks += ["### Intended use", card.intended_use]
    blocks += ["### What it recognises", _table(
        ("Finding", "Code", "Counts as malignant", "About"),
        [(c.display_name, f"`{c.code}`", "yes" if c.malignant else "no", c.description) for c in card.classes])]
    metric_rows = _metric_rows(card.metrics)
    if metric_rows:
        blocks += ["### How well it did", _table(("Data", "Measure", "Value"), metric_rows)]
    data = card.training.get("data")
    if data:
        blocks += ["### Training data", data if isinstance(data, str) else f"`{data}`"]
    if card.limitations:
        blocks += ["### Limitations", "\n".join(f"- {item}" for item in card.limitations)]
    spec = card.input
    files = ", ".join(f"{variant} ({_size(entry.bytes)})" for variant, entry in card.files.items())
    blocks += ["### Technical details", "\n".join([
        f"- Input: {spec.width}x{spec.height} RGB, {spec.resize.replace('_', ' ')}",
        f"- Model files: {files or 'none listed'}",
        f"- Calibration temperature: {card.temperature:g}",
        f"- Abstains: {_abstain_summary(card.abstain)}"])]
    if card.license:
        blocks += ["### License", card.license]
    return "\n\n".join(blocks)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 1e6:.1f} MB" if num_bytes >= 1e6 else f"{num_bytes / 1e3:.0f} kB"


# The card's metrics per data set are build.metrics.Metrics dicts; these are the numbers a reader needs
# (the per-class tables, confusion matrix and subgroups live in the bundle's report).
HEADLINE_METRICS = (
    ("n", "images", "count"),
    ("accuracy", "top answer right", "percent"),
    ("balanced_accuracy", "balanced accuracy (mean recall per finding)", "percent"),
    ("macro.auc", "mean AUC over findings", "number"),
    ("melanoma.sensitivity", "melanomas called melanoma (sensitivity)", "percent"),
    ("melanoma.specificity", "other spots not called melanoma (specificity)", "percent"),
    ("malignant.auc", "malignant vs benign AUC", "number"),
    ("malignant.sensitivity", "malignant spots flagged (sensitivity)", "percent"),
    ("malignant.specificity", "benign spots not flagged (specificity)", "percent"),
    ("ece", "calibration error (lower is better)", "number"),
    ("abstained", "images it refused to answer", "percent"),
)


def _metric_rows(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    for name, values in metrics.items():
        if not isinstance(values, dict):
            continue
        where = f"{prefix} / {name}" if prefix else str(name)
        if "accuracy" not in values:  # metrics grouped one level deeper, e.g. split -> data set
            rows += _metric_rows(values, where)
            continue
        for key, label, kind in HEADLINE_METRICS:
            value: Any = values
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            shown = {"count": f"{int(value):,}", "percent": f"{value:.1%}", "number": f"{value:.3f}"}[kind]
            interval = values.get(f"{key}_interval")
            if interval:
                shown += f" (95% interval {interval[0]:.1%}–{interval[1]:.1%})"
            rows.append((where, label, shown))
    return rows


def _abstain_summary(rule: dict[str, Any]) -> str:
    if not rule:
        return "never (no abstain rule in this bundle)"
    reasons = []
    if rule.get("pixel_check"):
        reasons.append("when the photo does not look like dermoscopy")
    if rule.get("min_confidence") is not None:
        reasons.append(f"when the top probability is below {float(rule['min_confidence']):.0%}")
    return " or ".join(reasons) or "per the bundle's rule"
