"""FixRes in one run: what the stages after it are told, and when its settings may change on resume.
The whole build with FixRes (and a kill in its epochs) is in tests/build/test_reproducible.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from build.config import load_config
from build.make.fixres import FIXRES_STAGE, release_config
from build.make.run import start_run

CONFIGS = Path(__file__).resolve().parents[3] / "build" / "configs"
FIXRES = [
    "fixres.image_size=48",
    "fixres.epochs=3",
    "fixres.learning_rate=2e-4",
    "fixres.crop_area=[0.7, 1.0]",
]


def test_the_stages_after_fixres_train_its_epochs_at_the_release_size_from_the_float_stage():
    recipe = load_config(CONFIGS / "tiny.toml", FIXRES)
    stages = release_config(recipe, Path("runs/x"))
    assert stages.model.image_size == 48 and recipe.model.image_size == 32
    train = stages.train
    assert (train.head_epochs, train.epochs, train.warmup_epochs, train.learning_rate) == (0, 3, 0, 2e-4)
    assert train.init_from == str(Path("runs/x/float/best.weights.npz"))
    assert train.augment.crop_area == (0.7, 1.0)
    # Everything else is the recipe's: the data, the classes, the optimizer, QAT and the export.
    assert (stages.data, stages.qat, stages.export) == (recipe.data, recipe.qat, recipe.export)
    assert (
        dataclasses.replace(train.augment, crop_area=recipe.train.augment.crop_area) == recipe.train.augment
    )
    assert (train.optimizer, train.seed, train.batch_size) == (
        recipe.train.optimizer,
        0,
        recipe.train.batch_size,
    )
    assert not stages.fixres.image_size  # no second FixRes


def test_fixres_epochs_need_the_size_to_train_them_at():
    with pytest.raises(ValueError, match="fixres.epochs = 2 needs fixres.image_size"):
        load_config(CONFIGS / "tiny.toml", ["fixres.epochs=2"])
    with pytest.raises(ValueError, match=r"fixres.crop_area must be \[low, high\]"):
        load_config(CONFIGS / "tiny.toml", ["fixres.image_size=48", "fixres.crop_area=[0.5, 1.5]"])


@pytest.mark.parametrize(
    "started", [f"{FIXRES_STAGE}/state.json", f"{FIXRES_STAGE}/model.keras", "qat/state.json"]
)
def test_fixres_settings_may_change_on_resume_until_fixres_or_qat_has_started(tmp_path, started):
    config = load_config(CONFIGS / "tiny.toml")
    start_run(tmp_path / "run", config, resume=False)
    with_fixres = load_config(CONFIGS / "tiny.toml", FIXRES)
    assert start_run(tmp_path / "run", with_fixres, resume=True).load_config() == with_fixres
    (tmp_path / "run" / started).parent.mkdir()
    (tmp_path / "run" / started).write_text('{"epoch": 1}')
    # A QAT model (or FixRes epochs) trained at one size must not be reused at another.
    with pytest.raises(ValueError, match=r"cannot resume .*\['fixres'"):
        start_run(tmp_path / "run", config, resume=True)


def test_the_ham10000_recipe_is_the_two_runs_that_made_release_4_in_one():
    # Release 4: runs/ham10000-blur (this recipe's float stage; its QAT from the labels alone failed the
    # export's gate), then ham10000-blur-qatd.toml warm-started from its best weights with no float epoch,
    # FixRes, QAT distilled and the export as this recipe.
    recipe = load_config(CONFIGS / "ham10000.toml")
    float_run = load_config(CONFIGS / "ham10000-blur.toml")
    second_run = load_config(CONFIGS / "ham10000-blur-qatd.toml")
    assert recipe.train == float_run.train and recipe.model == float_run.model
    assert recipe.data == float_run.data and recipe.fixres == float_run.fixres
    assert second_run.train.init_from == "runs/ham10000-blur/float/best.weights.npz"
    assert second_run.train.epochs == second_run.train.head_epochs == 0
    assert dataclasses.replace(recipe, train=second_run.train) == second_run


def test_the_release_3_recipe_is_the_two_runs_that_made_release_3_in_one():
    # Release 3 was made before the FixRes stage existed: runs/ham10000-v4 (this recipe's float stage),
    # then ham10000-192.toml warm-started from its best weights, with no float epoch. Here the recipe's
    # stages after FixRes are that second run's config; only the schedule of the epochs neither trains
    # is written differently.
    recipe = load_config(CONFIGS / "ham10000-release3.toml")
    second_run = load_config(CONFIGS / "ham10000-192.toml")
    stages = release_config(recipe, Path("runs/ham10000-v4"))
    assert stages.train.epochs == second_run.train.epochs == 0
    unused = {
        "learning_rate": second_run.train.learning_rate,
        "warmup_epochs": second_run.train.warmup_epochs,
    }
    stages = dataclasses.replace(stages, train=dataclasses.replace(stages.train, **unused))
    assert not second_run.fixres.image_size and not stages.fixres.image_size  # off in both
    assert stages == dataclasses.replace(second_run, fixres=stages.fixres)
    assert second_run.train.init_from == "runs/ham10000-v4/float/best.weights.npz"
