"""The export's second pass: the shipped files again, with the temperature and the abstain head inside.

Once the first pass (``build.make.export.export_checked``) has chosen and gated the shipped files, the
temperature is fitted on the shipped int8 file's validation outputs and each shipped variant is exported
again from its source model into ``export/final/`` with the temperature folded into its head and the
abstain head as a second output, so a phone (MediaPipe Tasks) returns calibrated scores and "I can't
tell" with no code of ours. Each file is validated again against the float model at that temperature,
and its head must answer validation images and refuse images it never learned from.

A calibrated file whose inputs are unchanged since the last export (its source model's bytes, the
temperature, the abstain head's training, validation and negative images, the export settings, seed and
code version) is reused with its parity report and its head's card fields (``build.make.reuse``)::

    >>> calibrated = export_calibrated(ctx, checked, floated, quantized, out, val_pixels, val_labels)
    >>> calibrated.files["int8"], calibrated.heads["int8"].to_card()["val_accepted"]
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from build.atomic import write_text_atomic
from build.make.card import code_version
from build.make.context import RunContext
from build.make.datasets import fingerprint
from build.make.export import PARITY_FILE, SHIPPED_INT8, Checked, file_metadata, parity_gate
from build.make.head_gate import head_failures, measure_head, unseen_negatives
from build.make.head_images import head_negative_images, head_training_images
from build.make.negatives import negative_paths
from build.make.pipeline import calibration_sample
from build.make.results import FloatResult, QatResult
from build.make.reuse import ExportRecord, export_key, file_digest
from edge.tasks import task as task_row
from edge.variants import variant as variant_row

log = logging.getLogger(__name__)

FINAL = "final"  # the folder under export/ (and the prefix of their entries in export/exports.json)
# Training images the abstain rule learns from, at most (the head: the first HEAD_SAMPLE of them).
ABSTAIN_SAMPLE = 3000


@dataclass(frozen=True)
class StoredHead:
    """The abstain head of a reused file: its card fields as recorded (its weights live in the file)."""

    card: dict

    def to_card(self) -> dict[str, Any]:
        return dict(self.card)


@dataclass(frozen=True)
class Calibrated:
    """The shipped files exported again with the temperature and abstain head inside, and their reports.

    Attributes:
        files: Shipped variant -> file.
        heads: Variant -> the abstain head inside its file (absent where none could be fitted): the
            AbstainHead fitted now, or a :class:`StoredHead` where the file was reused; ``to_card()``
            gives either's card fields.
        final: The file the card's abstain rule and operating points are fitted on (int8, else the first).
        calibration: The fitted temperature and what it did (``build.make.calibration.CalibrationResult``).
        sample: Indices of the training images the abstain rule and heads learned from.
        reports: Parity reports of every variant, the shipped ones measured again at the temperature.
        failures: Gates the calibrated files missed.
    """

    files: dict[str, Path]
    heads: dict[str, Any]
    final: Path
    calibration: Any
    sample: np.ndarray
    reports: dict[str, dict]
    failures: list[str]


def export_calibrated(
    ctx: RunContext,
    checked: Checked,
    floated: FloatResult,
    quantized: QatResult | None,
    out: Path,
    val_pixels: np.ndarray,
    val_labels: np.ndarray,
) -> Calibrated:
    """Fits the temperature on the shipped int8 file's validation outputs, exports the shipped variants
    again with the temperature and the abstain head inside (``out/final``; those unchanged since the last
    export are reused), gates them again against the float model at the same temperature and gates each
    file's abstain head (``build.make.head_gate``). Writes ``parity.json`` again."""
    from build.make.calibration import calibrate
    from converters.validate import ParityReport, check_gate, run_tflite, validate_tflite

    config, spec, train = ctx.config, ctx.spec, ctx.train
    reports, failures = dict(checked.reports), []
    first = {v: checked.files[v] for v in config.export.variants}
    val_probs, _ = run_tflite(first.get(SHIPPED_INT8, next(iter(first.values()))), val_pixels, spec)
    calibration = calibrate(val_probs, val_labels)
    sample = np.random.default_rng(0).choice(
        len(train.labels), size=min(ABSTAIN_SAMPLE, len(train.labels)), replace=False
    )
    sources = {
        v: (quantized.path if v == "int8" and reports["int8"].get("source") == "qat" else floated.path)
        for v in first
    }
    record = ExportRecord(out)
    keys = _keys(ctx, sources, calibration.temperature, sample, len(val_labels))
    done = {v: found for v in sources if (found := record.reusable(f"{FINAL}/{v}", keys[v]))}
    exported, fitted = export_safe_variants(
        {v: source for v, source in sources.items() if v not in done},
        out / FINAL,
        ctx,
        sample,
        val_pixels,
        val_labels,
        temperature=calibration.temperature,
    )
    files, heads = {}, {}
    unseen = unseen_negatives(config.export, spec, seed=config.train.seed) if sources else []
    for variant, source in sources.items():
        if variant in done:
            files[variant], measured = done[variant].path, done[variant].report
            head = StoredHead(done[variant].head) if done[variant].head is not None else None
        else:
            files[variant], head = exported[variant], fitted.get(variant)
            measured = validate_tflite(
                files[variant],
                floated.path,  # gated like the first pass: against the float model, whatever the source
                val_pixels,
                val_labels,
                input_spec=spec,
                variant=variant,
                temperature=calibration.temperature,
                views=config.export.test_time_views,
            ).to_dict()
            card = head.to_card() if head is not None else None
            record.record(f"{FINAL}/{variant}", keys[variant], files[variant], measured, head=card)
        if head is not None:
            heads[variant] = head
        gate = parity_gate(config, variant)
        missed = check_gate(ParityReport.from_dict(measured), gate)
        reports[variant] = {
            **measured,
            "source": reports[variant].get("source"),
            **({"qat_model": reports[variant]["qat_model"]} if "qat_model" in reports[variant] else {}),
            "gate": dataclasses.asdict(gate),
            "temperature": calibration.temperature,
            "abstain_head": head is not None,
        }
        if head is not None:
            checks = measure_head(files[variant], spec, val_pixels, unseen)
            reports[variant]["abstain_checks"] = checks
            missed += head_failures(variant, checks, config.export)
            log.info("%s abstain head: %s", variant, _summary(checks))
        reports[variant]["passed"] = not missed
        failures += missed
    write_text_atomic(out / PARITY_FILE, json.dumps(reports, indent=2) + "\n")
    final = files.get(SHIPPED_INT8, next(iter(files.values())))
    return Calibrated(files, heads, final, calibration, sample, reports, failures)


