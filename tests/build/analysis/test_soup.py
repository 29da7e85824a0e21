"""The soup of runs: the mean of their weights, scored paired against each run and their ensemble."""

from __future__ import annotations

import json

import numpy as np
import pytest

from build.analysis.soup import ENSEMBLE, SOUP, SoupScore, average_weights, format_soup_scores


def test_the_soup_is_the_element_wise_mean_of_the_runs_weights(tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    np.savez(a, np.array([[1.0, 2.0]], np.float32), np.array([0.0], np.float32))
    np.savez(b, np.array([[3.0, 6.0]], np.float32), np.array([1.0], np.float32))
    mean = average_weights([a, b])
    np.testing.assert_allclose(mean[0], [[2.0, 4.0]])
    np.testing.assert_allclose(mean[1], [0.5])
    assert all(array.dtype == np.float32 for array in mean)


def test_weights_of_another_architecture_are_refused_naming_the_file(tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "wider.npz"
    np.savez(a, np.zeros((2, 3), np.float32))
    np.savez(b, np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="wider.npz holds weights of another model"):
        average_weights([a, b])


def row(name, score, difference=0.0, interval=(0.0, 0.0)):
    return SoupScore(name, score, None, difference, interval)


def test_the_table_says_whether_to_build_from_the_soup():
    better = [
        row("a", 0.70),
        row("b", 0.72, 0.02, (-0.01, 0.05)),
        row(SOUP, 0.74, 0.04, (0.01, 0.07)),
        row(ENSEMBLE, 0.75, 0.05, (0.02, 0.08)),
    ]
    table = format_soup_scores(better)
    assert "(reference)" in table and "+4.0 pt (+1.0 to +7.0)" in table
    assert table.endswith("build from it with train.init_from.")
    worse = [row("a", 0.70), row("b", 0.72), row(SOUP, 0.60), row(ENSEMBLE, 0.73)]
    assert format_soup_scores(worse).endswith("keep that run's weights.")


needs_tensorflow = pytest.mark.skipif(
    __import__("importlib").util.find_spec("tensorflow") is None,
    reason="scoring a soup runs the Keras models (the [build] extra)",
)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    from build.make.context import prepare
    from build.make.run import start_run
    from build.make.train import train_float
    from tests.build.make.test_train import tiny_config, write_synthetic_dataset

    root = tmp_path_factory.mktemp("soup")
    data = write_synthetic_dataset(root / "data", n_per_class=40)
    runs = []
    for seed in (0, 1):
        config = tiny_config(data, "train.fit_class_bias=true", f"train.seed={seed}")
        run = start_run(root / "runs" / f"seed{seed}", config, resume=False)
        train_float(prepare(run, config))
        runs.append(run)
    return data, runs


@needs_tensorflow
def test_each_run_the_soup_and_the_ensemble_are_scored_on_the_shared_validation_images(two_runs, tmp_path):
    from build.analysis.soup import RESULT_FILE, WEIGHTS_FILE, soup_runs

    _, runs = two_runs
    rows = soup_runs([run.root for run in runs], tmp_path / "soup", folds=2)
    assert [r.name for r in rows] == ["seed0", "seed1", SOUP, ENSEMBLE]
    assert rows[0].difference == 0.0 and rows[0].interval == (0.0, 0.0)
    for r in rows[1:]:
        assert r.difference == pytest.approx(r.balanced_accuracy - rows[0].balanced_accuracy)
        assert r.interval[0] <= r.difference <= r.interval[1]
    expected = average_weights([run.root / "float" / "best.weights.npz" for run in runs])
    with np.load(tmp_path / "soup" / WEIGHTS_FILE) as saved:
        for i, array in enumerate(expected):
            np.testing.assert_array_equal(saved[f"arr_{i}"], array)
    written = json.loads((tmp_path / "soup" / RESULT_FILE).read_text())
    assert written["split"] == "val" and [m["name"] for m in written["models"]] == [r.name for r in rows]


@needs_tensorflow
def test_a_run_validated_on_other_images_is_refused(two_runs, tmp_path):
    from build.analysis.soup import soup_runs
    from build.make.run import start_run
    from tests.build.make.test_train import tiny_config

    data, runs = two_runs
    other = start_run(tmp_path / "other-split", tiny_config(data, "data.split.seed=7"), resume=False)
    (other.root / "float").mkdir()
    (other.root / "float" / "best.weights.npz").write_bytes(
        (runs[1].root / "float" / "best.weights.npz").read_bytes()
    )
    with pytest.raises(ValueError, match="validate on different images"):
        soup_runs([runs[0].root, other.root], tmp_path / "soup", folds=2)


def test_one_run_is_not_a_soup(tmp_path):
    from build.analysis.soup import soup_runs

    with pytest.raises(ValueError, match="at least two runs"):
        soup_runs([tmp_path], tmp_path / "soup")
