"""Validation: parity numbers on known inputs, and a gate that stops a broken export."""

import json
import sys

import numpy as np
import pytest

from converters.export import export_tflite
from converters.quantization import QuantizationConfig
from converters.validate import ParityGate, ParityReport, check_gate, validate_tflite
from tests.conftest import TINY_LABELS, TINY_SPEC


def _validate(result, model, validation_set, variant):
    pixels, labels = validation_set
    return validate_tflite(result.path, model, pixels, labels, input_spec=TINY_SPEC, variant=variant)


def test_float32_against_its_own_model_agrees_exactly(exported, tiny_keras_model, validation_set):
    report = _validate(exported["float32"], tiny_keras_model, validation_set, "float32")
    assert report.n == len(validation_set[0]) == 36
    assert report.top1_agreement == 1.0
    assert report.max_abs_diff < 1e-5
    assert report.mean_kl == pytest.approx(0.0, abs=1e-6)
    assert report.balanced_accuracy_delta == 0.0
    assert check_gate(report, ParityGate.for_variant("float32")) == []


@pytest.mark.parametrize(
    "name, variant",
    [("float16", "float16"), ("dynamic", "dynamic"), ("int8", "int8"), ("int8_io_int8", "int8")],
)
def test_quantized_variants_pass_their_default_gate(
    exported, tiny_keras_model, validation_set, name, variant
):
    report = _validate(exported[name], tiny_keras_model, validation_set, variant)
    assert report.balanced_accuracy_reference == 1.0  # the tiny model knows its colours
    assert report.input_dtype == {"int8": "uint8", "int8_io_int8": "int8"}.get(name, "float32")
    assert check_gate(report, ParityGate.for_variant(variant)) == []
    if variant == "int8":
        assert 0 < report.max_abs_diff < 0.1  # quantized, but close


def test_the_gate_stops_a_model_with_shuffled_final_weights(tmp_path, tiny_keras_model, validation_set):
    from models.keras import keras

    broken = keras.models.clone_model(tiny_keras_model)
    broken.set_weights(tiny_keras_model.get_weights())
    kernel, bias = broken.get_layer("probabilities").get_weights()
    broken.get_layer("probabilities").set_weights([np.roll(kernel, 1, axis=1), np.roll(bias, 1)])
    result = export_tflite(
        broken,
        tmp_path / "model_float32.tflite",
        QuantizationConfig.for_float32(),
        input_spec=TINY_SPEC,
        labels=TINY_LABELS,
    )
    pixels, labels = validation_set
    report = validate_tflite(result.path, tiny_keras_model, pixels, labels, input_spec=TINY_SPEC)
    assert report.variant == "float32"  # read from model_float32.tflite
    assert report.top1_agreement < 0.5
    failures = check_gate(report, ParityGate.for_variant("float32"))
    assert len(failures) == 3
    assert "top-1 agreement" in failures[0] and "below 99.90%" in failures[0]
    assert "balanced accuracy drops" in failures[1]
    assert "KL divergence" in failures[2]


def test_reference_model_can_be_a_file(tmp_path, exported, tiny_keras_model, validation_set):
    path = tmp_path / "reference.keras"
    tiny_keras_model.save(path)
    pixels, labels = validation_set
    report = validate_tflite(
        exported["float32"].path,
        path,
        pixels[:5],
        labels[:5],
        input_spec=TINY_SPEC,
        variant="float32",
        batch_size=2,
    )  # 5 images in padded batches of 2
    assert (report.n, report.top1_agreement) == (5, 1.0)


def test_check_gate_names_each_missed_threshold():
    report = ParityReport(
        variant="int8",
        model="m.tflite",
        n=1000,
        top1_agreement=0.98,
        max_abs_diff=0.3,
        mean_abs_diff=0.01,
        mean_kl=0.02,
        balanced_accuracy_reference=0.80,
        balanced_accuracy_tflite=0.785,
        balanced_accuracy_delta=-0.015,
        input_dtype="uint8",
        output_dtype="uint8",
        seconds=1.0,
    )
    failures = check_gate(report, ParityGate.for_variant("int8"))
    assert failures == [
        "int8: top-1 agreement 98.00% is below 98.50% (m.tflite, n=1000)",
        "int8: balanced accuracy drops 1.50 points (80.00% -> 78.50%), more than 1.00",
    ]
    assert check_gate(report, ParityGate(min_top1_agreement=0.97, max_balanced_accuracy_drop=2.0)) == []
    assert check_gate(report, ParityGate(0.97, 2.0, max_mean_kl=0.01)) == [
        "int8: mean KL divergence 2.00e-02 is above 1.00e-02"
    ]


