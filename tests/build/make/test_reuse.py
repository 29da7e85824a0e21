"""Exporting again with nothing changed reuses what the last export made: the record of exported files
(build.make.reuse) and the calibrated pass (build.make.final) on the tiny model."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from build.make.reuse import RECORD, ExportRecord, export_key
from tests.conftest import TINY_LABELS, TINY_SPEC, tiny_training_set

# -- the record -----------------------------------------------------------------------------------------


def test_a_recorded_file_is_reused_under_its_key_with_its_report_and_head(tmp_path, caplog):
    path = tmp_path / "model_int8.tflite"
    path.write_bytes(b"a tflite file")
    key = export_key(variant="int8", source="abc", temperature=1.5)
    ExportRecord(tmp_path).record("final/int8", key, path, {"top1_agreement": 0.98}, head={"scale": 0.5})

    caplog.set_level(logging.INFO)
    stored = ExportRecord(tmp_path).reusable("final/int8", key)  # read back from export/exports.json
    assert stored.path == path and stored.report == {"top1_agreement": 0.98} and stored.head == {"scale": 0.5}
    assert any("final/int8 unchanged since the last export" in r.getMessage() for r in caplog.records)
    assert json.loads((tmp_path / RECORD).read_text())["final/int8"]["head"] == {"scale": 0.5}


def test_another_key_or_a_changed_file_is_not_reused(tmp_path):
    path = tmp_path / "model_float32.tflite"
    path.write_bytes(b"a tflite file")
    key = export_key(variant="float32", temperature=1.5)
    record = ExportRecord(tmp_path)
    record.record("float32", key, path, {"n": 3})
    assert record.reusable("float32", key).head is None  # a first-pass file has no head
    assert record.reusable("float32", export_key(variant="float32", temperature=1.25)) is None
    assert record.reusable("float16", key) is None
    path.write_bytes(b"another tflite file")
    assert record.reusable("float32", key) is None
    path.unlink()
    assert record.reusable("float32", key) is None


# -- the calibrated pass on the tiny model -----------------------------------------------------------------


@pytest.fixture
def calibrated_pass(tmp_path, tiny_bundle, monkeypatch):
    """Runs ``export_calibrated`` on the tiny model (float32 shipped) and counts the exports and
    validations it does; returns ``(run, calls, source)``: ``run()`` -> Calibrated."""
    pytest.importorskip("tensorflow")
    from build.config import BuildConfig, ExportConfig
    from build.make import final
    from build.make.cache import CachedImages
    from build.make.export import Checked
    from build.make.results import FloatResult
    from converters import export as converter, validate

    config = dataclasses.replace(BuildConfig(), export=ExportConfig(variants=("float32",)))
    train_pixels, train_labels = tiny_training_set(n_per_class=8, seed=1)
    val_pixels, val_labels = tiny_training_set(n_per_class=4, seed=2)
    frame = pd.DataFrame(
        {
            "image_id": [f"img{i}" for i in range(len(train_labels) + len(val_labels))],
            "label": [TINY_LABELS[i] for i in (*train_labels, *val_labels)],
            "split": ["train"] * len(train_labels) + ["val"] * len(val_labels),
        }
    )
    ctx = SimpleNamespace(
        config=config,
        spec=TINY_SPEC,
        classes=TINY_LABELS,
        train=CachedImages(pixels=train_pixels, labels=train_labels),
        part=lambda split: frame[frame["split"] == split].reset_index(drop=True),
    )
    source = tmp_path / "float" / "model.keras"
    source.parent.mkdir()
    shutil.copy(tiny_bundle / "reference.keras", source)
    checked = Checked({"float32": tiny_bundle / "model_float32.tflite"}, {"float32": {"n": 12}}, [])

    calls = {"export": 0, "validate": 0}

    def counted(module, name):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[name.split("_")[0]] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    counted(converter, "export_tflite")
    counted(validate, "validate_tflite")
    out = tmp_path / "export"
    out.mkdir()

    def run(checked=checked, quantized=None):
        return final.export_calibrated(
            ctx, checked, FloatResult(source), quantized, out, val_pixels, np.asarray(val_labels)
        )

    run.ctx = ctx  # a test may change its config between runs
    return run, calls, source


def test_exporting_again_with_nothing_changed_reuses_the_calibrated_files(calibrated_pass, caplog):
    run, calls, _ = calibrated_pass
    first = run()
    assert calls == {"export": 1, "validate": 1}
    path = first.files["float32"]
    assert path.parent.name == "final" and "float32" in first.heads
    written = path.stat().st_mtime_ns

    caplog.set_level(logging.INFO)
    again = run()
    assert calls == {"export": 1, "validate": 1}  # nothing exported or validated again
    assert any("final/float32 unchanged since the last export" in r.getMessage() for r in caplog.records)
    assert not any(r.getMessage().startswith(("exporting", "validated")) for r in caplog.records)
    assert path.stat().st_mtime_ns == written
    # What the card reads is the same: the files, the parity reports, the head, the temperature.
    assert again.files == first.files and again.final == first.final
    assert again.reports == first.reports
    assert {v: head.to_card() for v, head in again.heads.items()} == {
        v: head.to_card() for v, head in first.heads.items()
    }
    assert again.calibration == first.calibration and again.failures == first.failures
    assert again.reports["float32"]["abstain_head"] and again.reports["float32"]["temperature"] > 0


def test_a_changed_temperature_exports_the_calibrated_files_again(calibrated_pass, monkeypatch):
    from build.make import calibration

    run, calls, _ = calibrated_pass
    first = run()
    fitted = calibration.calibrate
    monkeypatch.setattr(
        calibration,
        "calibrate",
        lambda *args: dataclasses.replace(fitted(*args), temperature=2 * fitted(*args).temperature),
    )
    again = run()
    assert calls == {"export": 2, "validate": 2}
    assert again.reports["float32"]["temperature"] == 2 * first.reports["float32"]["temperature"]


def test_the_configured_head_settings_are_the_ones_fitted_and_a_change_exports_again(calibrated_pass):
    from build.config import ExportConfig

    run, calls, _ = calibrated_pass
    first = run()
    default = ExportConfig()
    assert first.heads["float32"].to_card()["regularization"] in default.abstain_regularization
    assert len(first.heads["float32"].to_card()["cross_validated_refused"]) == len(
        default.abstain_regularization
    )
    assert first.heads["float32"].to_card()["quantile"] == default.abstain_quantile
    run.ctx.config = dataclasses.replace(
        run.ctx.config,
        export=ExportConfig(variants=("float32",), abstain_regularization=0.03, abstain_quantile=0.98),
    )
    again = run()
    assert calls == {"export": 2, "validate": 2}
    card = again.heads["float32"].to_card()
    assert (card["regularization"], card["quantile"]) == (0.03, 0.98)


def test_a_changed_source_model_exports_the_calibrated_files_again(calibrated_pass):
    from converters.export import load_keras_model

    run, calls, source = calibrated_pass
    run()
    model = load_keras_model(source)
    model.set_weights([w * 1.01 for w in model.get_weights()])  # as if trained a little further
    model.save(source)
    run()
    assert calls == {"export": 2, "validate": 2}


def test_the_code_version_tells_one_uncommitted_edit_from_another(tmp_path):
    import subprocess

    from build.make.card import code_version

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "stage.py").write_text("EPOCHS = 1\n")
    git("add", "stage.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    clean = code_version(tmp_path)
    assert clean and "dirty" not in clean
    (tmp_path / "stage.py").write_text("EPOCHS = 2\n")
    first = code_version(tmp_path)
    (tmp_path / "stage.py").write_text("EPOCHS = 3\n")
    second = code_version(tmp_path)
    assert first.startswith(f"{clean}-dirty-") and second.startswith(f"{clean}-dirty-")
    assert first != second  # an export made on the first edit is not reused on the second
    (tmp_path / "stage.py").write_text("EPOCHS = 2\n")
    assert code_version(tmp_path) == first


def test_an_int8_file_from_qat_is_gated_against_the_float_model_like_the_first_pass(
    calibrated_pass, tiny_bundle, tmp_path
):
    """QAT that lost what the float model knew must fail the gate, as it does in the first pass; against
    the QAT model it was converted from the loss would not show."""
    from build.config import ExportConfig
    from build.make.export import Checked
    from build.make.results import QatResult
    from converters.export import load_keras_model

    run, _, source = calibrated_pass
    run.ctx.config = dataclasses.replace(run.ctx.config, export=ExportConfig(variants=("int8",)))
    worse = load_keras_model(source)
    head = worse.get_layer("probabilities")
    head.bias.assign(head.bias.numpy() + np.array([20.0, 0.0, 0.0], dtype="float32"))  # always class 0
    worse_path = tmp_path / "qat" / "model.keras"
    worse_path.parent.mkdir()
    worse.save(worse_path)
    checked = Checked({"int8": tiny_bundle / "model_int8.tflite"}, {"int8": {"n": 12, "source": "qat"}}, [])

    calibrated = run(checked, QatResult(worse_path))

    report = calibrated.reports["int8"]
    assert report["source"] == "qat"
    assert report["balanced_accuracy_reference"] > 0.9  # the float model's, not the QAT model's 1/3
    assert report["balanced_accuracy_tflite"] < 0.5 and not report["passed"]
    assert any("int8" in failure and "balanced accuracy" in failure for failure in calibrated.failures)
