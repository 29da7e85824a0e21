"""``skinlesion build``: split -> float training -> QAT -> export -> validate -> calibrate -> evaluate -> bundle.

Each stage reads and writes the run folder (see ``build.make.run``), so ``skinlesion train|qat|export RUN``
runs one stage alone and ``--resume`` picks an interrupted build up where it stopped.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import subprocess
import time
from pathlib import Path

import numpy as np

from build.config import BuildConfig
from build.make.framing import runtime_view
from build.make.operating_points import fit_operating_points
from build.make.datasets import fingerprint
from build.make.pipeline import CachedImages, calibration_sample
from build.make.reuse import ExportRecord, export_key, file_digest
from build.make.run import (Run, cached_split, class_names, input_spec, prepare_split, split_summary, start_run,
                       training_images, write_text_atomic)
from edge.card import ModelCard
from edge.tasks import task as task_row
from edge.variants import candidates, variant as variant_row

log = logging.getLogger(__name__)

SHIPPED_INT8 = "int8"  # the variant a phone gets; calibration and the abstain rule are fitted on it


def build_all(run_dir: str | Path, config: BuildConfig, *, resume: bool = False,
              publish: str | Path | None = None, finish_training: bool = False,
              cache_dir: str | Path | None = None) -> int:
    """Runs every stage; returns the exit status (non-zero when the parity gate fails).

    ``finish_training`` (with ``resume``) ends the interrupted training, float or QAT, at its best completed
    epoch and goes on with the next stages: for a run that has used up its time before its planned epochs.
    """
    if finish_training and not resume:
        raise ValueError("--finish-training ends an interrupted run's training: pass it with --resume")
    from build.make.qat import apply_qat
    from build.make.train import train_float

    started = time.perf_counter()
    run = start_run(run_dir, config, resume=resume, cache_dir=cache_dir)
    print(f"run folder: {run.root} (decoded-image cache: {run.cache_dir})")
    frame = prepare_split(run, config)
    print(f"split: {run.split_file} ({split_summary(frame, config)['counts']})")
    print(f"float model: {train_float(run, config, finish=finish_training)}")
    if config.qat.enabled:
        print(f"QAT model: {apply_qat(run, config, finish=finish_training)}")
    status = export_run(run, config, publish=publish)
    minutes = (time.perf_counter() - started) / 60
    if status:
        print(f"build FAILED after {minutes:.1f} min: a parity gate failed (see {run.root / 'export' / 'parity.json'});"
              " nothing was published")
        return status
    where = f"; published to {publish}" if publish else "; not published (pass --publish DIR, or `skinlesion publish`)"
    chance = _at_chance(run, config)
    print(f"build finished in {minutes:.1f} min: bundle {run.root / 'bundle'}{where}"
          + (f"\nWARNING: {chance}" if chance else ""))
    return status


def _at_chance(run: Run, config: BuildConfig) -> str:
    """A warning when the float model's best validation balanced accuracy is at chance level, else ""."""
    summary = _read_json(run.root / "float" / "summary.json")
    classes = summary.get("classes") or []
    best = summary.get("best")
    from build.make.train import is_at_chance

    if not classes or best is None or not is_at_chance(best, len(classes)):
        return ""
    return (f"validation balanced accuracy {best:.3f} is at chance level ({1 / len(classes):.3f} for "
            f"{len(classes)} classes): the bundle works, but its model has learned nothing useful")


def run_stage(run_dir: str | Path, stage: str, *, publish: str | Path | None = None,
              cache_dir: str | Path | None = None) -> int:
    """``skinlesion train|qat|export RUN``: one stage on an existing run folder."""
    from build.make.qat import apply_qat
    from build.make.train import train_float

    run = Run(Path(run_dir), Path(cache_dir) if cache_dir is not None else None)
    config = run.load_config()
    if stage == "train":
        print(train_float(run, config))
        return 0
    if stage == "qat":
        print(apply_qat(run, config))
        return 0
    if stage == "export":
        return export_run(run, config, publish=publish)
    raise ValueError(f"unknown stage {stage!r}; choose train, qat or export")


