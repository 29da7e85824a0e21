"""The stages' records: saved and read back, derived from the summary.json of runs made before them, read
from a bundle's card; the run context built once; the chores every stage shares; and the layering."""

from __future__ import annotations

import ast
import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from build.console import timed_stage
from build.make.results import (
    CARD_FLOAT_KEYS,
    CARD_QAT_KEYS,
    ExportResult,
    FloatResult,
    QatResult,
    SplitRecord,
    read_float,
    read_qat,
)
from build.stage_configs import SplitConfig

REPO = Path(__file__).resolve().parents[3]

# float/summary.json as train_float wrote it before float/result.json existed (a finished tiny run).
OLD_FLOAT_SUMMARY = {
    "epoch": 3,
    "best": 0.52,
    "best_epoch": 2,
    "bad_epochs": 1,
    "seconds": 4.5,
    "stopped": False,
    "phase": "finetune",
    "steps_per_epoch": 3,
    "train_prior": [0.3, 0.3, 0.4],
    "classes": ["blu", "grn", "rdl"],
    "logit_shift": [0.1, -0.2, 0.1],
    "fit_class_bias": True,
    "val_balanced_accuracy_shifted": 0.5,
    "deterministic": True,
    "schedule": {
        "head_epochs": 1,
        "epochs": 2,
        "warmup_epochs": 1,
        "learning_rate": 0.003,
        "optimizer": "adam",
        "ema": 0.0,
        "unfreeze_blocks": 2,
        "batch_size": 8,
    },
    "seconds_per_epoch": 1.5,
    "wall_seconds": 9.0,
}
OLD_QAT_SUMMARY = {
    "epoch": 1,
    "best": 0.5,
    "best_epoch": 0,
    "bad_epochs": 0,
    "seconds": 2.0,
    "stopped": False,
    "phase": None,
    "steps_per_epoch": 2,
    "wall_seconds": 5.0,
}


def old_run(root: Path) -> Path:
    """A run folder as the code before the records left it: models and summaries, no result.json."""
    for stage, model, summary in (
        ("float", "model.keras", OLD_FLOAT_SUMMARY),
        ("qat", "model.h5", OLD_QAT_SUMMARY),
    ):
        (root / stage).mkdir(parents=True)
        (root / stage / model).write_bytes(b"model")
        (root / stage / "summary.json").write_text(json.dumps(summary, indent=2))
    return root


def test_an_old_run_folders_records_are_derived_from_its_summaries(tmp_path):
    root = old_run(tmp_path / "run")
    floated = read_float(root, needed_by="qat")
    assert floated.path == root / "float" / "model.keras"
    assert floated.logit_shift == (0.1, -0.2, 0.1) and floated.classes == ("blu", "grn", "rdl")
    assert (floated.best, floated.best_epoch, floated.epoch, floated.steps_per_epoch) == (0.52, 2, 3, 3)
    assert not floated.finished_early
    # What the card records is exactly what the card recorded when it read the summary itself.
    assert floated.card_record() == {key: OLD_FLOAT_SUMMARY[key] for key in CARD_FLOAT_KEYS}
    quantized = read_qat(root, needed_by="export")
    assert quantized.card_record() == {key: OLD_QAT_SUMMARY[key] for key in CARD_QAT_KEYS}


def test_a_saved_record_is_read_back_and_moves_with_its_run_folder(tmp_path):
    root = old_run(tmp_path / "run")
    derived = read_float(root, needed_by="qat")
    derived.save()
    (root / "float" / "summary.json").unlink()  # the record alone is enough
    assert read_float(root, needed_by="qat") == derived
    shutil.move(root, tmp_path / "moved")
    moved = read_float(tmp_path / "moved", needed_by="qat")
    assert (
        moved.path == tmp_path / "moved" / "float" / "model.keras"
        and moved.logit_shift == derived.logit_shift
    )


def test_a_missing_model_names_the_command_that_makes_it(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"export needs the float model .*model.keras; run `skinlesion train"
    ):
        read_float(tmp_path, needed_by="export")
    with pytest.raises(FileNotFoundError, match=r"model.h5; run `skinlesion qat .*qat.enabled = false"):
        read_qat(tmp_path, needed_by="export")


def test_a_model_without_any_record_reads_as_a_bare_path(tmp_path):
    (tmp_path / "float").mkdir()
    (tmp_path / "float" / "model.keras").write_bytes(b"model")
    floated = read_float(tmp_path, needed_by="qat")
    assert floated.logit_shift is None and floated.card_record() == dict.fromkeys(CARD_FLOAT_KEYS)


