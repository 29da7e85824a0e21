"""The bundle's card: what a phone, the Pi runtime and a reader learn about the model, assembled from the
run's context and the stages' records (``build.make.results``)."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

from build.make.context import RunContext
from build.make.results import CARD_QAT_KEYS, FloatResult, QatResult
from edge.card import HAM10000_CLASSES, MSID_CLASSES, ClassInfo, ModelCard

LICENSES = {
    "ham10000": "Weights: CC BY-NC 4.0, inherited from HAM10000 (Tschandl et al. 2018, doi:10.7910/DVN/DBW86T). "
                "Non-commercial use only. Code: Apache-2.0.",
    "msid": "Weights: non-commercial research use, inherited from the Monkeypox Skin Images Dataset "
            "(Ali et al., Mendeley Data r9bfpnvyxr). Code: Apache-2.0.",
}
INTENDED_USE = ("Education, research and triage support: ranks likely findings in a dermoscopic image and "
                "suggests when to see a dermatologist. Not a diagnosis and not a medical device; it must not "
                "replace examination by a clinician.")
LIMITATIONS = {
    "ham10000": (
        "Trained on dermoscopic images (HAM10000, mostly fair skin, Austria and Australia); photos taken "
        "without a dermatoscope, other skin types and body sites rare in the data are out of its experience.",
        "Seven classes only: anything else (e.g. squamous cell carcinoma outside akiec, rashes, scars) is "
        "forced into one of them unless the abstain rule refuses the image.",
        "Validated on a lesion-grouped split of HAM10000, not on a prospective clinical population; "
        "minority classes (df, vasc, akiec) have few validation images, so their recall is uncertain.",
        "Non-square photos are stretched to a square, the framing it was validated on; crop around the lesion "
        "for best results.",
    ),
    "msid": (
        "Trained on 763 clinical photos collected from the web; small and not representative of any clinic.",
        "Four classes only; other rashes are forced into one of them.",
        "A research demonstration, not a screening tool.",
    ),
}


def make_card(ctx: RunContext, floated: FloatResult, quantized: QatResult | None, *, temperature: float,
              abstain: dict, validation: dict, seconds: float) -> ModelCard:
    """The bundle's card, before metrics are added: the run's classes and input, the stages' records
    (``floated``, and ``quantized`` when QAT ran), calibration, abstain rule and parity reports."""
    config, classes = ctx.config, ctx.classes
    # The float model's decision shift is folded into every shipped file; recorded so that a release can
    # be quantized again from its float16 file (QAT on labels takes the shift out first).
    training = {
        "config": config.to_dict(),
        "split": ctx.split_summary(),
        "float": floated.card_record(),
        "qat": quantized.card_record() if quantized is not None else dict.fromkeys(CARD_QAT_KEYS),
        "export_seconds": round(seconds, 1),
        "code_version": code_version(),
    }
    kind = {"ham10000": "dermoscopic images", "msid": "clinical photos"}.get(config.data.task, config.data.task)
    return ModelCard(
        name=config.name, version=datetime.date.today().strftime("%Y.%m.%d"),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        task=f"{kind}, {len(classes)} classes",
        classes=tuple(class_info(config.data.task, c) for c in classes), input=ctx.spec,
        temperature=temperature, abstain=abstain, validation=validation, training=training,
        license=LICENSES.get(config.data.task, "see the training data's license"), intended_use=INTENDED_USE,
        limitations=LIMITATIONS.get(config.data.task, ()))


def class_info(task: str, code: str) -> ClassInfo:
    """A class's display name and malignancy, from the task's known classes (the code itself if unknown)."""
    known = {c.code: c for c in (*HAM10000_CLASSES, *MSID_CLASSES)}
    return known.get(code, ClassInfo(code, code))


def code_version() -> str:
    """The checkout's ``git describe``, recorded in the card and in the export reuse keys."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
