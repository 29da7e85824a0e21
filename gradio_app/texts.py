"""What the demo says to a patient, in plain words: the headline, advice, "I can't tell", the card page.

Everything here is text built from a :class:`edge.classifier.Prediction` and the bundle's
:class:`edge.card.ModelCard`; no Gradio, no model. Words that depend on the model's task come from
:mod:`gradio_app.tasks`, risk bands from the card's operating points (:mod:`gradio_app.bands`). The
wording never calls a result a diagnosis: the page leads with the risk band and what to do, and shows
findings only as "most similar to"; every recommendation errs towards seeing a doctor.

    >>> print(recommendation(prediction, card))
    ### What to do
    ...
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from edge.card import ModelCard
from gradio_app.bands import RiskBand, risk_scale
from gradio_app.tasks import menu_label, task_texts

DISCLAIMER = (
    "**This is not a diagnosis.** This demo is a research tool that compares your photo with the photos "
    "its model was trained on. It can be wrong, it cannot see what a doctor sees or feels, and it is not a "
    "medical device. If a spot on your skin is new, changing, bleeding, itching or worrying you, see a "
    "doctor or dermatologist, whatever this page says."
)

PRIVACY_NOTE = (
    "Your photo is analysed on this server and deleted within a few minutes; it is not stored or shared."
)

CANT_TELL_LABEL = "I can't tell"

SEE_A_DOCTOR_ANYWAY = (
    "If you are worried about the spot, see a doctor; you do not need this tool's answer for that."
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

FINDINGS_LABEL = "Most similar to (not a diagnosis)"


@dataclass(frozen=True)
class Advice:
    """What to do next, and how urgently (0 routine .. 3 as soon as possible)."""

    urgency: int
    text: str


SEE_SOON = "**See a dermatologist soon** (within the next few weeks) and show them this spot."
SEE_NOW = (
    "**See a dermatologist as soon as you can** (within days, not weeks). Do not wait for the spot to change."
)
WATCH = (
    "**No urgent visit needed** based on this photo. Keep an eye on the spot: if it grows, changes "
    "shape or colour, bleeds, itches or looks different from your other moles, see a doctor."
)

# Per-class advice for the diagnoses our bundles name; any other class falls back to its card's
# ``malignant`` flag (see ``class_advice``).
CLASS_ADVICE: dict[str, Advice] = {
    "mel": Advice(3, SEE_NOW + " Melanoma is the dangerous skin cancer, and early treatment matters most."),
    "bcc": Advice(2, SEE_SOON + " Basal cell carcinoma grows slowly but needs treatment."),
    "akiec": Advice(
        2,
        SEE_SOON + " Actinic keratoses and Bowen's disease can turn into skin cancer and are "
        "easy to treat early.",
    ),
    "nv": Advice(0, WATCH + " Most moles are harmless."),
    "bkl": Advice(0, WATCH + " Benign keratoses are harmless growths that are common with age."),
    "df": Advice(0, WATCH + " Dermatofibromas are harmless firm bumps."),
    "vasc": Advice(0, WATCH + " Vascular lesions such as cherry angiomas are harmless."),
    "Monkeypox": Advice(
        3,
        "**See a doctor promptly** and phone ahead before you go, so that they can "
        "protect other patients. Avoid close contact with others until you have been seen.",
    ),
    "Measles": Advice(
        3,
        "**Phone a doctor today** (phone first: measles spreads very easily), especially "
        "with a fever, or if you are pregnant or caring for a baby.",
    ),
    "Chickenpox": Advice(
        1,
        "**Usually mild.** See a doctor if you are an adult, pregnant, have a weak "
        "immune system, or the rash looks infected or is near the eyes.",
    ),
    "Normal": Advice(0, "**No rash found** in this photo. If you have symptoms, see a doctor anyway."),
}


def risk_band(malignant_probability: float, card: ModelCard) -> RiskBand:
    """The band of ``card``'s model that ``malignant_probability`` (0..1) falls in."""
    return risk_scale(card).band(malignant_probability)


