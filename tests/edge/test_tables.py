"""The variant and task tables: the runtime's order, file names, gates and task facts come from their rows."""

from __future__ import annotations

import dataclasses

import pytest

from edge import tasks, variants
from edge.bundle import DEFAULT_BUNDLE, load_bundle
from edge.card import ClassInfo
from edge.cli import main
from edge.variants import ParityGate, Variant


def with_row(row: Variant, *, first: bool = False) -> tuple[Variant, ...]:
    """A copy of the variant table with ``row`` added (first: the most preferred)."""
    return (row, *variants.VARIANTS) if first else (*variants.VARIANTS, row)


INT4 = Variant("int4", "model_int4.tflite", "made-up 4-bit variant", ParityGate(0.9, 3.0))


def test_the_table_gives_the_preference_order_and_the_shipped_files():
    assert variants.names() == ("int8", "float16", "dynamic", "float32")
    assert variants.names(shipped_only=False) == (
        "int8",
        "float16",
        "dynamic",
        "float32",
        "int8-qat",
        "int8-ptq",
    )
    assert [row.file for row in variants.shipped()] == [f"model_{name}.tflite" for name in variants.names()]
    assert [row.name for row in variants.candidates("int8")] == ["int8-qat", "int8-ptq"]
    assert variants.candidates("float16") == ()


def test_default_gates_are_the_rows_gates_and_candidates_share_their_variants():
    assert ParityGate.for_variant("int8") == ParityGate(
        min_top1_agreement=0.985, max_balanced_accuracy_drop=1.0
    )
    assert ParityGate.for_variant("float32").max_mean_kl == 1e-4
    assert ParityGate.for_variant("int8-ptq") == ParityGate.for_variant("int8")
    with pytest.raises(ValueError, match="no default gate for variant 'int4'; known: int8, float16"):
        ParityGate.for_variant("int4")


def test_a_new_row_is_a_gated_shipped_variant_with_its_file_name(monkeypatch):
    monkeypatch.setattr(variants, "VARIANTS", with_row(INT4))
    assert variants.names()[-1] == "int4"
    assert ParityGate.for_variant("int4") == ParityGate(0.9, 3.0)
    assert variants.from_file_name("model_int4.tflite") == "int4"
    assert variants.from_file_name("qat/model_int8.tflite") is None  # candidates are no bundle file


def test_the_bundle_prefers_variants_in_table_order(monkeypatch, edge_bundle):
    bundle = load_bundle(edge_bundle)
    assert bundle.variants == ("int8", "float32")
    assert bundle.path().name == "model_int8.tflite"
    float_first = (variants.variant("float32"), *(r for r in variants.VARIANTS if r.name != "float32"))
    monkeypatch.setattr(variants, "VARIANTS", float_first)
    assert bundle.variants == ("float32", "int8")
    assert bundle.path().name == "model_float32.tflite"


@pytest.mark.parametrize("command", ["classify", "bench"])
def test_the_cli_offers_the_table_s_variants(monkeypatch, capsys, command):
    monkeypatch.setattr(variants, "VARIANTS", with_row(INT4))
    monkeypatch.setenv("COLUMNS", "200")  # one help line per option
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "int8, float16, dynamic, float32, int4" in capsys.readouterr().out


def test_task_rows_hold_the_shipped_classes_and_malignant_sets():
    ham, msid = tasks.task("ham10000"), tasks.task("msid")
    assert ham.codes == ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc") and ham.fixed_classes
    assert ham.malignant_codes == ("akiec", "bcc", "mel")
    assert msid.codes == ("Chickenpox", "Measles", "Monkeypox", "Normal") and msid.malignant_codes == ()
    assert ham.class_info("mel").display_name == "Melanoma"
    assert ham.class_info("red") == ClassInfo("red", "red")  # a code the task does not know
    assert tasks.known_class("Monkeypox").display_name == "Mpox (monkeypox)"
    assert tasks.known_class("nothing") is None
    with pytest.raises(ValueError, match="unknown task 'isic'; known tasks: ham10000, msid"):
        tasks.task("isic")


@pytest.mark.parametrize("key", sorted(tasks.TASKS))
def test_the_shipped_bundles_read_as_their_task_rows_say(key):
    card = load_bundle(DEFAULT_BUNDLE.parent / key).card
    row = tasks.task(key)
    assert card.task.startswith(row.image_kind)
    assert card.classes == tuple(row.class_info(code) for code in card.labels)
    assert (card.license, card.intended_use) == (row.license, row.intended_use)
    assert row.license and row.license != tasks.UNSTATED_LICENSE


def test_a_new_task_row_is_found_by_name(monkeypatch):
    row = dataclasses.replace(tasks.task("msid"), key="demo", classes=(ClassInfo("x", "Ex", True),))
    monkeypatch.setitem(tasks.TASKS, "demo", row)
    assert tasks.task("demo").malignant_codes == ("x",)
    assert tasks.known_class("x").malignant


@pytest.mark.parametrize("key", sorted(tasks.TASKS))
def test_a_refusal_tells_what_to_do_in_the_words_of_the_models_task(key, tmp_path):
    import numpy as np
    from PIL import Image

    from edge.classifier import Classifier

    noise = tmp_path / "noise.png"  # a saved file: the runtime's resize smooths it
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(noise)
    prediction = Classifier(DEFAULT_BUNDLE.parent / key).classify(noise)
    assert prediction.abstained
    assert prediction.abstain_reason.endswith(tasks.task(key).retake)
    assert ("dermatoscope" in prediction.abstain_reason) == (key == "ham10000")
    assert tasks.for_card_name(f"skinlesion-{key}") is tasks.task(key)
    assert tasks.for_card_name("my-model") is None