def export_run(run: Run, config: BuildConfig, *, publish: str | Path | None = None) -> int:
    """Exports every variant, validates each against the float model, calibrates, fits the abstain rule,
    evaluates and writes the bundle. A failing parity gate writes the reports and publishes nothing."""
    from build.analysis.evaluate import evaluate_model
    from build.analysis.trust import fit_abstain_rule
    from build.make.calibration import calibrate
    from converters.bundle import write_bundle
    from converters.validate import ParityReport, check_gate, run_tflite, validate_tflite
    started = time.perf_counter()
    frame = prepare_split(run, config)
    classes = class_names(config, frame)
    spec = input_spec(config)
    train, val = training_images(run, frame, classes, config), cached_split(run, frame, "val", classes, spec)
    limit = config.export.validation_images or len(val.labels)
    val_pixels, val_labels = np.asarray(val.pixels[:limit]), val.labels[:limit]
    float_path = run.root / "float" / "model.keras"
    if not float_path.exists():
        raise FileNotFoundError(f"export needs the float model {float_path}; run `skinlesion train {run.root}`")
    qat_path = run.root / "qat" / "model.h5"
    if config.qat.enabled and not qat_path.exists():
        raise FileNotFoundError(f"export needs the QAT model {qat_path}; run `skinlesion qat {run.root}` "
                                "(or set qat.enabled = false)")

    out = run.stage("export")
    record = ExportRecord(out)
    sources = {"float": file_digest(float_path),
               "qat": file_digest(qat_path) if config.qat.enabled else None}
    keys = {variant: export_key(variant=variant, source=sources["qat" if variant == "int8-qat" else "float"],
                                export=dataclasses.asdict(config.export), seed=config.train.seed,
                                validation=fingerprint(frame[frame["split"] == "val"]), n=len(val_labels),
                                code=_code_version())
            for variant in _planned_variants(config)}
    done = {variant: found for variant in keys if (found := record.reusable(variant, keys[variant]))}
    files = {**export_variants(float_path, qat_path if config.qat.enabled else None, out, config, classes, train,
                               skip=set(done)),
             **{variant: path for variant, (path, _) in done.items()}}
    reports = {}
    for variant, path in files.items():
        if variant in done:
            reports[variant] = done[variant][1]
            continue
        reports[variant] = validate_tflite(path, float_path, val_pixels, val_labels, input_spec=spec,
                                           variant=_gate_name(variant)).to_dict()
        record.record(variant, keys[variant], path, reports[variant])
    if "int8-qat" in files and "qat_model" not in reports["int8-qat"]:
        # Against the model it was converted from: what conversion alone changed (the float model is a
        # step further away, since QAT trained on). The card keeps both.
        own = validate_tflite(files["int8-qat"], qat_path, val_pixels, val_labels, input_spec=spec, variant="int8")
        reports["int8-qat"]["qat_model"] = {"top1_agreement": own.top1_agreement,
                                            "balanced_accuracy": own.balanced_accuracy_reference,
                                            "balanced_accuracy_delta": own.balanced_accuracy_delta}
        log.info("int8 from QAT against its QAT model: top-1 agreement %.4f, balanced accuracy %+.2f pt",
                 own.top1_agreement, 100 * own.balanced_accuracy_delta)
        record.record("int8-qat", keys["int8-qat"], files["int8-qat"], reports["int8-qat"])
    write_text_atomic(out / "parity.json", json.dumps(reports, indent=2) + "\n")
    _print_parity(reports)
    if "int8" in config.export.variants:
        source = choose_int8(reports, config.export.int8_source, _gate(config, "int8"))
        files["int8"], reports["int8"] = files[f"int8-{source}"], {**reports[f"int8-{source}"], "source": source}
        print(f"int8 ships from {source.upper()} (top-1 agreement {reports['int8']['top1_agreement']:.4f})")
    failures = []
    for variant in config.export.variants:
        gate = _gate(config, variant)
        missed = check_gate(ParityReport.from_dict(reports[variant]), gate)
        reports[variant] = {**reports[variant], "gate": dataclasses.asdict(gate), "passed": not missed}
        failures += missed
    if failures:
        print("parity gate FAILED; nothing published:\n  " + "\n  ".join(failures))
        print(f"reports: {out / 'parity.json'}")
        return 1

    shipped = {v: files[v] for v in config.export.variants}
    val_probs, _ = run_tflite(shipped[SHIPPED_INT8] if SHIPPED_INT8 in shipped else next(iter(shipped.values())),
                              val_pixels, spec)
    calibration = calibrate(val_probs, val_labels)
    sample = np.random.default_rng(0).choice(len(train.labels), size=min(3000, len(train.labels)), replace=False)
    # The shipped files are exported again with the temperature and the abstain head inside, so a phone
    # (MediaPipe Tasks) returns calibrated scores and "I can't tell" with no code of ours; they are gated
    # again against the float model at the same temperature.
    sources = {v: (qat_path if v == "int8" and reports["int8"].get("source") == "qat" else float_path)
               for v in shipped}
    shipped, heads, final = export_safe_variants(sources, out / "final", config, classes, train, sample,
                                                 val_pixels, temperature=calibration.temperature)
    for variant, path in shipped.items():
        report = validate_tflite(path, sources[variant], val_pixels, val_labels, input_spec=spec,
                                 variant=variant, temperature=calibration.temperature)
        gate = _gate(config, variant)
        missed = check_gate(report, gate)
        reports[variant] = {**report.to_dict(), "source": reports[variant].get("source"),
                            **({"qat_model": reports[variant]["qat_model"]} if "qat_model" in reports[variant] else {}),
                            "gate": dataclasses.asdict(gate), "passed": not missed,
                            "temperature": calibration.temperature, "abstain_head": variant in heads}
        failures += missed
    write_text_atomic(out / "parity.json", json.dumps(reports, indent=2) + "\n")
    if failures:
        print("parity gate of the calibrated files FAILED; nothing published:\n  " + "\n  ".join(failures))
        return 1
    calibrated, _ = run_tflite(final, val_pixels, spec)  # the temperature is in the graph now
    try:
        # The rule learns what the runtime's input looks like, so it reads training images framed as the
        # runtime frames them (a source-aspect cache holds them with a canvas margin).
        abstain = fit_abstain_rule((runtime_view(train.source(i), spec) for i in np.sort(sample)),
                                   list(val_pixels), calibrated)
        log.info("abstain rule accepts %.1f%% of validation images", 100 * abstain["val_accepted"])
    except ValueError as error:  # e.g. too few training images to model what the data look like
        abstain = {}
        log.warning("no abstain rule in this bundle: %s", error)
    if heads:
        # The runtime asks the file's own head (the pixel check stays as the fallback for old files and as
        # the demo's explanation of what looks unusual).
        abstain = {**abstain, "head": heads.get(SHIPPED_INT8, next(iter(heads.values()))).to_card()}
    log.info("calibration: T=%.3f, ECE %.4f -> %.4f", calibration.temperature, calibration.ece_before,
             calibration.ece_after)

    card = make_card(config, frame, classes, temperature=calibration.temperature, abstain=abstain,
                     validation=reports, seconds=time.perf_counter() - started, run=run)
    card = dataclasses.replace(card, training={**card.training,
                                               "calibration": {**calibration.to_dict(), "in_graph": True}},
                               **_operating_points(card, calibrated, val_labels))
    staging = write_bundle(out / "unevaluated-bundle", card, shipped, reference=float_path)
    metrics = {}
    report_dir = out / "report"
    for split in ("val", "test"):
        part = frame[frame["split"] == split].reset_index(drop=True)
        if part.empty:
            continue
        target = report_dir if split == "val" else out / f"report-{split}"
        result = evaluate_model(staging, part, target, variant=SHIPPED_INT8 if SHIPPED_INT8 in shipped else None,
                                title=f"{config.name} on the {split} split",
                                context={"data": ", ".join(config.data.sources), "split": split},
                                training_log=run.root / "float" / "log.csv")
        metrics[split] = result.to_dict()
    card = dataclasses.replace(card, metrics=metrics)
    bundle = write_bundle(run.root / "bundle", card, shipped, reference=float_path, report_dir=report_dir)
    print(f"bundle: {bundle}")
    if publish:
        # The release carries the shipped variants but not the float reference (kept in the run's bundle).
        published = write_bundle(Path(publish), card, shipped, report_dir=report_dir)
        print(f"published: {published} ({', '.join(shipped)})")
    return 0


