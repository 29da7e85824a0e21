"""``skinlesion build``: split -> float training -> QAT -> export -> validate -> calibrate -> evaluate -> bundle.

The run's context (split, classes, input, decoded images; ``build.make.context``) is built once and handed
to every stage; each stage returns its record (``build.make.results``), saved in the run folder, which the
next stage reads. So ``skinlesion train|qat|export RUN`` runs one stage alone and ``--resume`` picks an
interrupted build up where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from build.config import BuildConfig
from build.console import timed_stage
from build.make.context import RunContext, prepare
from build.make.results import ExportResult, FloatResult, QatResult, read_float, read_qat
from build.make.run import Run, start_run

log = logging.getLogger(__name__)


def build_all(
    run_dir: str | Path,
    config: BuildConfig,
    *,
    resume: bool = False,
    publish: str | Path | None = None,
    finish_training: bool = False,
    cache_dir: str | Path | None = None,
) -> int:
    """Runs every stage; returns the exit status (non-zero when a parity or abstain-head gate fails).

    ``finish_training`` (with ``resume``) ends the interrupted training, float or QAT, at its best completed
    epoch and goes on with the next stages: for a run that has used up its time before its planned epochs.
    """
    if finish_training and not resume:
        raise ValueError("--finish-training ends an interrupted run's training: pass it with --resume")
    from build.make import qat

    started = time.perf_counter()
    run = start_run(run_dir, config, resume=resume, cache_dir=cache_dir)
    log.info("run folder: %s (decoded-image cache: %s)", run.root, run.cache_dir)
    ctx = prepare(run, config)
    log.info("split: %s (%s)", run.split_file, ctx.split_summary()["counts"])
    ctx, floated = train_to_release(ctx, finish=finish_training)
    quantized = qat.apply_qat(ctx, floated, finish=finish_training) if config.qat.enabled else None
    exported = export_run(ctx, floated, quantized, publish=publish)
    minutes = (time.perf_counter() - started) / 60
    # The CLI's last words, on stdout whatever the log level.
    if not exported.passed:
        print(
            f"build FAILED after {minutes:.1f} min: a parity or abstain-head gate failed (see {exported.parity});"
            " nothing was published"
        )
        return exported.status
    where = (
        f"; published to {publish}"
        if publish
        else "; not published (pass --publish DIR, or `skinlesion publish`)"
    )
    chance = _at_chance(floated)
    print(
        f"build finished in {minutes:.1f} min: bundle {exported.bundle}{where}"
        + (f"\nWARNING: {chance}" if chance else "")
    )
    return exported.status


def train_to_release(ctx: RunContext, *, finish: bool = False) -> tuple[RunContext, FloatResult]:
    """Float training, and with ``[fixres]`` its last epochs at the release's input size; returns the
    context and float model QAT and the export start from. ``finish`` ends whichever training was
    interrupted (a FixRes stage with no completed epoch runs in full, as QAT does)."""
    from build.make import train
    from build.make.fixres import release_context
    from build.make.reproducible import load_state

    floated = train.train_float(ctx, finish=finish)
    release = release_context(ctx)
    if release is ctx:
        return ctx, floated
    log.info(
        "fixres: %d epoch(s) at %d px from %s (the float stage trained at %d px)",
        release.config.train.epochs,
        release.spec.height,
        release.config.train.init_from,
        ctx.spec.height,
    )
    started = load_state(ctx.run.root / release.float_stage)["epoch"] > 0
    return release, train.train_float(release, finish=finish and started)


def _at_chance(floated: FloatResult) -> str:
    """A warning when the float model's best validation balanced accuracy is at chance level, else ""."""
    from build.make.train import is_at_chance

    classes, best = floated.classes, floated.best
    if not classes or best is None or not is_at_chance(best, len(classes)):
        return ""
    return (
        f"validation balanced accuracy {best:.3f} is at chance level ({1 / len(classes):.3f} for "
        f"{len(classes)} classes): the bundle works, but its model has learned nothing useful"
    )