def test_a_bundles_card_gives_back_the_float_record_it_was_written_from(tmp_path):
    floated = FloatResult(
        tmp_path / "model.keras",
        classes=("a", "b"),
        logit_shift=(0.5, -0.5),
        best=0.7,
        best_epoch=4,
        epoch=5,
        schedule={"epochs": 5},
    )
    card = {"training": {"float": json.loads(json.dumps(floated.card_record()))}}
    recorded = FloatResult.from_card(card, tmp_path / "model_float16.tflite")
    assert recorded.logit_shift == (0.5, -0.5) and recorded.best_epoch == 4
    assert recorded.card_record() == floated.card_record()
    assert FloatResult.from_card({"training": {}}, tmp_path / "x.tflite") is None


def test_a_bundles_card_gives_back_its_split_and_old_cards_split_without_merging_lesions():
    split = {
        "seed": 7,
        "fractions": [0.7, 0.2, 0.1],
        "data_fingerprint": "abc",
        "duplicate_lesions_merged": True,
    }
    recorded = SplitRecord.from_card({"training": {"split": split}})
    assert recorded.split_config() == SplitConfig(seed=7, fractions=(0.7, 0.2, 0.1))
    assert recorded.data_fingerprint == "abc" and recorded.duplicate_lesions_merged
    old = SplitRecord.from_card({"training": {"split": {"seed": 42, "fractions": [0.8, 0.1, 0.1]}}})
    assert not old.duplicate_lesions_merged and old.data_fingerprint is None
    assert SplitRecord.from_card({"training": {}}) is None and SplitRecord.from_card({}) is None


def test_the_export_record_says_what_was_made_and_the_exit_status(tmp_path):
    failed = ExportResult(passed=False, parity=tmp_path / "parity.json")
    assert failed.status == 1 and failed.path == tmp_path / "parity.json"
    passed = ExportResult(
        passed=True, parity=tmp_path / "parity.json", bundle=tmp_path / "bundle", variants=("int8",)
    )
    assert passed.status == 0 and passed.path == tmp_path / "bundle"
    saved = json.loads(passed.save(tmp_path).read_text())
    assert saved["bundle"] == str(tmp_path / "bundle") and saved["variants"] == ["int8"] and saved["passed"]


def test_every_stage_logs_its_time_and_what_it_made_or_how_it_failed(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="build.console")

    @timed_stage("float")
    def made():
        return QatResult(tmp_path / "model.h5")

    @timed_stage("qat")
    def broken():
        raise FileNotFoundError("no float model")

    assert made().path == tmp_path / "model.h5"
    with pytest.raises(FileNotFoundError):
        broken()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("float: done in ") and lines[0].endswith(f"-> {tmp_path / 'model.h5'}")
    assert lines[1].startswith("qat: failed after ") and lines[1].endswith("no float model")


def test_the_run_context_is_built_once_and_opens_each_split_once(tmp_path):
    pytest.importorskip("pandas")
    from build.make.context import prepare
    from build.make.run import start_run
    from tests.build.make.test_train import tiny_config, write_synthetic_dataset

    config = tiny_config(write_synthetic_dataset(tmp_path / "data", n_per_class=6))
    ctx = prepare(start_run(tmp_path / "run", config, resume=False), config)
    assert ctx.classes == ("blu", "grn", "rdl") and (ctx.spec.height, ctx.spec.width) == (32, 32)
    assert ctx.val is ctx.val and len(ctx.val.labels) == len(ctx.part("val"))
    assert len(ctx.train.labels) == (ctx.frame["split"] == "train").sum()
    longer = ctx.with_config(replace(config, qat=replace(config.qat, epochs=3)))
    assert longer.config.qat.epochs == 3 and longer.frame is ctx.frame
    bigger = replace(config, model=replace(config.model, image_size=64))
    with pytest.raises(ValueError, match="prepare\\(\\) a new context"):
        ctx.with_config(bigger)


def _imports(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
    return modules


def test_the_layers_of_build_point_down():
    # Config is the bottom of build/; the make stages never reach up into analysis or the orchestrator.
    for path in (REPO / "build" / "make").glob("*.py"):
        upward = {m for m in _imports(path) if m.startswith(("build.analysis", "build.build", "build.cli"))}
        assert not upward, f"{path.name} imports {upward}"
    for name in ("config.py", "stage_configs.py"):
        assert not {
            m for m in _imports(REPO / "build" / name) if m.startswith(("build.make", "build.analysis"))
        }