def test_report_round_trips_through_json(exported, tiny_keras_model, validation_set):
    report = _validate(exported["int8"], tiny_keras_model, validation_set, "int8")
    assert ParityReport.from_dict(json.loads(report.to_json())) == report


def test_bad_inputs_are_refused_with_what_was_received(exported, tiny_keras_model, validation_set):
    pixels, labels = validation_set
    path = exported["float32"].path
    with pytest.raises(ValueError, match=r"uint8 of shape \(N, 32, 32, 3\).*float32"):
        validate_tflite(
            path, tiny_keras_model, pixels.astype(np.float32), labels, input_spec=TINY_SPEC, variant="float32"
        )
    with pytest.raises(ValueError, match="36 integer class indices"):
        validate_tflite(path, tiny_keras_model, pixels, labels[:3], input_spec=TINY_SPEC, variant="float32")
    with pytest.raises(ValueError, match="cannot tell the variant of float32.tflite"):
        validate_tflite(path, tiny_keras_model, pixels, labels, input_spec=TINY_SPEC)
    with pytest.raises(ValueError, match="no default gate for variant 'int4'"):
        ParityGate.for_variant("int4")


def test_a_class_the_quantized_output_ties_with_the_top_counts_as_agreement():
    from converters.validate import top1_agreement

    reference = np.array([[0.30, 0.25, 0.45], [0.50, 0.30, 0.20], [0.10, 0.60, 0.30]])
    # Image 1: the file scores classes 0 and 2 equally (one int8 level); the reference's top is 2: agreed.
    # Image 2: the file's top is class 1, the reference's class 0: a real disagreement.
    tflite = np.array([[0.40, 0.20, 0.40], [0.30, 0.50, 0.20], [0.10, 0.60, 0.30]])
    assert top1_agreement(reference, tflite) == pytest.approx(2 / 3)


def test_a_parity_check_reports_its_progress(exported, tiny_keras_model, validation_set, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="edge.progress")
    pixels, labels = validation_set
    validate_tflite(
        exported["float32"].path, tiny_keras_model, pixels, labels, input_spec=TINY_SPEC, variant="float32"
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "edge.progress"]
    assert lines and lines[-1].startswith(f"checking {exported['float32'].path.name}") and "100%" in lines[-1]
    assert "images/s" in lines[-1] and "ETA" in lines[-1]


def test_the_variant_of_a_file_name_comes_from_the_table(monkeypatch):
    from pathlib import Path

    from converters.validate import _variant_from_name
    from edge import variants

    assert _variant_from_name(Path("bundle/model_dynamic.tflite")) == "dynamic"
    row = variants.Variant("int4", "model_int4.tflite", "made-up", ParityGate(0.9, 3.0))
    monkeypatch.setattr(variants, "VARIANTS", (*variants.VARIANTS, row))
    assert _variant_from_name(Path("model_int4.tflite")) == "int4"
    with pytest.raises(ValueError, match="one of int8, float16, dynamic, float32, int4"):
        _variant_from_name(Path("model_int2.tflite"))


@pytest.mark.parametrize("name", ["float32", "int8_io_int8"])
def test_files_are_read_through_the_edge_interpreter_whichever_runtime_it_finds(
    exported, validation_set, monkeypatch, name
):
    from converters.validate import run_tflite

    pixels = validation_set[0][:8]
    with_litert, io_types = run_tflite(exported[name].path, pixels, TINY_SPEC)
    for module in (
        "ai_edge_litert",
        "ai_edge_litert.interpreter",
        "tflite_runtime",
        "tflite_runtime.interpreter",
    ):
        monkeypatch.setitem(sys.modules, module, None)  # as on a host with only TensorFlow's interpreter
    with_tensorflow, io_types_tf = run_tflite(exported[name].path, pixels, TINY_SPEC)
    assert io_types_tf == io_types
    np.testing.assert_allclose(with_tensorflow, with_litert, atol=1e-5 if name == "float32" else 2 / 256)