def run_stage(
    run_dir: str | Path, stage: str, *, publish: str | Path | None = None, cache_dir: str | Path | None = None
) -> int:
    """``skinlesion train|qat|export RUN``: one stage on an existing run folder; returns the exit status."""
    from build.make import qat
    from build.make.fixres import FIXRES_STAGE, release_context

    if stage not in ("train", "qat", "export"):
        raise ValueError(f"unknown stage {stage!r}; choose train, qat or export")
    run = Run(Path(run_dir), Path(cache_dir) if cache_dir is not None else None)
    config = run.load_config()
    # The earlier stages' records first: a missing one is reported before any data is read.
    float_stage = FIXRES_STAGE if config.fixres.image_size else "float"
    floated = read_float(run.root, needed_by=stage, stage=float_stage) if stage != "train" else None
    quantized = read_qat(run.root, needed_by=stage) if stage == "export" and config.qat.enabled else None
    ctx = prepare(run, config)
    if stage == "train":
        print(train_to_release(ctx)[1].path)
        return 0
    ctx = release_context(ctx)
    if stage == "qat":
        print(qat.apply_qat(ctx, floated).path)
        return 0
    return export_run(ctx, floated, quantized, publish=publish).status


@timed_stage("export")
def export_run(
    ctx: RunContext, floated: FloatResult, quantized: QatResult | None, *, publish: str | Path | None = None
) -> ExportResult:
    """Exports every variant, validates each against the float model, calibrates, fits the abstain rule,
    evaluates and writes the bundle; returns the stage's record (also ``export/result.json``). A failing
    parity or abstain-head gate writes the reports and publishes nothing."""
    from build.analysis.evaluate import evaluate_model
    from build.analysis.trust import fit_abstain_rule
    from build.make.card import make_card
    from build.make.export import PARITY_FILE, SHIPPED_INT8, export_checked, operating_point_fields
    from build.make.external import external_test_sets
    from build.make.final import export_calibrated
    from build.make.framing import runtime_view
    from converters.bundle import write_bundle
    from converters.validate import run_tflite

    started = time.perf_counter()
    config, run, spec = ctx.config, ctx.run, ctx.spec
    out = run.stage("export")
    val = ctx.val
    limit = config.export.validation_images or len(val.labels)
    val_pixels, val_labels = np.asarray(val.pixels[:limit]), val.labels[:limit]

    def finish(result: ExportResult) -> ExportResult:
        result = dataclasses.replace(result, seconds=round(time.perf_counter() - started, 1))
        result.save(out)
        return result

    checked = export_checked(ctx, floated, quantized, out, val_pixels, val_labels)
    if checked.failures:
        log.error(
            "parity gate FAILED; nothing published:\n  %s\nreports: %s",
            "\n  ".join(checked.failures),
            out / PARITY_FILE,
        )
        return finish(ExportResult(passed=False, parity=out / PARITY_FILE))
    calibrated = export_calibrated(ctx, checked, floated, quantized, out, val_pixels, val_labels)
    if calibrated.failures:
        log.error(
            "gate of the calibrated files FAILED (parity or abstain head); nothing published:\n  %s",
            "\n  ".join(calibrated.failures),
        )
        return finish(ExportResult(passed=False, parity=out / PARITY_FILE))
    shipped, heads, calibration = calibrated.files, calibrated.heads, calibrated.calibration
    probabilities, _ = run_tflite(calibrated.final, val_pixels, spec)  # the temperature is in the graph now
    try:
        # The rule learns what the runtime's input looks like, so it reads training images framed as the
        # runtime frames them (a source-aspect cache holds them with a canvas margin).
        abstain = fit_abstain_rule(
            (runtime_view(ctx.train.source(i), spec) for i in np.sort(calibrated.sample)),
            list(val_pixels),
            probabilities,
        )
        log.info("abstain rule accepts %.1f%% of validation images", 100 * abstain["val_accepted"])
    except ValueError as error:  # e.g. too few training images to model what the data look like
        abstain = {}
        log.warning("no abstain rule in this bundle: %s", error)
    if heads:
        # The runtime asks the file's own head (the pixel check stays as the fallback for old files and as
        # the demo's explanation of what looks unusual).
        abstain = {**abstain, "head": heads.get(SHIPPED_INT8, next(iter(heads.values()))).to_card()}
    log.info(
        "calibration: T=%.3f, ECE %.4f -> %.4f",
        calibration.temperature,
        calibration.ece_before,
        calibration.ece_after,
    )

    card = make_card(
        ctx,
        floated,
        quantized,
        temperature=calibration.temperature,
        abstain=abstain,
        validation=calibrated.reports,
        seconds=time.perf_counter() - started,
        recipe=ctx.recipe,
        trained_smaller=read_float(run.root, needed_by="the card") if ctx.float_stage != "float" else None,
    )
    card = dataclasses.replace(
        card,
        training={**card.training, "calibration": {**calibration.to_dict(), "in_graph": True}},
        **operating_point_fields(card, probabilities, val_labels),
    )
    staging = write_bundle(out / "unevaluated-bundle", card, shipped, reference=floated.path)
    metrics = {}
    report_dir = out / "report"
    for split in ("val", "test"):
        part = ctx.part(split)
        if part.empty:
            continue
        target = report_dir if split == "val" else out / f"report-{split}"
        result = evaluate_model(
            staging,
            part,
            target,
            variant=SHIPPED_INT8 if SHIPPED_INT8 in shipped else None,
            title=f"{config.name} on the {split} split",
            context={"data": ", ".join(config.data.sources), "split": split},
            training_log=run.root / "float" / "log.csv",
        )
        metrics[split] = result.to_dict()
    for name, images in external_test_sets(config.export, ctx.frame, ctx.classes):
        result = evaluate_model(
            staging,
            images,
            out / f"report-external-{name}",
            variant=SHIPPED_INT8 if SHIPPED_INT8 in shipped else None,
            title=f"{config.name} on {name}, images the run's data lack",
            context={"data": name, "split": "external: images none of the run's sources hold"},
        )
        metrics[f"external {name}"] = result.to_dict()
    card = dataclasses.replace(card, metrics=metrics)
    bundle = write_bundle(run.root / "bundle", card, shipped, reference=floated.path, report_dir=report_dir)
    log.info("bundle: %s", bundle)
    published = None
    if publish:
        # The release carries the shipped variants but not the float reference (kept in the run's bundle).
        published = write_bundle(Path(publish), card, shipped, report_dir=report_dir)
        log.info("published: %s (%s)", published, ", ".join(shipped))
    return finish(
        ExportResult(
            passed=True, parity=out / PARITY_FILE, bundle=bundle, published=published, variants=tuple(shipped)
        )
    )