def _operating_points(card: ModelCard, calibrated: np.ndarray, labels: np.ndarray) -> dict:
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
    log.info("operating points: screening %.3f (sensitivity %.3f, specificity %.3f), high %.3f (specificity %.3f)",
             screening["threshold"], screening["sensitivity"], screening["specificity"],
             points["high"]["threshold"], points["high"]["specificity"])
    return {"operating_points": points, "malignant_threshold": screening["threshold"]}


def _planned_variants(config: BuildConfig) -> list[str]:
    """The files :func:`export_variants` writes for ``config``, in order: the variants that ship as they are,
    then the candidates of those that ship one of several (``edge.variants.candidates``)."""
    planned = [v for v in (*config.export.variants, *config.export.also_validate) if not candidates(v)]
    for name in config.export.variants:
        planned += [row.name for row in candidates(name) if row.source != "qat" or config.qat.enabled]
    return planned


def export_variants(float_path: Path, qat_path: Path | None, out: Path, config: BuildConfig,
                    classes: list[str], train: CachedImages, *, skip: set[str] = frozenset()) -> dict[str, Path]:
    """Writes the configured float variants and two int8 candidates: ``int8-qat`` (from the QAT model)
    and ``int8-ptq`` (post-training quantization of the float model), so the report shows what QAT
    bought and :func:`choose_int8` can ship the one that follows the float model more closely. Variants
    in ``skip`` (unchanged since the last export, see ``build.make.reuse``) are left as they are."""
    from converters.export import export_tflite
    from converters.quantization import for_variant

    spec = input_spec(config)
    task = task_row(config.data.task)
    display = [task.class_info(c).display_name for c in classes]
    common = dict(input_spec=spec, labels=classes, display_names=display, name=config.name, license=task.license)
    calibration = calibration_sample(train, spec, config.export.calibration_images, config.train.seed)
    files = {}
    for variant in _planned_variants(config):
        row = variant_row(variant)
        source = qat_path if row.source == "qat" else float_path
        if source is not None and variant not in skip:
            # A QAT model carries its ranges; a float model is calibrated on training images.
            quantization = for_variant(variant, None if row.source == "qat" else calibration)
            files[variant] = export_tflite(source, out / row.file, quantization, **common).path
    return files


