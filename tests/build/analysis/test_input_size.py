"""Input sizes: out-of-fold class shifts, and a tiny trained run scored at its own size and a larger one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from build.analysis.input_size import (
    RESULT_FILE,
    SizeScore,
    cross_fitted_decisions,
    format_size_scores,
    stratified_folds,
)
from edge.accuracy import balanced_accuracy


def skewed_probabilities(labels: np.ndarray, num_classes: int, seed: int = 0) -> np.ndarray:
    """A model that knows the classes but leans hard towards class 0 (as oversampling can leave it)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (len(labels), num_classes))
    logits[np.arange(len(labels)), labels] += 3.0
    logits[:, 0] += 4.0
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_cross_fitted_shifts_undo_a_models_lean_without_seeing_the_image_they_decide():
    labels = np.repeat(np.arange(4), [200, 40, 30, 30])
    probabilities = skewed_probabilities(labels, 4)
    plain = balanced_accuracy(labels, probabilities.argmax(axis=1))
    crossed = cross_fitted_decisions(probabilities, labels, folds=5)
    assert plain < 0.5
    assert balanced_accuracy(labels, crossed) > 0.85


def test_every_fold_holds_every_class_in_proportion():
    labels = np.repeat(np.arange(3), [50, 12, 7])
    fold = stratified_folds(labels, folds=5, seed=3)
    for k in range(3):
        counts = np.bincount(fold[labels == k], minlength=5)
        assert counts.max() - counts.min() <= 1 and counts.min() >= 1
    assert not np.array_equal(fold, stratified_folds(labels, folds=5, seed=4))


@pytest.mark.parametrize(
    "folds, labels, message",
    [
        (1, np.repeat(np.arange(2), 10), "folds must be at least 2"),
        (5, np.repeat(np.arange(2), [10, 3]), "class 1 has 3 validation images"),
    ],
)
def test_too_few_folds_or_images_is_refused(folds, labels, message):
    with pytest.raises(ValueError, match=message):
        cross_fitted_decisions(skewed_probabilities(labels, 2), labels, folds=folds)


def test_the_table_names_the_best_size_and_whether_it_is_measurably_better():
    rows = [
        SizeScore(160, 0.70, 0.55, 0.0, (0.0, 0.0), True),
        SizeScore(192, 0.74, 0.60, 0.04, (0.01, 0.07), False),
    ]
    table = format_size_scores(rows)
    assert "(trained size)" in table and "+4.0 pt (+1.0 to +7.0)" in table
    assert table.endswith("192 px is measurably better than the trained size on validation.")
    unsure = [rows[0], SizeScore(192, 0.71, None, 0.01, (-0.02, 0.04), False)]
    assert format_size_scores(unsure).endswith("not measurably better than the trained size.")


# --- a tiny trained run ----------------------------------------------------------------------------------

tensorflow = pytest.importorskip(
    "tensorflow", reason="scoring sizes runs the Keras model (the [build] extra)"
)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from build.make.context import prepare
    from build.make.run import start_run
    from build.make.train import train_float
    from tests.build.make.test_train import tiny_config, write_synthetic_dataset

    root = tmp_path_factory.mktemp("sizes")
    config = tiny_config(write_synthetic_dataset(root / "data", n_per_class=40), "train.fit_class_bias=true")
    run = start_run(root / "runs" / "tiny", config, resume=False)
    train_float(prepare(run, config))
    return run


def test_a_run_is_scored_at_its_trained_size_and_each_size_asked_for(trained_run):
    from build.analysis.input_size import score_input_sizes

    rows = score_input_sizes(trained_run.root, [48, 40], folds=2)
    assert [row.size for row in rows] == [32, 40, 48]
    trained = rows[0]
    assert trained.trained and trained.difference == 0.0 and trained.interval == (0.0, 0.0)
    for row in rows[1:]:
        assert not row.trained
        assert row.difference == pytest.approx(row.balanced_accuracy - trained.balanced_accuracy)
        assert row.interval[0] <= row.difference <= row.interval[1]
    saved = json.loads((trained_run.root / RESULT_FILE).read_text())
    assert [row["size"] for row in saved["sizes"]] == [32, 40, 48] and saved["split"] == "val"


def test_a_run_without_float_weights_is_refused_with_what_to_do(trained_run, tmp_path):
    import shutil

    from build.analysis.input_size import score_input_sizes

    untrained = tmp_path / "untrained"
    untrained.mkdir()
    for name in ("config.json", "split.csv"):
        shutil.copy(trained_run.root / name, untrained / name)
    with pytest.raises(FileNotFoundError, match="best.weights.npz not found.*has completed an epoch"):
        score_input_sizes(untrained, [48])
