"""Which input size a trained float model scores best at, measured on validation (FixRes: train low, test higher).

A network trained on random-resized crops sees objects larger than a whole image at the same size
shows them, so it often scores best a little above its training size (Touvron et al. 2019). This
scores a run's float weights at several input sizes on its validation split, each with the decision the
build would make (the class shift fitted on validation, or prior correction), and compares every size
with the trained one, paired on the same images. The fitted shift is cross-fitted: each image's
decision comes from a shift fitted on the other folds, so a size is not rewarded for fitting noise.

    runs/<run>/input_sizes.json     one row per size: balanced accuracy, difference, interval

    >>> rows = score_input_sizes("runs/ham10000-v4", [160, 192, 224], cache_dir="runs/.cache")
    >>> best = max(rows, key=lambda row: row.balanced_accuracy)

To ship a better size, build from the same weights at that size with no float epochs (QAT and the
export then run at it): ``build/configs/ham10000-192.toml`` is one such config.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from build.analysis.metrics import MELANOMA
from build.analysis.significance import compare_predictions
from build.make.run import Run, write_text_atomic
from edge.accuracy import balanced_accuracy

log = logging.getLogger(__name__)

RESULT_FILE = "input_sizes.json"


@dataclass(frozen=True)
class SizeScore:
    """One input size on the validation split.

    Attributes:
        size: Input height and width in pixels.
        balanced_accuracy: With the build's decision rule (cross-fitted when it fits a class shift).
        melanoma_recall: Recall of melanoma where the task has it, else None.
        difference: ``balanced_accuracy`` minus the trained size's, on the same images.
        interval: 95 % paired-bootstrap interval of ``difference``.
        trained: Whether this is the size the model was trained at.
    """

    size: int
    balanced_accuracy: float
    melanoma_recall: float | None
    difference: float
    interval: tuple[float, float]
    trained: bool


def score_input_sizes(
    run_dir: str | Path,
    sizes: list[int],
    *,
    cache_dir: str | Path | None = None,
    weights: str = "best",
    folds: int = 5,
) -> list[SizeScore]:
    """Scores ``run_dir``'s float weights (``float/<weights>.weights.npz``) at each of ``sizes`` on its
    validation split and writes ``input_sizes.json`` into the run; the trained size is always included.

    Raises:
        FileNotFoundError: The run has no such float weights yet.
        ValueError: No size given, or a size below the backbone's minimum.
    """
    from build.make.context import prepare
    from build.make.reproducible import load_weights
    from build.make.train import predict_probabilities
    from models.classifier import build_model

    run = Run(Path(run_dir), cache=Path(cache_dir) if cache_dir else None)
    config = run.load_config()
    path = run.root / "float" / f"{weights}.weights.npz"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: score input sizes after the float training of {run.root} has completed "
            "an epoch (weights: best or last)"
        )
    if not sizes:
        raise ValueError("sizes: give at least one input size, e.g. 160 192 224")
    trained = config.model.image_size
    sizes = sorted({trained, *sizes})
    scored: dict[int, pd.DataFrame] = {}
    for size in sizes:
        sized = dataclasses.replace(config, model=dataclasses.replace(config.model, image_size=size))
        ctx = prepare(run, sized)
        model = build_model(sized.model, len(ctx.classes))
        load_weights(model, path)
        probabilities = predict_probabilities(model, ctx.val.pixels, ctx.spec)
        scored[size] = validation_decisions(ctx, probabilities, folds=folds)
        log.info(
            "input size %d: val balanced accuracy %.4f",
            size,
            balanced_accuracy(scored[size]["label"], scored[size]["predicted"]),
        )
    rows = [_size_score(size, scored[trained], scored[size], size == trained) for size in sizes]
    write_text_atomic(
        run.root / RESULT_FILE,
        json.dumps(
            {
                "weights": str(path),
                "split": "val",
                "folds": folds,
                "sizes": [dataclasses.asdict(r) for r in rows],
            },
            indent=2,
        ),
    )
    return rows


def validation_decisions(ctx, probabilities: np.ndarray, *, folds: int = 5) -> pd.DataFrame:
    """The build's decision for each validation image of ``ctx`` (columns image_id, label, predicted, as
    ``compare_predictions`` reads them): the class shift fitted on validation, cross-fitted over
    ``folds``, or the run's prior correction."""
    from build.make.train import training_prior
    from models.classifier import prior_shift

    config, cfg, labels = ctx.config, ctx.config.train, ctx.val.labels
    if cfg.fit_class_bias:
        predicted = cross_fitted_decisions(probabilities, labels, folds=folds, seed=config.data.split.seed)
    else:
        index = {code: k for k, code in enumerate(ctx.classes)}
        train_labels = ctx.part("train")["label"].map(index).to_numpy()
        prior = training_prior(train_labels, len(ctx.classes), cfg)
        predicted = (np.log(probabilities + 1e-12) - prior_shift(prior, cfg.prior_correction)).argmax(1)
    return pd.DataFrame(
        {
            "image_id": ctx.part("val")["image_id"],
            "label": [ctx.classes[k] for k in labels],
            "predicted": [ctx.classes[k] for k in predicted],
        }
    )