def export_safe_variants(sources: dict[str, Path], out: Path, config: BuildConfig, classes: list[str],
                         train: CachedImages, sample: np.ndarray, val_pixels: np.ndarray, *,
                         temperature: float) -> tuple[dict[str, Path], dict, Path]:
    """Exports each shipped variant from its source model with ``temperature`` folded into the head and
    the abstain head (fitted on that source model's features) as a second output.

    Returns:
        ``(files, heads, int8_or_first)``: variant -> file, variant -> fitted AbstainHead (absent where the
        head could not be fitted: too few images), and the file the card's rule is fitted on.
    """
    from converters.abstain_head import fit_abstain_head
    from converters.export import export_tflite, is_qat_model, load_keras_model
    from converters.quantization import for_variant, needs_calibration

    spec = input_spec(config)
    task = task_row(config.data.task)
    display = [task.class_info(c).display_name for c in classes]
    common = dict(input_spec=spec, labels=classes, display_names=display, name=config.name, license=task.license,
                  temperature=temperature)
    fitted: dict[Path, tuple[bool, object]] = {}
    files, heads = {}, {}
    for variant, source in sources.items():
        if source not in fitted:
            model = load_keras_model(source)
            try:
                head = fit_abstain_head(
                    model, (runtime_view(train.source(i), spec) for i in np.sort(sample)), list(val_pixels),
                    input_spec=spec, labels=(task.abstain_label, "other"))
            except ValueError as error:
                log.warning("no abstain head in %s files: %s", source.name, error)
                head = None
            fitted[source] = (is_qat_model(model), head)
        qat, head = fitted[source]
        calibration = (calibration_sample(train, spec, config.export.calibration_images, config.train.seed)
                       if needs_calibration(variant) and not qat else None)
        files[variant] = export_tflite(source, out / variant_row(variant).file,
                                       for_variant(variant, calibration), abstain_head=head, **common).path
        if head is not None:
            heads[variant] = head
    final = files.get(SHIPPED_INT8, next(iter(files.values())))
    return files, heads, final


def choose_int8(reports: dict[str, dict], policy: str, gate=None) -> str:
    """Which int8 candidate ships: ``qat``, ``ptq``, or ``best``: one that passes ``gate`` if any does,
    then the higher top-1 agreement with the float model (QAT on a tie). A short QAT run can trail
    post-training quantization, and the gate judges the file, not the recipe."""
    from converters.validate import ParityReport, check_gate

    available = [source for source in ("qat", "ptq") if f"int8-{source}" in reports]
    if policy in ("qat", "ptq"):
        if policy not in available:
            raise ValueError(f"export.int8_source = {policy!r}, but there is no {policy.upper()} int8 file "
                             f"(qat.enabled = false?); use 'best' or 'ptq'")
        return policy

    def rank(source: str) -> tuple[bool, float, bool]:
        report = reports[f"int8-{source}"]
        passes = gate is None or not check_gate(ParityReport.from_dict(report), gate)
        return passes, report["top1_agreement"], source == "qat"

    return max(available, key=rank)


