"""The hyperparameter sweep: what trials draw, and a real two-trial sweep that ranks, saves and resumes."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("tensorflow", reason="the sweep trains models (the [build] extra)")

import build.make.train  # noqa: E402
from build.config import load_config  # noqa: E402
from build.make.run import Run  # noqa: E402
from build.analysis.sweep import SweepBudget, SweepSpace, TrialResult, format_table, rank, sweep, trial_config  # noqa: E402
from tests.build.make.test_train import TINY_TOML, tiny_config, write_synthetic_dataset  # noqa: E402

BASE = load_config(TINY_TOML)


def test_a_trial_draws_the_same_config_every_time_and_trials_differ():
    first = trial_config(BASE, 0, seed=5)
    assert trial_config(BASE, 0, seed=5) == first
    others = [trial_config(BASE, i, seed=5) for i in range(1, 4)] + [trial_config(BASE, 0, seed=6)]
    assert all(other.train.learning_rate != first.train.learning_rate for other in others)


def test_a_trial_changes_only_the_searched_values_and_the_budget():
    budget = SweepBudget(head_epochs=1, epochs=1, steps_per_epoch=2)
    config = trial_config(BASE, 3, seed=0, budget=budget)
    assert config.name == f"{BASE.name}-trial-003"
    assert (config.train.head_epochs, config.train.epochs, config.train.steps_per_epoch) == (1, 1, 2)
    assert config.qat.enabled is False
    assert config.data == BASE.data and config.export == BASE.export and config.resize == BASE.resize
    assert config.train.augment == BASE.train.augment and config.train.batch_size == BASE.train.batch_size
    assert dataclasses.replace(config.model, dropout=BASE.model.dropout, l2=BASE.model.l2) == BASE.model
    # The head phase keeps the base config's head/fine-tune learning-rate ratio.
    ratio = BASE.train.head_learning_rate / BASE.train.learning_rate
    assert config.train.head_learning_rate == pytest.approx(config.train.learning_rate * ratio, rel=0.01)


def test_draws_cover_the_space_log_uniformly():
    space = SweepSpace()
    configs = [trial_config(BASE, i, seed=1, space=space) for i in range(300)]
    assert {c.train.optimizer for c in configs} == set(space.optimizers)
    adam = [c.train.learning_rate for c in configs if c.train.optimizer != "sgd"]
    sgd = [c.train.learning_rate for c in configs if c.train.optimizer == "sgd"]
    low, high = space.learning_rate
    assert low * 0.999 <= min(adam) and max(adam) <= high * 1.001
    assert low * 10 * 0.999 <= min(sgd) and max(sgd) <= high * 10 * 1.001
    # Log-uniform: about half the rates fall below the geometric middle of the range.
    below = np.mean([rate < math.sqrt(low * high) for rate in adam])
    assert 0.35 < below < 0.65
    l2 = [c.model.l2 for c in configs]
    assert np.mean([v < math.sqrt(space.l2[0] * space.l2[1]) for v in l2]) == pytest.approx(0.5, abs=0.15)
    assert all(space.dropout[0] <= c.model.dropout <= space.dropout[1] for c in configs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"learning_rate": (0.0, 1e-3)}, "learning_rate must be"),
        ({"l2": (1e-3, 1e-6)}, "l2 must be"),
        ({"dropout": (0.2, 1.0)}, "dropout must be"),
        ({"optimizers": ("adam", "lion")}, "optimizers must be a non-empty subset"),
    ],
)
def test_a_bad_search_space_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SweepSpace(**kwargs)


def test_rank_puts_the_best_first_and_breaks_ties_by_trial():
    def result(trial, score):
        return TrialResult(trial, "adam", 1e-3, 3e-3, 0.2, 1e-4, score, 1, 2, 1.0, f"t{trial}")

    ranked = rank([result(0, 0.5), result(1, 0.7), result(2, 0.7)])
    assert [r.trial for r in ranked] == [1, 2, 0]
    table = format_table(ranked).splitlines()
    assert "val bal acc" in table[0] and table[2].split()[:2] == ["1", "1"] and len(table) == 5


def test_no_trials_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="trials must be at least 1, got 0"):
        sweep(tmp_path, BASE, trials=0)


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    config = tiny_config(write_synthetic_dataset(root / "data"))
    budget = SweepBudget(head_epochs=1, epochs=1, steps_per_epoch=2)
    results = sweep(root / "sweep", config, trials=2, seed=0, budget=budget)
    return root / "sweep", config, budget, results


def test_a_sweep_trains_each_trial_in_its_own_run_and_ranks_them(finished_sweep):
    run_dir, config, budget, results = finished_sweep
    assert sorted(r.trial for r in results) == [0, 1]
    assert results == rank(results)
    for result in results:
        trial = Run(run_dir / f"trial-{result.trial:03d}")
        saved = trial.load_config()
        assert saved == trial_config(config, result.trial, seed=0, budget=budget)
        assert (result.optimizer, result.learning_rate, result.dropout, result.l2) == (
            saved.train.optimizer,
            saved.train.learning_rate,
            saved.model.dropout,
            saved.model.l2,
        )
        assert (trial.root / "float" / "model.keras").is_file()
        assert 0 <= result.val_balanced_accuracy <= 1 and result.epochs == 2 and 1 <= result.best_epoch <= 2


def test_a_sweep_saves_its_ranked_table(finished_sweep):
    run_dir, _, _, results = finished_sweep
    table = pd.read_csv(run_dir / "sweep.csv")
    assert list(table["trial"]) == [r.trial for r in results]
    np.testing.assert_allclose(table["val_balanced_accuracy"], [r.val_balanced_accuracy for r in results])
    saved = json.loads((run_dir / "sweep.json").read_text())
    assert saved["ranked_by"] == "val_balanced_accuracy" and saved["seed"] == 0
    assert [TrialResult(**r) for r in saved["results"]] == results
    assert not list(run_dir.glob(".*tmp*")), "a temporary file was left behind"


def test_a_finished_sweep_is_read_back_without_training(finished_sweep, monkeypatch, capsys):
    run_dir, config, budget, results = finished_sweep

    def no_training(*args, **kwargs):
        raise AssertionError("a finished trial was trained again")

    monkeypatch.setattr(build.make.train, "train_float", no_training)
    assert sweep(run_dir, config, trials=2, seed=0, budget=budget) == results
    printed = capsys.readouterr().out
    assert "val bal acc" in printed and len(printed.strip().splitlines()) == 2 + len(results)


def test_a_sweep_refuses_a_folder_swept_with_another_config(finished_sweep):
    run_dir, config, budget, _ = finished_sweep
    other = dataclasses.replace(config, resize="center_crop")
    with pytest.raises(ValueError, match=r"cannot resume .*trial-000.*\['resize'\]"):
        sweep(run_dir, other, trials=2, seed=0, budget=budget)
