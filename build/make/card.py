"""The bundle's card: what a phone, the Pi runtime and a reader learn about the model, assembled from the
run's context and the stages' records (``build.make.results``)."""

from __future__ import annotations

import datetime
import hashlib
import subprocess
from pathlib import Path

from build.config import BuildConfig
from build.make.context import RunContext
from build.make.results import CARD_QAT_KEYS, FloatResult, QatResult
from edge.card import ModelCard
from edge.tasks import task as task_row


def make_card(
    ctx: RunContext,
    floated: FloatResult,
    quantized: QatResult | None,
    *,
    temperature: float,
    abstain: dict,
    validation: dict,
    seconds: float,
    recipe: BuildConfig | None = None,
    trained_smaller: FloatResult | None = None,
) -> ModelCard:
    """The bundle's card, before metrics are added: the run's classes and input, the stages' records
    (``floated``, and ``quantized`` when QAT ran), calibration, abstain rule and parity reports.

    With FixRes (``build.make.fixres``), ``floated`` is the model at the release's size, ``recipe`` the
    run's own config (``ctx.config`` is derived from it) and ``trained_smaller`` the float stage's record
    at the recipe's ``model.image_size``: the card records both stages and the recipe."""
    config, classes = ctx.config, ctx.classes
    # The float model's decision shift is folded into every shipped file; recorded so that a release can
    # be quantized again from its float16 file (QAT on labels takes the shift out first).
    training = {
        "config": (recipe or config).to_dict(),
        "split": ctx.split_summary(),
        "float": floated.card_record(),
        "qat": quantized.card_record() if quantized is not None else dict.fromkeys(CARD_QAT_KEYS),
        "export_seconds": round(seconds, 1),
        "code_version": code_version(),
    }
    if trained_smaller is not None:
        training["float_at_training_size"] = {
            "image_size": (recipe or config).model.image_size,
            **trained_smaller.card_record(),
        }
    task = task_row(config.data.task)
    return ModelCard(
        name=config.name,
        version=datetime.date.today().strftime("%Y.%m.%d"),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        task=f"{task.image_kind}, {len(classes)} classes",
        classes=tuple(task.class_info(c) for c in classes),
        input=ctx.spec,
        temperature=temperature,
        test_time_views=config.export.test_time_views,
        abstain=abstain,
        validation=validation,
        training=training,
        license=task.license,
        intended_use=task.intended_use,
        limitations=task.limitations,
    )


def code_version(where: Path = Path(__file__).parent) -> str:
    """The checkout's ``git describe``, recorded in the card and in the export reuse keys. A dirty
    checkout adds a digest of its uncommitted changes to tracked files, so an export made on edited code
    is not reused after another edit (``-dirty`` alone would read the same for both)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=where, timeout=10).stdout

    try:
        described = git("describe", "--always", "--dirty").strip()
        if described.endswith("-dirty"):
            described += "-" + hashlib.sha256(git("diff", "HEAD").encode()).hexdigest()[:8]
        return described or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