def cross_fitted_decisions(
    probabilities: np.ndarray, labels: np.ndarray, *, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """Balanced decisions where each image's class shift was fitted on the other folds (stratified).

    Raises:
        ValueError: Fewer than 2 folds, or a class with fewer images than folds.
    """
    from build.make.calibration import fit_balanced_shift

    labels = np.asarray(labels)
    if folds < 2:
        raise ValueError(f"folds must be at least 2 to keep each image out of its own fit, got {folds}")
    counts = np.bincount(labels, minlength=probabilities.shape[1])
    if counts.min() < folds:
        raise ValueError(
            f"class {int(counts.argmin())} has {int(counts.min())} validation images, fewer than "
            f"{folds} folds: lower folds or enlarge the validation split"
        )
    fold = stratified_folds(labels, folds=folds, seed=seed)
    predicted = np.empty(len(labels), dtype=int)
    log_probabilities = np.log(probabilities + 1e-12)
    for held_out in range(folds):
        inside = fold != held_out
        shift = fit_balanced_shift(probabilities[inside], labels[inside])
        predicted[~inside] = (log_probabilities[~inside] - shift).argmax(axis=1)
    return predicted


def stratified_folds(labels: np.ndarray, *, folds: int, seed: int = 0) -> np.ndarray:
    """A fold number per image, each class spread evenly over the folds (so every fit sees every class)."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=int)
    for k in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == k))
        fold[members] = np.arange(len(members)) % folds
    return fold


def format_size_scores(rows: list[SizeScore]) -> str:
    """The table ``skinlesion sizes`` prints."""
    lines = ["size  val bal.acc  vs trained size (95% interval)   mel recall"]
    for row in rows:
        low, high = row.interval
        versus = (
            "(trained size)"
            if row.trained
            else f"{100 * row.difference:+5.1f} pt ({100 * low:+.1f} to {100 * high:+.1f})"
        )
        mel = "" if row.melanoma_recall is None else f"{row.melanoma_recall:.3f}"
        lines.append(f"{row.size:4d}  {row.balanced_accuracy:11.4f}  {versus:33s}  {mel}")
    best = max(rows, key=lambda row: row.balanced_accuracy)
    if best.trained:
        lines.append("The trained size scores best.")
    elif best.interval[0] > 0:
        lines.append(f"{best.size} px is measurably better than the trained size on validation.")
    else:
        lines.append(f"{best.size} px scores best, but not measurably better than the trained size.")
    return "\n".join(lines)


def _size_score(size: int, trained: pd.DataFrame, sized: pd.DataFrame, is_trained: bool) -> SizeScore:
    return SizeScore(size=size, trained=is_trained, **paired_with(trained, sized, is_reference=is_trained))


def paired_with(reference: pd.DataFrame, table: pd.DataFrame, *, is_reference: bool) -> dict:
    """``table``'s balanced accuracy and melanoma recall, and its difference from ``reference`` on the
    same images with a 95 % paired-bootstrap interval ((0, 0) for the reference itself)."""
    comparison = compare_predictions(reference, table)
    mel = comparison.per_class.get(MELANOMA)
    return {
        "balanced_accuracy": comparison.balanced_accuracy_b,
        "melanoma_recall": None if mel is None else mel["recall_b"],
        "difference": comparison.difference,
        "interval": (0.0, 0.0) if is_reference else comparison.interval,
    }