def _summary(checks: dict) -> str:
    """The head's measured shares in one line."""
    return ", ".join(f"{key} {value:.1%}" for key, value in checks.items() if not key.startswith("n_"))


def _keys(
    ctx: RunContext, sources: dict[str, Path], temperature: float, sample: np.ndarray, n: int
) -> dict[str, str]:
    """Each calibrated file's reuse key: everything its bytes, its abstain head and its parity report
    depend on."""
    config = ctx.config
    digests = {source: file_digest(source) for source in set(sources.values())}
    common = dict(
        temperature=temperature,  # exact: the card records the one folded into the file
        sample=sample.tolist(),
        training=fingerprint(ctx.part("train")),
        validation=fingerprint(ctx.part("val")),
        negatives=negative_paths(config.export.abstain_negatives, seed=config.train.seed),
        n=n,
        task=config.data.task,
        metadata={**file_metadata(ctx), "input_spec": dataclasses.asdict(ctx.spec)},
        export=dataclasses.asdict(config.export),
        seed=config.train.seed,
        code=code_version(),
    )
    return {
        variant: export_key(variant=f"{FINAL}/{variant}", source=digests[source], **common)
        for variant, source in sources.items()
    }


def export_safe_variants(
    sources: dict[str, Path],
    out: Path,
    ctx: RunContext,
    sample: np.ndarray,
    val_pixels: np.ndarray,
    val_labels: np.ndarray,
    *,
    temperature: float,
) -> tuple[dict[str, Path], dict]:
    """Exports each shipped variant from its source model with ``temperature`` folded into the head and
    the abstain head (fitted on that source model's features) as a second output.

    Returns:
        ``(files, heads)``: variant -> file and variant -> fitted AbstainHead (absent where the head could
        not be fitted: too few images).
    """
    from converters.abstain_head import fit_abstain_head
    from converters.export import export_tflite, is_qat_model, load_keras_model
    from converters.quantization import for_variant, needs_calibration

    config, spec, train = ctx.config, ctx.spec, ctx.train
    common = {**file_metadata(ctx), "temperature": temperature}
    task = task_row(config.data.task)
    fitted: dict[Path, tuple[bool, object]] = {}
    files, heads = {}, {}
    if sources:
        positives, positive_labels, positive_groups = head_training_images(ctx, sample)
        negatives, negative_groups = head_negative_images(
            config.export.abstain_negatives, spec, seed=config.train.seed
        )
    for variant, source in sources.items():
        if source not in fitted:
            model = load_keras_model(source)
            try:
                head = fit_abstain_head(
                    model,
                    positives,
                    list(val_pixels),
                    negatives,
                    input_spec=spec,
                    train_labels=positive_labels,
                    val_labels=val_labels,
                    quantile=config.export.abstain_quantile,
                    regularization=config.export.abstain_regularization,
                    train_groups=positive_groups,
                    negative_groups=negative_groups,
                    labels=(task.abstain_label, "other"),
                )
                head = dataclasses.replace(head, negatives=tuple(config.export.abstain_negatives))
            except ValueError as error:
                log.warning("no abstain head in %s files: %s", source.name, error)
                head = None
            fitted[source] = (is_qat_model(model), head)
        qat, head = fitted[source]
        calibration = (
            calibration_sample(train, spec, config.export.calibration_images, config.train.seed)
            if needs_calibration(variant) and not qat
            else None
        )
        files[variant] = export_tflite(
            source,
            out / variant_row(variant).file,
            for_variant(variant, calibration),
            abstain_head=head,
            views=config.export.test_time_views,
            **common,
        ).path
        if head is not None:
            heads[variant] = head
    return files, heads
