"""The build reads its variants, tasks and input normalization from the tables in edge/ and models/."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("tensorflow", reason="build configs import the model registry (the [build] extra)")

from build.make import card as card_module  # noqa: E402
from build.make import export as export_stage  # noqa: E402
from build.make.context import RunContext  # noqa: E402
from build.make.results import FloatResult  # noqa: E402
from build.analysis.evaluate import _known_malignant  # noqa: E402
from build.config import BuildConfig, ExportConfig, load_config  # noqa: E402
from build.make.run import Run, class_names, input_spec  # noqa: E402
from converters import export as export_module  # noqa: E402
from edge import tasks, variants  # noqa: E402
from edge.card import ClassInfo  # noqa: E402
from edge.preprocess import normalize  # noqa: E402
from converters.validate import ParityReport, check_gate  # noqa: E402
from edge.variants import ParityGate, Variant  # noqa: E402
from models import backbones  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "build" / "configs"


def config_with(**export) -> BuildConfig:
    return dataclasses.replace(BuildConfig(), export=ExportConfig(**export))


def context(config: BuildConfig, classes: list[str]) -> SimpleNamespace:
    """What export reads of a run's context, without decoding any images."""
    return SimpleNamespace(config=config, classes=tuple(classes), spec=input_spec(config), train=None)


def fake_export(monkeypatch) -> list[dict]:
    """Replaces the converter with a recorder of what the build asked for."""
    calls = []

    def export_tflite(source, path, config, **kwargs):
        calls.append({"source": source, "path": path, "config": config, **kwargs})
        return SimpleNamespace(path=Path(path))

    monkeypatch.setattr(export_module, "export_tflite", export_tflite)
    monkeypatch.setattr(export_stage, "calibration_sample", lambda *args: ["calibration pixels"])
    return calls


# -- variants -----------------------------------------------------------------------------------------------


def test_export_defaults_and_gates_come_from_the_variant_table():
    export = ExportConfig()
    assert export.variants == variants.names()
    assert export.int8_min_agreement == ParityGate.for_variant("int8").min_top1_agreement
    assert export.float_min_agreement == ParityGate.for_variant("float16").min_top1_agreement
    assert export_stage.parity_gate(BuildConfig(), "dynamic") == ParityGate.for_variant("dynamic")
    assert export_stage.parity_gate(BuildConfig(), "float16") == ParityGate.for_variant("float16")
    assert export_stage._gate_name("int8-ptq") == "int8"
    with pytest.raises(
        ValueError, match=r"export.also_validate: unknown variant\(s\) \['int4'\]; known: int8"
    ):
        ExportConfig(also_validate=("int4",))


def test_the_configured_float_gate_judges_float16_and_float32_alone():
    config = config_with(float_min_agreement=0.995, float_max_drop_points=0.2)
    for name in ("float16", "float32"):
        gate = export_stage.parity_gate(config, name)
        assert (gate.min_top1_agreement, gate.max_balanced_accuracy_drop) == (0.995, 0.2)
        assert gate.max_mean_kl == ParityGate.for_variant(name).max_mean_kl
    assert export_stage.parity_gate(config, "dynamic") == ParityGate.for_variant("dynamic")
    # Two near-ties of 1,002 images flipped: 0.13 points, within 0.2 but not the default 0.1.
    report = ParityReport(
        variant="float16",
        model="m.tflite",
        n=1002,
        top1_agreement=0.998,
        max_abs_diff=0.03,
        mean_abs_diff=0.0,
        mean_kl=2.8e-5,
        balanced_accuracy_reference=0.7440,
        balanced_accuracy_tflite=0.7427,
        balanced_accuracy_delta=-0.0013,
        input_dtype="float32",
        output_dtype="float32",
        seconds=1.0,
    )
    assert check_gate(report, export_stage.parity_gate(config, "float16")) == []
    default = dataclasses.replace(export_stage.parity_gate(config, "float16"), max_balanced_accuracy_drop=0.1)
    assert check_gate(report, default) == [
        "float16: balanced accuracy drops 0.13 points (74.40% -> 74.27%), more than 0.10"
    ]


def test_planned_variants_follow_the_table(monkeypatch):
    config = config_with(variants=("int8", "float16"), also_validate=("float32",))
    assert export_stage._planned_variants(config) == ["float16", "float32", "int8-qat", "int8-ptq"]
    no_qat = dataclasses.replace(config, qat=dataclasses.replace(config.qat, enabled=False))
    assert export_stage._planned_variants(no_qat) == ["float16", "float32", "int8-ptq"]
    # A third int8 candidate is one more row: the plan (and so the export and the choice) sees it.
    distilled = Variant(
        "int8-distilled",
        "distilled/model_int8.tflite",
        "int8 from a distilled QAT model",
        ParityGate.for_variant("int8"),
        quantization="int8",
        source="qat",
        shipped=False,
    )
    monkeypatch.setattr(variants, "VARIANTS", (*variants.VARIANTS, distilled))
    assert export_stage._planned_variants(config)[-3:] == ["int8-qat", "int8-ptq", "int8-distilled"]