def validate_command(
    model: Path,
    reference: Path,
    data: str,
    *,
    label_map: str | None = None,
    run_dir: Path | None = None,
    split: str | None = None,
    limit: int = 0,
) -> int:
    """``skinlesion validate``: parity of one TFLite file against its float reference on any data set."""
    from build.make.cache import build_cache
    from build.make.datasets import load_dataset
    from build.make.fixres import release_context
    from converters.validate import ParityGate, check_gate, validate_tflite
    from edge.bundle import load_bundle

    if run_dir is not None:
        run = Run(run_dir)
        # The exported files take the release's input size, which FixRes makes larger than training's.
        ctx = release_context(prepare(run, run.load_config()))
        spec, classes, frame, cache_dir = ctx.spec, list(ctx.classes), ctx.frame, run.cache_dir
        views = ctx.config.export.test_time_views
    else:
        card_dir = model.parent if (model.parent / "model_card.json").exists() else None
        if card_dir is None:
            raise ValueError(
                f"{model}: pass --run RUN (or keep the .tflite inside its bundle) so the input "
                "size, normalization and class order are known"
            )
        bundle_card = load_bundle(card_dir).card
        spec, classes, cache_dir = bundle_card.input, bundle_card.labels, Path("runs/cache")
        views = bundle_card.test_time_views
        frame = load_dataset(data, label_map=label_map)
    if split:
        frame = frame[frame["split"] == split]
    frame = frame[frame["label"].isin(classes)].reset_index(drop=True)
    if limit:
        frame = frame.iloc[:limit]
    pixels = build_cache(list(frame["path"]), spec, cache_dir)
    labels = np.array([classes.index(label) for label in frame["label"]])
    # The file averages its views in its graph; the reference is scored on the same ones.
    report = validate_tflite(model, reference, np.asarray(pixels), labels, input_spec=spec, views=views)
    print(report.to_json())
    failures = check_gate(report, ParityGate.for_variant(report.variant))
    for failure in failures:
        print(f"gate: {failure}")
    return 1 if failures else 0
