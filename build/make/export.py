"""The export's first pass: every TFLite variant written and validated against the float model, the
shipped int8 file chosen and the parity gates; the second pass (the calibrated files with the abstain head
inside) is ``build.make.final``.

``build.build.export_run`` strings them together with the evaluation and writes the bundle::

    >>> checked = export_checked(ctx, floated, quantized, out, val_pixels, val_labels)
    >>> calibrated = final.export_calibrated(ctx, checked, floated, quantized, out, val_pixels, val_labels)
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
from build.config import BuildConfig
from build.make.card import code_version
from build.make.context import RunContext
from build.make.datasets import fingerprint
from build.make.operating_points import fit_operating_points
from build.make.pipeline import calibration_sample
from build.make.results import FloatResult, QatResult
from build.make.reuse import ExportRecord, export_key, file_digest
from edge.card import ModelCard
from edge.tasks import task as task_row
from edge.variants import candidates, variant as variant_row

log = logging.getLogger(__name__)

SHIPPED_INT8 = "int8"  # the variant a phone gets; calibration and the abstain rule are fitted on it
PARITY_FILE = "parity.json"


@dataclass(frozen=True)
class Checked:
    """The exported files, their parity reports (``int8`` = the chosen candidate) and the gates they missed."""

    files: dict[str, Path]
    reports: dict[str, dict]
    failures: list[str]


def export_checked(
    ctx: RunContext,
    floated: FloatResult,
    quantized: QatResult | None,
    out: Path,
    val_pixels: np.ndarray,
    val_labels: np.ndarray,
) -> Checked:
    """Exports every planned variant (reusing those unchanged since the last export), validates each
    against the float model, chooses the shipped int8 file and gates every shipped variant.
    Writes ``parity.json`` (before the gates, so a failure leaves the measured reports)."""
    from converters.validate import ParityReport, check_gate, validate_tflite

    config, spec = ctx.config, ctx.spec
    views = config.export.test_time_views
    float_path, qat_path = floated.path, quantized.path if quantized is not None else None
    record = ExportRecord(out)
    sources = {
        "float": file_digest(float_path),
        "qat": file_digest(qat_path) if qat_path is not None else None,
    }
    keys = {
        variant: export_key(
            variant=variant,
            source=sources["qat" if variant == "int8-qat" else "float"],
            export=dataclasses.asdict(config.export),
            seed=config.train.seed,
            validation=fingerprint(ctx.frame[ctx.frame["split"] == "val"]),
            n=len(val_labels),
            code=code_version(),
        )
        for variant in _planned_variants(config)
    }
    done = {variant: found for variant in keys if (found := record.reusable(variant, keys[variant]))}
    files = {
        **export_variants(float_path, qat_path, out, ctx, skip=set(done)),
        **{variant: stored.path for variant, stored in done.items()},
    }
    reports = {}
    for variant, path in files.items():
        if variant in done:
            reports[variant] = done[variant].report
            continue
        reports[variant] = validate_tflite(
            path,
            float_path,
            val_pixels,
            val_labels,
            input_spec=spec,
            variant=_gate_name(variant),
            views=views,
        ).to_dict()
        record.record(variant, keys[variant], path, reports[variant])
    if "int8-qat" in files and "qat_model" not in reports["int8-qat"]:
        # Against the model it was converted from: what conversion alone changed (the float model is a
        # step further away, since QAT trained on). The card keeps both.
        own = validate_tflite(
            files["int8-qat"], qat_path, val_pixels, val_labels, input_spec=spec, variant="int8", views=views
        )
        reports["int8-qat"]["qat_model"] = {
            "top1_agreement": own.top1_agreement,
            "balanced_accuracy": own.balanced_accuracy_reference,
            "balanced_accuracy_delta": own.balanced_accuracy_delta,
        }
        log.info(
            "int8 from QAT against its QAT model: top-1 agreement %.4f, balanced accuracy %+.2f pt",
            own.top1_agreement,
            100 * own.balanced_accuracy_delta,
        )
        record.record("int8-qat", keys["int8-qat"], files["int8-qat"], reports["int8-qat"])
    write_text_atomic(out / PARITY_FILE, json.dumps(reports, indent=2) + "\n")
    _log_parity(reports)
    if "int8" in config.export.variants:
        source = choose_int8(reports, config.export.int8_source, parity_gate(config, "int8"))
        files["int8"], reports["int8"] = (
            files[f"int8-{source}"],
            {**reports[f"int8-{source}"], "source": source},
        )
        log.info(
            "int8 ships from %s (top-1 agreement %.4f)", source.upper(), reports["int8"]["top1_agreement"]
        )
    failures = []
    for variant in config.export.variants:
        gate = parity_gate(config, variant)
        missed = check_gate(ParityReport.from_dict(reports[variant]), gate)
        reports[variant] = {**reports[variant], "gate": dataclasses.asdict(gate), "passed": not missed}
        failures += missed
    return Checked(files, reports, failures)


def file_metadata(ctx: RunContext) -> dict[str, Any]:
    """What every exported file carries: input spec, labels with display names, name and license."""
    task = task_row(ctx.config.data.task)
    return dict(
        input_spec=ctx.spec,
        labels=list(ctx.classes),
        display_names=[task.class_info(c).display_name for c in ctx.classes],
        name=ctx.config.name,
        license=task.license,
    )


def operating_point_fields(card: ModelCard, calibrated: np.ndarray, labels: np.ndarray) -> dict:
    """The card fields the validation operating points set: ``operating_points`` and, at the screening
    point, ``malignant_threshold``. None for a task without malignant classes."""
    malignant = card.malignant_indices
    if not malignant:
        return {}
    try:
        points = fit_operating_points(calibrated[:, malignant].sum(axis=1), np.isin(labels, malignant))
    except ValueError as error:  # e.g. a validation subset (export.validation_images) with no malignant image
        log.warning("no operating points in this bundle: %s; the card keeps its default threshold", error)
        return {}
    screening = points["screening"]
    log.info(
        "operating points: screening %.3f (sensitivity %.3f, specificity %.3f), high %.3f (specificity %.3f)",
        screening["threshold"],
        screening["sensitivity"],
        screening["specificity"],
        points["high"]["threshold"],
        points["high"]["specificity"],
    )
    return {"operating_points": points, "malignant_threshold": screening["threshold"]}


def _planned_variants(config: BuildConfig) -> list[str]:
    """The files :func:`export_variants` writes for ``config``, in order: the variants that ship as they are,
    then the candidates of those that ship one of several (``edge.variants.candidates``)."""
    planned = [v for v in (*config.export.variants, *config.export.also_validate) if not candidates(v)]
    for name in config.export.variants:
        planned += [row.name for row in candidates(name) if row.source != "qat" or config.qat.enabled]
    return planned


def export_variants(
    float_path: Path, qat_path: Path | None, out: Path, ctx: RunContext, *, skip: set[str] = frozenset()
) -> dict[str, Path]:
    """Writes the configured float variants and two int8 candidates: ``int8-qat`` (from the QAT model)
    and ``int8-ptq`` (post-training quantization of the float model), so the report shows what QAT
    bought and :func:`choose_int8` can ship the one that follows the float model more closely. Variants
    in ``skip`` (unchanged since the last export, see ``build.make.reuse``) are left as they are."""
    from converters.export import export_tflite
    from converters.quantization import for_variant

    config, spec = ctx.config, ctx.spec
    common = file_metadata(ctx)
    calibration = calibration_sample(ctx.train, spec, config.export.calibration_images, config.train.seed)
    files = {}
    for variant in _planned_variants(config):
        row = variant_row(variant)
        source = qat_path if row.source == "qat" else float_path
        if source is not None and variant not in skip:
            # A QAT model carries its ranges; a float model is calibrated on training images.
            quantization = for_variant(variant, None if row.source == "qat" else calibration)
            files[variant] = export_tflite(
                source, out / row.file, quantization, views=config.export.test_time_views, **common
            ).path
    return files


def choose_int8(reports: dict[str, dict], policy: str, gate=None) -> str:
    """Which int8 candidate ships: ``qat``, ``ptq``, or ``best``: one that passes ``gate`` if any does,
    then the higher top-1 agreement with the float model (QAT on a tie). A short QAT run can trail
    post-training quantization, and the gate judges the file, not the recipe."""
    from converters.validate import ParityReport, check_gate

    available = [source for source in ("qat", "ptq") if f"int8-{source}" in reports]
    if policy in ("qat", "ptq"):
        if policy not in available:
            raise ValueError(
                f"export.int8_source = {policy!r}, but there is no {policy.upper()} int8 file "
                f"(qat.enabled = false?); use 'best' or 'ptq'"
            )
        return policy

    def rank(source: str) -> tuple[bool, float, bool]:
        report = reports[f"int8-{source}"]
        passes = gate is None or not check_gate(ParityReport.from_dict(report), gate)
        return passes, report["top1_agreement"], source == "qat"

    return max(available, key=rank)


def _gate_name(variant: str) -> str:
    """The variant whose validation and gate a file gets: a candidate's (``int8-qat`` -> ``int8``)."""
    return variant_row(variant).quantization


def parity_gate(config: BuildConfig, variant: str):
    from converters.validate import ParityGate

    gate = ParityGate.for_variant(variant)
    if variant == "int8":
        return dataclasses.replace(
            gate,
            min_top1_agreement=config.export.int8_min_agreement,
            max_balanced_accuracy_drop=config.export.int8_max_drop_points,
        )
    if variant in ("float16", "float32"):
        return dataclasses.replace(
            gate,
            min_top1_agreement=config.export.float_min_agreement,
            max_balanced_accuracy_drop=config.export.float_max_drop_points,
        )
    return gate


def _log_parity(reports: dict) -> None:
    """The parity reports as a table, one log line per variant."""
    log.info("%-10s %9s %8s %8s %7s", "variant", "agreement", "max|dp|", "bal.acc", "delta")
    for variant, r in reports.items():
        log.info(
            "%-10s %9.4f %8.4f %8.4f %+6.2fpt",
            variant,
            r["top1_agreement"],
            r["max_abs_diff"],
            r["balanced_accuracy_tflite"],
            100 * r["balanced_accuracy_delta"],
        )