def test_export_writes_each_row_s_file_with_its_factory_and_the_task_s_facts(monkeypatch, tmp_path):
    calls = fake_export(monkeypatch)
    int4 = Variant("int4", "model_int4.tflite", "made-up", ParityGate(0.9, 3.0), quantization="float16")
    monkeypatch.setattr(variants, "VARIANTS", (*variants.VARIANTS, int4))
    config = config_with(variants=("int8", "int4"))
    float_path, qat_path = tmp_path / "float.keras", tmp_path / "qat.h5"
    files = export_stage.export_variants(float_path, qat_path, tmp_path, context(config, ["mel", "nv", "zz"]))

    assert list(files) == ["int4", "int8-qat", "int8-ptq"]
    assert [c["path"].relative_to(tmp_path).as_posix() for c in calls] == [
        "model_int4.tflite",
        "qat/model_int8.tflite",
        "ptq/model_int8.tflite",
    ]
    assert [c["source"] for c in calls] == [float_path, qat_path, float_path]
    assert [c["config"].variant for c in calls] == ["float16", "int8", "int8"]
    assert [c["config"].representative_data for c in calls] == [None, None, ["calibration pixels"]]
    ham = tasks.task("ham10000")
    assert {c["license"] for c in calls} == {ham.license}
    assert calls[0]["display_names"] == ["Melanoma", "Melanocytic nevus (mole)", "zz"]


def test_unchanged_variants_are_not_exported_again(monkeypatch, tmp_path):
    calls = fake_export(monkeypatch)
    config = config_with(variants=("int8", "float16"))
    files = export_stage.export_variants(
        tmp_path / "f.keras", None, tmp_path, context(config, ["mel"]), skip={"float16"}
    )
    assert list(files) == ["int8-ptq"] and len(calls) == 1


# -- tasks --------------------------------------------------------------------------------------------------


def test_an_unknown_task_is_refused_naming_the_value_and_the_known_ones():
    with pytest.raises(
        ValueError, match=r"data.task = 'isic' is not a known task; choose one of ham10000, msid"
    ):
        load_config(CONFIGS / "tiny.toml", overrides=["data.task=isic"])


def test_data_task_chooses_the_card_s_classes_licence_and_wording(monkeypatch, tmp_path):
    row = dataclasses.replace(
        tasks.task("msid"),
        key="demo",
        image_kind="demo photos",
        license="Demo licence",
        intended_use="Demonstrations only.",
        limitations=("Made up.",),
        classes=(ClassInfo("b", "Bad spot", True), ClassInfo("a", "A spot", False)),
        fixed_classes=True,
    )
    monkeypatch.setitem(tasks.TASKS, "demo", row)
    config = load_config(CONFIGS / "tiny.toml", overrides=["data.task=demo"])
    frame = pd.DataFrame(
        {"image_id": ["1", "2"], "label": ["a", "b"], "group": ["g1", "g2"], "split": ["train", "val"]}
    )
    classes = class_names(config, frame)
    assert classes == ["b", "a"]  # the task's fixed classes, in its order, not the data's sorted labels

    ctx = RunContext(Run(tmp_path), config, frame, tuple(classes), input_spec(config))
    card = card_module.make_card(
        ctx,
        FloatResult(tmp_path / "model.keras"),
        None,
        temperature=1.0,
        abstain={},
        validation={},
        seconds=1.0,
    )
    assert card.task == "demo photos, 2 classes"
    assert card.display_names == {"b": "Bad spot", "a": "A spot"} and card.malignant_indices == [0]
    assert (card.license, card.intended_use, card.limitations) == (
        "Demo licence",
        "Demonstrations only.",
        ("Made up.",),
    )


def test_a_task_without_fixed_classes_takes_them_from_the_data():
    config = load_config(CONFIGS / "tiny.toml")  # msid, no data.classes
    frame = pd.DataFrame({"label": ["red", "blue", "red"]})
    assert class_names(config, frame) == ["blue", "red"]
    assert class_names(load_config(CONFIGS / "ham10000.toml")) == list(tasks.task("ham10000").codes)


def test_a_bare_model_s_malignant_outputs_come_from_the_task_rows(monkeypatch):
    assert _known_malignant(["nv", "mel", "Monkeypox", "bcc"]) == (1, 3)
    demo = dataclasses.replace(
        tasks.task("msid"), key="demo", classes=(ClassInfo("Monkeypox", "Mpox", True),)
    )
    monkeypatch.setattr(tasks, "TASKS", {"aaa-demo": demo, **tasks.TASKS})
    assert _known_malignant(["nv", "Monkeypox"]) == (1,)


# -- backbones ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(backbones.BACKBONES))
def test_input_spec_takes_the_backbone_s_normalization(name):
    config = dataclasses.replace(BuildConfig(), model=dataclasses.replace(BuildConfig().model, backbone=name))
    entry = backbones.BACKBONES[name]
    spec = input_spec(config)
    assert (spec.mean, spec.std) == (entry.mean, entry.std)


def test_a_backbone_with_its_own_normalization_reaches_the_spec(monkeypatch):
    imagenet = dataclasses.replace(
        backbones.BACKBONES["mobilenet"], mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4)
    )
    monkeypatch.setitem(backbones.BACKBONES, "mobilenet", imagenet)
    config = dataclasses.replace(
        BuildConfig(), model=dataclasses.replace(BuildConfig().model, backbone="mobilenet")
    )
    spec = input_spec(config)
    assert (spec.mean, spec.std) == ((123.7, 116.3, 103.5), (58.4, 57.1, 57.4))
    calibration = normalize(np.full((2, 2, 3), 255, np.uint8), spec)
    assert np.allclose(calibration[0, 0], [(255 - 123.7) / 58.4, (255 - 116.3) / 57.1, (255 - 103.5) / 57.4])