def make_card(config: BuildConfig, frame, classes: list[str], *, temperature: float, abstain: dict,
              validation: dict, seconds: float, run: Run) -> ModelCard:
    """The bundle's card, before metrics are added."""
    float_summary = _read_json(run.root / "float" / "summary.json")
    qat_summary = _read_json(run.root / "qat" / "summary.json")
    # The float model's decision shift is folded into every shipped file; recorded so that a release can
    # be quantized again from its float16 file (QAT on labels takes the shift out first).
    float_keys = ("best", "best_epoch", "epoch", "seconds", "steps_per_epoch", "logit_shift", "deterministic",
                  "schedule", "seconds_per_epoch")
    training = {
        "config": config.to_dict(),
        "split": split_summary(frame, config),
        "float": {k: float_summary.get(k) for k in float_keys},
        "qat": {k: qat_summary.get(k) for k in ("best", "best_epoch", "epoch", "seconds", "steps_per_epoch")},
        "export_seconds": round(seconds, 1),
        "code_version": _code_version(),
    }
    task = task_row(config.data.task)
    return ModelCard(
        name=config.name, version=datetime.date.today().strftime("%Y.%m.%d"),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        task=f"{task.image_kind}, {len(classes)} classes",
        classes=tuple(task.class_info(c) for c in classes), input=input_spec(config),
        temperature=temperature, abstain=abstain, validation=validation, training=training,
        license=task.license, intended_use=task.intended_use, limitations=task.limitations)


def validate_command(model: Path, reference: Path, data: str, *, label_map: str | None = None,
                     run_dir: Path | None = None, split: str | None = None, limit: int = 0) -> int:
    """``skinlesion validate``: parity of one TFLite file against its float reference on any data set."""
    from build.make.datasets import load_dataset
    from build.make.pipeline import build_cache
    from converters.validate import ParityGate, check_gate, validate_tflite
    from edge.bundle import load_bundle

    bundle_card = None
    if run_dir is not None:
        run = Run(run_dir)
        config = run.load_config()
        spec, classes = input_spec(config), class_names(config)
        frame = prepare_split(run, config)
    else:
        card_dir = model.parent if (model.parent / "model_card.json").exists() else None
        if card_dir is None:
            raise ValueError(f"{model}: pass --run RUN (or keep the .tflite inside its bundle) so the input "
                             "size, normalization and class order are known")
        bundle_card = load_bundle(card_dir).card
        spec, classes = bundle_card.input, bundle_card.labels
        frame = load_dataset(data, label_map=label_map)
    if split:
        frame = frame[frame["split"] == split]
    frame = frame[frame["label"].isin(classes)].reset_index(drop=True)
    if limit:
        frame = frame.iloc[:limit]
    pixels = build_cache(list(frame["path"]), spec, run.cache_dir if run_dir else Path("runs/cache"))
    labels = np.array([classes.index(label) for label in frame["label"]])
    report = validate_tflite(model, reference, np.asarray(pixels), labels, input_spec=spec)
    print(report.to_json())
    failures = check_gate(report, ParityGate.for_variant(report.variant))
    for failure in failures:
        print(f"gate: {failure}")
    return 1 if failures else 0


def _gate_name(variant: str) -> str:
    """The variant whose validation and gate a file gets: a candidate's (``int8-qat`` -> ``int8``)."""
    return variant_row(variant).quantization


def _gate(config: BuildConfig, variant: str):
    from converters.validate import ParityGate

    gate = ParityGate.for_variant(variant)
    if variant == "int8":
        return dataclasses.replace(gate, min_top1_agreement=config.export.int8_min_agreement,
                                   max_balanced_accuracy_drop=config.export.int8_max_drop_points)
    if variant in ("float16", "float32"):
        return dataclasses.replace(gate, min_top1_agreement=config.export.float_min_agreement)
    return gate


def _print_parity(reports: dict) -> None:
    print(f"{'variant':10} {'agreement':>9} {'max|dp|':>8} {'bal.acc':>8} {'delta':>7}")
    for variant, r in reports.items():
        print(f"{variant:10} {r['top1_agreement']:9.4f} {r['max_abs_diff']:8.4f} "
              f"{r['balanced_accuracy_tflite']:8.4f} {100 * r['balanced_accuracy_delta']:+6.2f}pt")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _code_version() -> str:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