def class_advice(code: str, card: ModelCard) -> Advice:
    """Advice for a top finding ``code`` of ``card``'s model."""
    if code in CLASS_ADVICE:
        return CLASS_ADVICE[code]
    malignant = any(info.malignant for info in card.classes if info.code == code)
    return Advice(2, SEE_SOON) if malignant else Advice(0, WATCH)


def recommendation(prediction: Any, card: ModelCard) -> str:
    """Markdown for the "what to do" box of a prediction that did not abstain: advice first, then findings.

    The most urgent of the top finding's advice and the risk band's wins, so a mole with a high
    malignant probability still sends the patient to a dermatologist.
    """
    top = prediction.top
    info = next((c for c in card.classes if c.code == top.label), None)
    advice = class_advice(top.label, card)
    paragraphs = ["### What to do"]
    if prediction.malignant_probability is not None:
        band = risk_band(prediction.malignant_probability, card)
        if band.urgency > advice.urgency:
            if advice.urgency == 0:
                paragraphs.append(
                    f"The photo looks most like a usually harmless finding, but the model's "
                    f"overall skin-cancer risk for this spot is {band.title.lower()} "
                    f"({prediction.malignant_probability:.0%}), so be careful."
                )
            advice = Advice(band.urgency, SEE_NOW if band.urgency >= 3 else SEE_SOON)
    paragraphs.append(advice.text)
    similar = f"**Most similar to:** {top.display_name} ({top.score:.0%})"
    if info is not None and info.description:
        similar += f". {info.description}"
    paragraphs += [
        similar,
        "A similarity to photos the model learned from, not a diagnosis: the list below "
        "shows how similar the photo is to each finding.",
    ]
    return "\n\n".join(paragraphs)


def risk_html(malignant_probability: float | None, card: ModelCard) -> str:
    """The headline: a coloured badge for the skin-cancer risk band, or the task's note when it has none."""
    if malignant_probability is None:
        return f'<div class="risk risk-none">{html.escape(task_texts(card).no_risk_note)}</div>'
    band = risk_band(malignant_probability, card)
    return (
        f'<div class="risk risk-{band.name}"><div class="risk-head"><span class="risk-title">Skin-cancer '
        f'risk: <b>{band.title}</b></span><span class="risk-number">model estimate: '
        f"{malignant_probability:.0%}</span></div><div>{html.escape(band.summary)}</div>"
        f'<div class="risk-meaning">{html.escape(band.meaning)}</div></div>'
    )


def cant_tell(
    card: ModelCard,
    *,
    unlike_training: bool,
    problems: Sequence[str] = (),
    better: ModelCard | None = None,
    better_menu: str = "",
) -> str:
    """Markdown for an abstained prediction, in the words of ``card``'s task.

    Args:
        card: The card of the model that abstained.
        unlike_training: True when the photo failed the pixel check (it does not look like the training
            photos), False when the model was unsure between findings.
        problems: What was wrong with the photo (``gradio_app.photo_check.photo_problems``).
        better: The card of another model on the page whose training photos this one resembles.
        better_menu: That model's entry in the Model menu (default: built from its card).
    """
    task = task_texts(card)
    paragraphs = ["### I can't tell from this photo"]
    if unlike_training:
        paragraphs.append(f"{task.not_like_training} I will not guess.")
        if problems:
            paragraphs.append("What I noticed:\n" + "\n".join(f"- {problem}" for problem in problems))
    else:
        paragraphs.append(
            "The model is unsure: this photo looks about equally like several findings, so I will not guess."
        )
    if better is not None:
        other = task_texts(better)
        entry = better_menu or menu_label(better, better.name)
        paragraphs.append(
            f'**This looks more like {other.photo_kind}.** The model "{entry}" on this page '
            "answers those: press the button above, or choose it in the Model menu."
        )
    paragraphs.append(
        "**To try again with this model, take another photo:**\n" + "\n".join(f"- {tip}" for tip in task.tips)
    )
    paragraphs.append(SEE_A_DOCTOR_ANYWAY)
    return "\n\n".join(paragraphs)


