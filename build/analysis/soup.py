"""The mean of several runs' float weights (a "model soup"), scored against each run and their ensemble.

Runs of one model fine-tuned from the same pretrained weights usually end in one basin of the loss,
so the mean of their weights often scores like the ensemble of the runs at the cost of one model
(Wortsman et al. 2022, "Model soups"). This averages the runs' float weights and scores, on the
validation split they share and with the build's decision rule (the class shift cross-fitted, as
``skinlesion sizes`` does): each run, the soup, and the ensemble (the mean of the runs' probabilities:
what one model distilled from them could reach). Every row is paired with the first run on the same
images.

    OUT/soup.weights.npz   the mean weights: build from them with ``train.init_from``
    OUT/soup.json          one row per model

    >>> rows = soup_runs(["runs/a", "runs/b"], "runs/soup-ab", cache_dir="runs/.cache")
    >>> print(format_soup_scores(rows))
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from build.analysis.input_size import paired_with, validation_decisions
from build.make.run import Run, write_text_atomic

log = logging.getLogger(__name__)

WEIGHTS_FILE = "soup.weights.npz"
RESULT_FILE = "soup.json"
SOUP, ENSEMBLE = "soup (mean of weights)", "ensemble (mean of probabilities)"


@dataclass(frozen=True)
class SoupScore:
    """One model on the shared validation split.

    Attributes:
        name: The run's folder name, or ``SOUP`` / ``ENSEMBLE``.
        balanced_accuracy: With the build's decision rule (cross-fitted when it fits a class shift).
        melanoma_recall: Recall of melanoma where the task has it, else None.
        difference: ``balanced_accuracy`` minus the first run's, on the same images.
        interval: 95 % paired-bootstrap interval of ``difference`` ((0, 0) for the first run).
    """

    name: str
    balanced_accuracy: float
    melanoma_recall: float | None
    difference: float
    interval: tuple[float, float]


def soup_runs(
    run_dirs: list[str | Path],
    out_dir: str | Path,
    *,
    size: int | None = None,
    cache_dir: str | Path | None = None,
    weights: str = "best",
    folds: int = 5,
) -> list[SoupScore]:
    """Averages the runs' ``float/<weights>.weights.npz``, writes ``OUT/soup.weights.npz`` and scores each
    run, the soup and the ensemble at ``size`` (default: the first run's release size, its FixRes size
    when it has one) on the validation split; writes ``OUT/soup.json``.

    Raises:
        FileNotFoundError: A run has no such float weights yet.
        ValueError: Fewer than two runs; runs of different models or classes; runs whose validation
            images differ, or one that trained on the validation images of another.
    """
    from build.make.context import prepare
    from build.make.reproducible import load_weights
    from build.make.train import predict_probabilities
    from models.classifier import build_model

    if len(run_dirs) < 2:
        raise ValueError(f"a soup needs at least two runs, got {len(run_dirs)}")
    runs = [Run(Path(d), cache=Path(cache_dir) if cache_dir else None) for d in run_dirs]
    configs = [run.load_config() for run in runs]
    paths = [_float_weights(run, weights) for run in runs]
    first = configs[0]
    size = size or first.fixres.image_size or first.model.image_size
    contexts = [
        prepare(run, dataclasses.replace(c, model=dataclasses.replace(c.model, image_size=size)))
        for run, c in zip(runs, configs)
    ]
    _check_shared_validation(runs, contexts)
    mean = average_weights(paths)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / WEIGHTS_FILE, *mean)

    ctx = contexts[0]
    model = build_model(ctx.config.model, len(ctx.classes))
    probabilities: dict[str, np.ndarray] = {}
    for run, path in zip(runs, paths):
        load_weights(model, path)
        probabilities[run.root.name] = predict_probabilities(model, ctx.val.pixels, ctx.spec)
        log.info("soup: scored %s", run.root)
    ensemble = np.mean(list(probabilities.values()), axis=0)
    model.set_weights(mean)
    probabilities[SOUP] = predict_probabilities(model, ctx.val.pixels, ctx.spec)
    probabilities[ENSEMBLE] = ensemble
    decisions = {name: validation_decisions(ctx, p, folds=folds) for name, p in probabilities.items()}
    reference = decisions[runs[0].root.name]
    rows = [
        _soup_score(name, reference, table, name == runs[0].root.name) for name, table in decisions.items()
    ]
    write_text_atomic(
        out / RESULT_FILE,
        json.dumps(
            {
                "runs": [str(p) for p in paths],
                "weights": str(out / WEIGHTS_FILE),
                "size": size,
                "split": "val",
                "folds": folds,
                "models": [dataclasses.asdict(r) for r in rows],
            },
            indent=2,
        ),
    )
    return rows


def average_weights(paths: list[Path]) -> list[np.ndarray]:
    """The element-wise mean of weight files saved by ``save_weights_atomic``, in float32.

    Raises:
        ValueError: A file holds other arrays (count or shapes) than the first: another architecture.
    """
    total: list[np.ndarray] | None = None
    for path in paths:
        with np.load(path) as arrays:
            values = [arrays[f"arr_{i}"].astype(np.float64) for i in range(len(arrays.files))]
        if total is None:
            total = values
            shapes = [v.shape for v in values]
            continue
        if [v.shape for v in values] != shapes:
            raise ValueError(
                f"{path} holds weights of another model than {paths[0]} ({len(values)} arrays against "
                f"{len(shapes)}, or other shapes): a soup averages runs of one backbone, alpha and class list"
            )
        total = [t + v for t, v in zip(total, values)]
    return [(t / len(paths)).astype(np.float32) for t in total]


def format_soup_scores(rows: list[SoupScore]) -> str:
    """The table ``skinlesion soup`` prints."""
    width = max(len(row.name) for row in rows)
    lines = [f"{'model':{width}s}  val bal.acc  vs {rows[0].name} (95% interval)   mel recall"]
    for row in rows:
        low, high = row.interval
        versus = (
            "(reference)"
            if row is rows[0]
            else f"{100 * row.difference:+5.1f} pt ({100 * low:+.1f} to {100 * high:+.1f})"
        )
        mel = "" if row.melanoma_recall is None else f"{row.melanoma_recall:.3f}"
        lines.append(f"{row.name:{width}s}  {row.balanced_accuracy:11.4f}  {versus:33s}  {mel}")
    runs = [row for row in rows if row.name not in (SOUP, ENSEMBLE)]
    soup = next(row for row in rows if row.name == SOUP)
    best_run = max(runs, key=lambda row: row.balanced_accuracy)
    if soup.balanced_accuracy > best_run.balanced_accuracy:
        lines.append(
            f"The soup scores above every run (best: {best_run.name}); build from it with train.init_from."
        )
    else:
        lines.append(f"The soup scores no better than {best_run.name}: keep that run's weights.")
    return "\n".join(lines)


def _float_weights(run: Run, weights: str) -> Path:
    path = run.root / "float" / f"{weights}.weights.npz"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: a soup takes runs whose float training has completed an epoch "
            "(weights: best or last)"
        )
    return path


def _check_shared_validation(runs: list[Run], contexts: list) -> None:
    """The runs must predict the same classes and share their validation images, none of which any run
    trained on: otherwise the scores are neither paired nor honest."""
    first, reference = runs[0], contexts[0]
    val_ids = set(reference.part("val")["image_id"])
    for run, ctx in zip(runs[1:], contexts[1:]):
        if ctx.classes != reference.classes:
            raise ValueError(
                f"{run.root} predicts {', '.join(ctx.classes)}, {first.root} predicts "
                f"{', '.join(reference.classes)}: a soup averages runs of one class list"
            )
        if set(ctx.part("val")["image_id"]) != val_ids:
            raise ValueError(
                f"{run.root} and {first.root} validate on different images: soup runs made with the same "
                "data.split (sources and seed)"
            )
    for run, ctx in zip(runs, contexts):
        leaked = val_ids & set(ctx.part("train")["image_id"])
        if leaked:
            raise ValueError(
                f"{run.root} trained on {len(leaked)} of the validation images (e.g. {sorted(leaked)[0]}): "
                "its scores would flatter it; soup runs made with the same data.split"
            )


def _soup_score(name: str, reference: pd.DataFrame, table: pd.DataFrame, is_reference: bool) -> SoupScore:
    return SoupScore(name=name, **paired_with(reference, table, is_reference=is_reference))
