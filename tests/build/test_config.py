"""Build configs: TOML files, command-line overrides, clear errors, and the resume guard."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("tensorflow", reason="build configs import the model registry (the [build] extra)")

from build.config import BuildConfig, from_dict, load_config  # noqa: E402
from build.make.run import Run, prepare_split, split_summary, start_run  # noqa: E402
from edge.tasks import MSID_CLASSES  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "build" / "configs"
SHARED = REPO.parent / "shared"


# Every config, the experiments' too: each must still load (and resume) after the schema grows.
@pytest.mark.parametrize("name", sorted(path.stem for path in CONFIGS.glob("*.toml")))
def test_shipped_configs_load_and_round_trip_through_json(name):
    config = load_config(CONFIGS / f"{name}.toml")
    assert config.name.startswith("skinlesion-")
    # config.json in a run folder must read back as the very same config, or resume would refuse it.
    assert from_dict(BuildConfig, json.loads(config.to_json()), where="config.json") == config


def test_msid_config_is_the_four_class_mpox_build():
    config = load_config(CONFIGS / "msid.toml")
    assert config.data.task == "msid"
    assert config.data.classes == tuple(c.code for c in MSID_CLASSES)
    assert config.data.split.fractions == (0.8, 0.1, 0.1)
    assert config.model.backbone == "mobilenet_v2" and config.model.alpha == 1.0
    assert Path(config.model.weights).name == (
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_160_no_top.h5"
    )


@pytest.mark.shared_data
def test_msid_config_points_at_the_shared_data_and_weights():
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent (a fresh clone has no ../shared)")
    config = load_config(CONFIGS / "msid.toml")
    # Paths in configs are relative to the repository root, where `skinlesion build` runs.
    assert (REPO / config.model.weights).is_file()
    folders = sorted(p.name for p in (REPO / config.data.sources[0]).iterdir() if p.is_dir())
    assert folders == list(config.data.classes)


def test_overrides_are_typed_like_the_field():
    config = load_config(
        CONFIGS / "tiny.toml",
        overrides=[
            "train.epochs=7",
            "model.alpha=1",
            "train.optimizer=sgd",
            "qat.enabled=false",
            "data.sources=['a', 'b']",
            "data.split.seed=3",
            "name = renamed",
        ],
    )
    assert config.train.epochs == 7
    assert config.model.alpha == 1.0 and isinstance(config.model.alpha, float)
    assert config.train.optimizer == "sgd"
    assert config.qat.enabled is False
    assert config.data.sources == ("a", "b")
    assert config.data.split.seed == 3
    assert config.name == "renamed"


def test_overrides_work_without_a_file():
    config = load_config(None, overrides=["train.batch_size=4"])
    assert config.train.batch_size == 4 and config.model == BuildConfig().model


def test_unknown_keys_are_named_with_the_known_ones(tmp_path):
    known = r"unknown key\(s\) \['epochz'\] for TrainConfig; known: \[.*'epochs'"
    with pytest.raises(ValueError, match=known):
        load_config(CONFIGS / "tiny.toml", overrides=["train.epochz=3"])
    path = tmp_path / "typo.toml"
    path.write_text('[modle]\nbackbone = "mobilenet_v2"\n')
    with pytest.raises(ValueError, match=rf"{path}: unknown key\(s\) \['modle'\] for BuildConfig"):
        load_config(path)


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epochs=2.5", "epochs must be int, got 2.5"),
        ("model.image_size='big'", "image_size must be int, got 'big'"),
        ("train.optimizer=adagrad", "optimizer must be adam|adamw|rmsprop|sgd, got 'adagrad'"),
        ("train.strategy=tpu", "strategy must be auto|one|mirrored|multiworker, got 'tpu'"),
        ("data.split.fractions=[0.5, 0.5, 0.5]", "fractions must be three non-negative numbers summing to 1"),
        ("train.epochs", "must look like section.key=value"),
        ("data.label_maps=['', '']", "data.label_maps has 2 entries for 1 source"),
        ("data.label_maps=['isic']", "data.label_maps: unknown label map(s) ['isic']"),
        ("export.abstain_regularization=0", "export.abstain_regularization must be one or more inverse L2"),
        ("export.abstain_regularization=[]", "export.abstain_regularization must be one or more inverse L2"),
        (
            "export.external_label_maps=['isic-archive']",
            "export.external_label_maps has 1 entries for 0 source",
        ),
        ("export.abstain_quantile=1.0", "export.abstain_quantile must be a share in [0.5, 1), got 1.0"),
    ],
)
def test_bad_values_are_refused_with_the_value(override, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_config(CONFIGS / "tiny.toml", overrides=[override])


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope.toml")):
        load_config(tmp_path / "nope.toml")


def test_a_run_folder_saves_the_config_and_reopens_only_on_resume(tmp_path):
    config = load_config(CONFIGS / "tiny.toml")
    run = start_run(tmp_path / "run", config, resume=False)
    assert Run(tmp_path / "run").load_config() == config
    with pytest.raises(FileExistsError, match="pass --resume"):
        start_run(tmp_path / "run", config, resume=False)
    assert start_run(tmp_path / "run", config, resume=True) == run


def write_class_folders(root: Path, counts: dict[str, int], prefix: str) -> Path:
    from PIL import Image

    for label, n in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (40 * i % 255, 90, 60)).save(root / label / f"{prefix}{label}{i}.png")
    return root


def test_training_only_sources_join_the_runs_training_split_and_leave_the_cards_split_alone(tmp_path):
    main = write_class_folders(tmp_path / "main", {"a": 20, "b": 20}, prefix="m")
    extra = write_class_folders(tmp_path / "extra", {"a": 3, "b": 5}, prefix="x")
    alone = load_config(CONFIGS / "tiny.toml", [f"data.sources=['{main}']"])
    merged = dataclasses.replace(
        alone, data=dataclasses.replace(alone.data, train_only_sources=(str(extra),))
    )

    split_alone = prepare_split(start_run(tmp_path / "alone", alone, resume=False), alone)
    split_merged = prepare_split(start_run(tmp_path / "merged", merged, resume=False), merged)

    for split in ("val", "test"):
        assert sorted(split_merged.loc[split_merged["split"] == split, "image_id"]) == sorted(
            split_alone.loc[split_alone["split"] == split, "image_id"]
        )
    assert (split_merged["split"] == "train").sum() == (split_alone["split"] == "train").sum() + 8
    summary = split_summary(split_merged, merged)
    assert summary["data_fingerprint"] == split_summary(split_alone, alone)["data_fingerprint"]
    assert summary["training_only"] == {"sources": [str(extra)], "images": 8}
    reread = pd.read_csv(tmp_path / "merged" / "split.csv")  # what a resumed run reads back
    assert split_summary(reread, merged) == summary


def test_a_run_saved_before_a_setting_existed_resumes_with_its_default(tmp_path):
    config = load_config(CONFIGS / "tiny.toml")
    start_run(tmp_path / "run", config, resume=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    del saved["train"]["fit_class_bias"]  # as written by an older version
    (tmp_path / "run" / "config.json").write_text(json.dumps(saved))
    start_run(tmp_path / "run", config, resume=True)


def test_a_setting_used_after_the_last_epoch_may_change_until_the_float_model_exists(tmp_path):
    config = load_config(CONFIGS / "tiny.toml")
    start_run(tmp_path / "run", config, resume=False)
    fitted = dataclasses.replace(config, train=dataclasses.replace(config.train, fit_class_bias=True))
    assert start_run(tmp_path / "run", fitted, resume=True).load_config() == fitted
    (tmp_path / "run" / "float").mkdir()
    (tmp_path / "run" / "float" / "model.keras").write_bytes(b"")
    with pytest.raises(ValueError, match=r"cannot resume .*\['train'\]"):
        start_run(tmp_path / "run", config, resume=True)


def test_resume_refuses_a_changed_config_and_names_the_section(tmp_path):
    config = load_config(CONFIGS / "tiny.toml")
    start_run(tmp_path / "run", config, resume=False)
    saved = (tmp_path / "run" / "config.json").read_text()
    changed = dataclasses.replace(config, train=dataclasses.replace(config.train, learning_rate=0.1))
    with pytest.raises(ValueError, match=r"cannot resume .*differs from the saved one in \['train'\]"):
        start_run(tmp_path / "run", changed, resume=True)
    assert (tmp_path / "run" / "config.json").read_text() == saved


def test_a_config_that_extends_another_holds_only_what_differs(tmp_path):
    (tmp_path / "base.toml").write_text('name = "base"\n[train]\nepochs = 7\nlearning_rate = 0.01\n')
    (tmp_path / "child.toml").write_text('extends = "base.toml"\n[train]\nepochs = 3\n')
    config = load_config(tmp_path / "child.toml")
    assert (config.name, config.train.epochs, config.train.learning_rate) == ("base", 3, 0.01)


def test_the_release_stage_2_config_continues_stage_1_with_its_model_and_data():
    stage1, stage2 = (
        load_config(CONFIGS / "ham10000-release2.toml"),
        load_config(CONFIGS / "ham10000-continue.toml"),
    )
    assert (stage2.model, stage2.data, stage2.train.augment) == (
        stage1.model,
        stage1.data,
        stage1.train.augment,
    )
    assert stage2.train.init_from and stage2.train.head_epochs == 0


def test_the_release_stage_3_config_polishes_stage_2_at_a_low_rate_with_batchnorm_frozen():
    stage2, stage3 = (
        load_config(CONFIGS / "ham10000-continue.toml"),
        load_config(CONFIGS / "ham10000-polish.toml"),
    )
    assert (stage3.model, stage3.data, stage3.qat) == (stage2.model, stage2.data, stage2.qat)
    assert stage3.train.init_from.startswith("runs/ham10000-continue/")
    assert stage3.train.learning_rate < stage2.train.learning_rate and not stage3.train.train_batchnorm


def test_the_isic_config_is_stage_1_with_the_archive_added_to_training_alone():
    stage1, isic = (
        load_config(CONFIGS / "ham10000-release2.toml"),
        load_config(CONFIGS / "ham10000-isic.toml"),
    )
    assert (isic.model, isic.train, isic.data.sources, isic.data.split) == (
        stage1.model,
        stage1.train,
        stage1.data.sources,
        stage1.data.split,
    )
    assert isic.data.train_only_sources == ("../shared/data/isic-archive-9class",)
    assert isic.data.train_only_label_maps == ("isic-archive",)


def test_a_config_with_no_epoch_and_nothing_to_start_from_is_refused():
    with pytest.raises(ValueError, match=r"both 0, so nothing would be trained.*train.init_from"):
        load_config(CONFIGS / "tiny.toml", ["train.epochs=0", "train.head_epochs=0"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.distillation=0.5"], r"teachers and train.distillation go together.*0 teacher"),
        (["train.teachers=['runs/a/float/best.weights.npz']"], r"go together.*distillation 0.0"),
        (["train.teachers=['a.npz']", "train.distillation=1.5"], "between 0 and 1, got 1.5"),
        (
            ["train.teachers=['a.npz']", "train.distillation=0.5", "train.balance.mode='class_weight'"],
            'cannot be used with train.balance.mode = "class_weight".*"oversample"',
        ),
    ],
)
def test_distilling_from_teachers_needs_both_files_and_a_weight(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(CONFIGS / "tiny.toml", overrides)


def test_the_reexport_recipe_trains_nothing_and_starts_from_release_2():
    reexport = load_config(CONFIGS / "ham10000-reexport.toml")
    assert reexport.train.epochs == reexport.train.head_epochs == 0
    assert reexport.train.init_from.endswith("model_float16.tflite")
    assert reexport.model == load_config(CONFIGS / "ham10000-continue.toml").model


def test_continuing_from_a_tflite_file_with_batchnorm_training_is_refused():
    with pytest.raises(ValueError, match=r"model_float16\.tflite.*folded.*train_batchnorm = false"):
        load_config(
            CONFIGS / "ham10000-polish.toml",
            [
                "train.init_from='models/pretrained/ham10000/model_float16.tflite'",
                "train.train_batchnorm=true",
            ],
        )


def test_a_missing_or_looping_parent_config_is_refused(tmp_path):
    (tmp_path / "orphan.toml").write_text('extends = "gone.toml"\n')
    with pytest.raises(FileNotFoundError, match="gone.toml"):
        load_config(tmp_path / "orphan.toml")
    (tmp_path / "loop.toml").write_text('extends = "loop.toml"\n')
    with pytest.raises(ValueError, match="loops back"):
        load_config(tmp_path / "loop.toml")


def test_configs_load_without_tensorflow():
    # A Pi, a CI job or a config linter can read and check a build config with no TensorFlow installed.
    code = (
        "import sys; from build.config import load_config; load_config('build/configs/ham10000.toml'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