def bad_upload(cause: str) -> str:
    """Markdown for an upload that could not be read; ``cause`` is the ImageError message."""
    return BAD_UPLOAD.format(cause=cause.rstrip(". ") or "The file could not be read")


def not_an_upload(input_label: str, received: str) -> str:
    """The answer to an API caller whose image input is not a file uploaded to this server.

    ``received`` says what came instead ("the string '/etc/passwd'"); the rest says what to send.
    """
    return (
        f"{input_label} must be a file uploaded to this demo, got {received}. With gradio_client, pass "
        "handle_file('spot.jpg'); over HTTP, POST the file to /gradio_api/upload and send "
        '{"path": <the path it returned>, "meta": {"_type": "gradio.FileData"}}.'
    )


def card_markdown(card: ModelCard) -> str:
    """The model card as Markdown a patient or a reviewer can read."""
    blocks = [f"## {card.name} {card.version}", f"*{card.task}* · exported {card.created}"]
    if card.intended_use:
        blocks += ["### Intended use", card.intended_use]
    blocks += [
        "### What it recognises",
        _table(
            ("Finding", "Code", "Counts as malignant", "About"),
            [
                (c.display_name, f"`{c.code}`", "yes" if c.malignant else "no", c.description)
                for c in card.classes
            ],
        ),
    ]
    metric_rows = _metric_rows(card.metrics)
    if metric_rows:
        blocks += ["### How well it did", _table(("Data", "Measure", "Value"), metric_rows)]
    data = card.training.get("data")
    if data:
        blocks += ["### Training data", data if isinstance(data, str) else f"`{data}`"]
    if any(c.malignant for c in card.classes):
        blocks += ["### Skin-cancer risk bands", _bands_markdown(card)]
    if card.limitations:
        blocks += ["### Limitations", "\n".join(f"- {item}" for item in card.limitations)]
    spec = card.input
    files = ", ".join(f"{variant} ({_size(entry.bytes)})" for variant, entry in card.files.items())
    blocks += [
        "### Technical details",
        "\n".join(
            [
                f"- Input: {spec.width}x{spec.height} RGB, {spec.resize.replace('_', ' ')}",
                f"- Model files: {files or 'none listed'}",
                f"- Calibration temperature: {card.temperature:g}",
                f"- Abstains: {_abstain_summary(card)}",
            ]
        ),
    ]
    if card.license:
        blocks += ["### License", card.license]
    return "\n\n".join(blocks)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _size(num_bytes: int) -> str:
    return f"{num_bytes / 1e6:.1f} MB" if num_bytes >= 1e6 else f"{num_bytes / 1e3:.0f} kB"


# The card's metrics per data set are build.analysis.metrics.Metrics dicts; these are the numbers a reader needs
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


def _bands_markdown(card: ModelCard) -> str:
    scale = risk_scale(card)
    source = (
        "Thresholds fitted for this model on its validation images."
        if scale.fitted
        else "Default thresholds: this model's card does not carry fitted operating points."
    )
    rows = [(band.title, f"{band.lower:.0%}" if band.lower else "0%", band.meaning) for band in scale.bands]
    return source + "\n\n" + _table(("Band", "Starts at (malignant probability)", "What it means"), rows)


def _abstain_summary(card: ModelCard) -> str:
    rule = card.abstain
    if not rule:
        return "never (no abstain rule in this bundle)"
    reasons = []
    if rule.get("pixel_check"):
        reasons.append(f"when the photo does not look like {task_texts(card).learned_from}")
    if rule.get("min_confidence") is not None:
        reasons.append(f"when the top probability is below {float(rule['min_confidence']):.0%}")
    return " or ".join(reasons) or "per the bundle's rule"
