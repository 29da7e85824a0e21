"""Running a model over a labelled data set exactly as production does, then metrics, plots and report.

Bundles and ``.tflite`` files run through ``edge.classifier.Classifier`` (the phone/Pi code path,
calibration and abstain rule included); a ``.keras`` float reference runs in batches with the same
``edge.preprocess`` pixels and normalization::

    >>> metrics = evaluate_model("models/pretrained/ham10000", frame[frame.split == "test"], "out/eval",
    ...                          variant="int8")
    >>> run_evaluate("bundle/", "../shared/data/ham10000", split="test", out="out/eval")  # the CLI
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from build.atomic import write_text_atomic
from build.analysis.metrics import DEFAULT_THRESHOLD, Metrics, evaluate, label_indices
from build.analysis.plots import make_plots
from build.analysis.report import write_report
from build.make.results import SplitRecord
from build.stage_configs import SplitConfig
from edge.bundle import resolve_bundle
from edge.card import LABELS_FILE
from edge.labels import read_labels
from edge.preprocess import InputSpec, load_image, normalize
from edge.progress import Progress
from edge.tasks import known_class, task

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.json"
PREDICTIONS_FILE = "predictions.csv"
METADATA_COLUMNS = ("age", "sex", "localization")
KERAS_BATCH = 32
# A bare .keras file with as many outputs as this task's fixed classes is read with them.
DEFAULT_TASK = "ham10000"


@dataclass(frozen=True)
class _Runner:
    """An opened model: its class codes, malignant outputs, operating threshold and a per-frame predictor."""

    labels: tuple[str, ...]
    malignant_indices: tuple[int, ...]
    threshold: float
    description: str
    predict: Callable[[Sequence[str], bool], tuple[np.ndarray, np.ndarray]]
    has_abstain_rule: bool = False
    card: Any = None  # the bundle's ModelCard, when the model came with one


def evaluate_model(
    model: Any,
    frame: pd.DataFrame,
    out_dir: str | os.PathLike,
    *,
    variant: str | None = None,
    tta: bool = False,
    backend: str = "tflite",
    labels: Sequence[str] | None = None,
    threshold: float | None = None,
    title: str | None = None,
    context: dict[str, str] | None = None,
    training_log: str | os.PathLike | None = None,
) -> Metrics:
    """Predicts ``frame``, then writes metrics.json, predictions.csv, the plots and report.md/.html.

    Args:
        model: A bundle folder, a ``.tflite`` file, a ``.keras`` file, a loaded Keras model or an
            ``edge.classifier.Classifier``; every image is read as production reads it.
        frame: Rows with ``path`` and ``label`` (class codes of the model), optionally age/sex/localization.
        out_dir: Output folder (created).
        variant: Bundle variant (int8, float16, dynamic, float32); None picks the bundle's default.
        tta: Average over flips and rotations (the Classifier's test-time augmentation).
        backend: ``"tflite"``, or ``"keras"`` to run a bundle's float reference.
        labels: Class codes for a bare model file without labels beside it.
        threshold: Malignant operating point; default the card's ``malignant_threshold`` or 0.5.
        title: Report heading; default names the model.
        context: Extra rows for the report's context table (data set, split...).
        training_log: A run's CSV log to plot training curves from.

    Returns:
        The metrics (also in ``out_dir/metrics.json``).
    """
    if frame.empty:
        raise ValueError("no images to evaluate: the data set (or the chosen split) is empty")
    out_dir = Path(out_dir)
    started = time.perf_counter()
    runner = _open(model, variant=variant, backend=backend, labels=labels)
    label_indices(frame["label"].astype(str).to_numpy(), runner.labels)  # fail before hours of predicting
    probabilities, abstained = runner.predict(list(frame["path"]), tta)
    present = [c for c in METADATA_COLUMNS if c in frame]
    metrics = evaluate(
        frame["label"].astype(str).to_numpy(),
        probabilities,
        runner.labels,
        runner.malignant_indices,
        metadata=frame[present].reset_index(drop=True) if present else None,
        threshold=runner.threshold if threshold is None else threshold,
        abstained=abstained if runner.has_abstain_rule else None,
    )
    metrics.save(out_dir / METRICS_FILE)
    _write_predictions(out_dir / PREDICTIONS_FILE, frame, probabilities, abstained, runner.labels)
    plots = make_plots(
        metrics, frame["label"].astype(str).to_numpy(), probabilities, out_dir, training_log=training_log
    )
    seconds = time.perf_counter() - started
    table = {
        "model": runner.description,
        "images": str(len(frame)),
        "test-time augmentation": "on" if tta else "off",
        **(context or {}),
        "seconds": f"{seconds:.0f}",
    }
    write_report(
        out_dir,
        metrics,
        plots,
        title=title or f"Evaluation of {runner.description}",
        context=table,
        card=runner.card,
    )
    log.info(
        "evaluated %d images in %.0f s: balanced accuracy %.3f -> %s",
        len(frame),
        seconds,
        metrics.balanced_accuracy,
        out_dir,
    )
    return metrics


def run_evaluate(
    model: str | os.PathLike,
    data: str | os.PathLike,
    *,
    variant: str | None = None,
    tta: bool = False,
    split: str | None = None,
    out: str | os.PathLike = "evaluation",
    split_seed: int | None = None,
    label_map: str | None = None,
    exclude: str | os.PathLike | None = None,
) -> Metrics:
    """What ``skinlesion evaluate MODEL --data DATA [--variant] [--tta] [--split] [--exclude] [--out]``
    runs.

    Args:
        model: Bundle folder, ``.tflite`` or ``.keras``.
        data: Any layout ``build.make.datasets.load_dataset`` reads.
        variant: Bundle variant.
        tta: Test-time augmentation.
        split: ``train``, ``val`` or ``test`` of the lesion-grouped split (the build's default split
            config, or ``split_seed``); None evaluates every image.
        out: Output folder.
        split_seed: Seed of the split when it differs from the build's default.
        label_map: Label map name or None (e.g. ``"isic-archive"``).
        exclude: A data set whose images (by ``image_id``) are left out, e.g. the one the model was
            trained on, so that a second source that repeats some of its images is an external test.
    """
    model = resolve_bundle(model)  # a shipped bundle's name: its card's split, not the default one
    frame = images_to_evaluate(model, data, split=split, split_seed=split_seed, label_map=label_map)
    context = {"data": str(data), "split": split or "all images"}
    if exclude is not None:
        frame, left_out = without_images_of(frame, exclude)
        context["left out"] = f"{left_out} images also in {exclude}"
    return evaluate_model(
        model,
        frame,
        out,
        variant=variant,
        tta=tta,
        context=context,
        title=f"{Path(model).name} on {Path(data).name} ({split or 'all images'})",
    )


def images_to_evaluate(
    model: str | os.PathLike,
    data: str | os.PathLike,
    *,
    split: str | None = None,
    split_seed: int | None = None,
    label_map: str | None = None,
) -> pd.DataFrame:
    """The labelled images of ``data``, each once, or of one split of it re-derived as the bundle's card
    recorded it. As in training, an image the data lists under two classes is left out (the ISIC
    archive lists 155 so), and an image listed twice under one class counts once."""
    from build.make.datasets import SPLITS, load_dataset, merge_datasets, split_by_group

    model = resolve_bundle(model)
    recorded = _bundle_split(model)
    # Cards written before the build merged HAM10000's duplicate lesions split without the merge.
    frame, report = merge_datasets(
        [
            load_dataset(
                data,
                label_map=label_map,
                merge_duplicate_lesions=recorded.duplicate_lesions_merged if recorded else True,
            )
        ]
    )
    for line in report.lines()[1:]:
        log.info(line)
    if split is None:
        return frame
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} or None for all images, got {split!r}")
    frame = split_by_group(frame, _split_config(model, split_seed))
    _warn_if_other_data(model, frame)
    return frame[frame["split"] == split].reset_index(drop=True)


def without_images_of(frame: pd.DataFrame, other: str | os.PathLike) -> tuple[pd.DataFrame, int]:
    """``frame`` without the images (same ``image_id``) that data set ``other`` holds, and how many left.

    Raises:
        ValueError: Every image of ``frame`` is in ``other``: nothing would be evaluated.
    """
    from build.make.datasets import load_dataset

    known = set(load_dataset(other)["image_id"])
    kept = frame[~frame["image_id"].isin(known)].reset_index(drop=True)
    if kept.empty:
        raise ValueError(
            f"all {len(frame)} images are also in {other}; nothing is left to evaluate: drop --exclude "
            "or give a data set the model has not seen"
        )
    log.info("left out %d of %d images that %s also holds", len(frame) - len(kept), len(frame), other)
    return kept, len(frame) - len(kept)


def _bundle_split(model: str | os.PathLike) -> SplitRecord | None:
    """The split a bundle's card recorded (seed, fractions, data fingerprint), or None for other models."""
    card_file = Path(model) / "model_card.json"
    if not card_file.is_file():
        return None
    return SplitRecord.from_card(json.loads(card_file.read_text()))


def _split_config(model: str | os.PathLike, split_seed: int | None) -> SplitConfig:
    """The bundle's own split (so ``--split val`` re-derives its validation images), else the default."""
    recorded = _bundle_split(model)
    if split_seed is not None:
        return SplitConfig(
            seed=split_seed, fractions=recorded.fractions if recorded else SplitConfig().fractions
        )
    return recorded.split_config() if recorded else SplitConfig()


def _warn_if_other_data(model: str | os.PathLike, frame: pd.DataFrame) -> None:
    from build.make.datasets import fingerprint

    recorded = _bundle_split(model)
    expected = recorded.data_fingerprint if recorded else None
    if expected and fingerprint(frame) != expected:
        log.warning(
            "the data differ from what %s was built on (fingerprint %s, card %s): the split will "
            "not match the card's",
            model,
            fingerprint(frame),
            expected,
        )


# -- opening models ------------------------------------------------------------------------------------------


def _open(model: Any, *, variant: str | None, backend: str, labels: Sequence[str] | None) -> _Runner:
    from edge.classifier import Classifier

    if isinstance(model, Classifier):
        return _classifier_runner(model)
    if isinstance(model, (str, os.PathLike)) and Path(model).suffix == ".keras":
        from models.keras import keras

        return _keras_runner(keras.models.load_model(model, compile=False), Path(model), labels)
    if isinstance(model, (str, os.PathLike)):
        return _classifier_runner(Classifier(model, variant=variant, labels=labels, backend=backend))
    if hasattr(model, "predict") and hasattr(model, "input_shape"):
        return _keras_runner(model, None, labels)
    raise TypeError(
        f"cannot evaluate a {type(model).__name__}; pass a bundle folder, a .tflite or .keras "
        "file, a Keras model or an edge.classifier.Classifier"
    )


def _classifier_runner(classifier: Any) -> _Runner:
    card = classifier.card
    malignant = tuple(card.malignant_indices) if card else _known_malignant(classifier.labels)
    threshold = float(getattr(card, "malignant_threshold", DEFAULT_THRESHOLD)) if card else DEFAULT_THRESHOLD

    def predict(paths: Sequence[str], tta: bool) -> tuple[np.ndarray, np.ndarray]:
        probabilities, abstained = [], []
        progress = Progress("evaluating", len(paths))
        for i, path in enumerate(paths, 1):
            pixels = classifier.preprocess(path)
            p = classifier.probabilities_from_pixels(pixels, tta=tta)
            probabilities.append(p)
            abstained.append(classifier.predict_pixels(pixels, p, source=str(path)).abstained)
            progress.update(i)
        progress.close()
        return np.stack(probabilities), np.asarray(abstained, dtype=bool)

    variant = f" ({classifier.variant})" if classifier.variant else ""
    # A bundle's file is named relative to the bundle (its card names it), so a report copied into a
    # release never points at the build machine's run folder.
    where = (
        f"{Path(classifier.model_path).name}{variant} of {card.name} {card.version}"
        if card
        else f"{classifier.model_path}{variant}"
    )
    return _Runner(
        tuple(classifier.labels),
        malignant,
        threshold,
        where,
        predict,
        has_abstain_rule=bool(card and card.abstain),
        card=card,
    )


def _keras_runner(model: Any, path: Path | None, labels: Sequence[str] | None) -> _Runner:
    from edge.classifier import tta_views

    _, height, width, _ = model.input_shape
    num_outputs = int(model.output_shape[-1])
    spec = InputSpec(height=int(height), width=int(width))
    labels = tuple(labels) if labels is not None else _labels_beside(path, num_outputs)

    def predict(paths: Sequence[str], tta: bool) -> tuple[np.ndarray, np.ndarray]:
        outputs = []
        progress = Progress("evaluating", len(paths))
        for start in range(0, len(paths), KERAS_BATCH):
            pixels = [load_image(p, spec) for p in paths[start : start + KERAS_BATCH]]
            views = [tta_views(p) if tta else [p] for p in pixels]
            n_views = len(views[0])
            batch = normalize(np.stack([v for vs in views for v in vs]), spec)
            probabilities = np.asarray(model(batch, training=False), dtype=np.float64)
            outputs.append(probabilities.reshape(len(pixels), n_views, -1).mean(axis=1))
            progress.update(min(start + KERAS_BATCH, len(paths)))
        progress.close()
        return np.concatenate(outputs), np.zeros(len(paths), dtype=bool)

    return _Runner(
        labels,
        _known_malignant(labels),
        DEFAULT_THRESHOLD,
        str(path) if path else f"Keras model {model.name}",
        predict,
    )


def _labels_beside(path: Path | None, num_outputs: int) -> tuple[str, ...]:
    """labels.txt next to a .keras file, else the HAM10000 codes when the output size says so."""
    if path is not None and (path.parent / LABELS_FILE).is_file():
        labels = read_labels(path.parent / LABELS_FILE)
        if len(labels) != num_outputs:
            raise ValueError(
                f"{path.parent / LABELS_FILE} lists {len(labels)} labels but the model has "
                f"{num_outputs} outputs"
            )
        return labels
    default = task(DEFAULT_TASK)
    if num_outputs == len(default.codes):
        return default.codes
    raise ValueError(
        f"{path or 'the Keras model'} has {num_outputs} outputs and no {LABELS_FILE} beside it; "
        "pass labels=[...] in output order"
    )


def _known_malignant(labels: Sequence[str]) -> tuple[int, ...]:
    """Which outputs of a bare model file (no card) are malignant: the codes any task row marks so."""
    return tuple(i for i, code in enumerate(labels) if getattr(known_class(code), "malignant", False))


def _write_predictions(
    path: Path, frame: pd.DataFrame, probabilities: np.ndarray, abstained: np.ndarray, labels: Sequence[str]
) -> None:
    """One row per image: id, true label, predicted label, abstained, one probability column per class."""
    table = pd.DataFrame(
        {
            "image_id": frame["image_id"].to_numpy()
            if "image_id" in frame
            else [Path(p).stem for p in frame["path"]],
            "label": frame["label"].astype(str).to_numpy(),
            "predicted": [labels[i] for i in probabilities.argmax(axis=1)],
            "abstained": abstained,
            **{f"p_{code}": probabilities[:, k].round(6) for k, code in enumerate(labels)},
        }
    )
    write_text_atomic(path, table.to_csv(index=False))
