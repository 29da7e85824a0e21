"""Loading a bundle and refusing broken ones with messages that name the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.bundle import DEFAULT_BUNDLE, load_bundle
from edge.card import CARD_FILE, LABELS_FILE, ClassInfo
from edge.classifier import Classifier
from edge.errors import BundleError
from tests.edge.conftest import CLASSES, LABELS


def test_default_bundle_is_a_path_in_the_repository():
    assert Path(__file__).resolve().parents[2] / "models" / "pretrained" / "ham10000" == DEFAULT_BUNDLE


def test_loads_a_good_bundle_and_prefers_int8(edge_bundle):
    bundle = load_bundle(edge_bundle)
    assert bundle.labels == LABELS
    assert bundle.variants == ("int8", "float32")
    assert bundle.path() == edge_bundle / "model_int8.tflite"
    assert bundle.path("float32") == edge_bundle / "model_float32.tflite"
    with pytest.raises(BundleError, match="no 'float16' model; it has: float32, int8, reference"):
        bundle.path("float16")


def test_missing_folder_and_missing_card(tmp_path, make_bundle):
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nothing")
    folder = make_bundle()
    (folder / CARD_FILE).unlink()
    with pytest.raises(BundleError, match=f"{CARD_FILE} not found"):
        load_bundle(folder)


def test_card_that_is_not_json(make_bundle):
    folder = make_bundle()
    (folder / CARD_FILE).write_text("{ not json", encoding="utf-8")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(folder)


def test_card_without_classes(make_bundle):
    folder = make_bundle()
    card = json.loads((folder / CARD_FILE).read_text())
    del card["classes"]
    (folder / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(BundleError, match="not a valid model card"):
        load_bundle(folder)


def test_labels_that_disagree_with_the_card(make_bundle):
    folder = make_bundle()
    (folder / LABELS_FILE).write_text("red\nblue\ngreen\n", encoding="utf-8")
    with pytest.raises(BundleError, match=f"{LABELS_FILE} lists .* must match"):
        load_bundle(folder)


def test_bad_checksum_names_the_file(make_bundle):
    folder = make_bundle()
    model = folder / "model_float32.tflite"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different content
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model_float32\.tflite has sha256 .* restore it"):
        load_bundle(folder)


def test_truncated_and_missing_model_files(make_bundle):
    folder = make_bundle()
    model = folder / "model_float32.tflite"
    model.write_bytes(model.read_bytes()[:-10])
    with pytest.raises(BundleError, match="bytes but the card says"):
        load_bundle(folder)
    model.unlink()
    with pytest.raises(BundleError, match=r"model_float32\.tflite \(float32 model\) is missing"):
        load_bundle(folder)


def test_model_output_size_must_match_the_classes(make_bundle):
    folder = make_bundle(classes=CLASSES + (ClassInfo("extra", "Extra class"),))
    load_bundle(folder)  # the files themselves are intact
    with pytest.raises(BundleError, match="outputs 3 scores but .* lists 4 classes"):
        Classifier(folder)


OPERATING_POINTS = {
    "screening": {"threshold": 0.18, "sensitivity": 0.91, "specificity": 0.55, "fitted_on": "val"},
    "high": {"threshold": 0.5, "sensitivity": 0.7, "specificity": 0.85, "fitted_on": "val"},
}


def test_card_operating_points_round_trip_and_load_through_the_bundle(make_bundle):
    folder = make_bundle()
    card = json.loads((folder / CARD_FILE).read_text())
    card["operating_points"] = OPERATING_POINTS
    (folder / CARD_FILE).write_text(json.dumps(card))

    loaded = load_bundle(folder).card
    assert loaded.operating_points == OPERATING_POINTS
    assert type(loaded).from_dict(loaded.to_dict()) == loaded


def test_card_without_operating_points_still_loads(make_bundle):
    folder = make_bundle()
    card = json.loads((folder / CARD_FILE).read_text())
    card.pop("operating_points", None)  # a card written before the build fitted them
    (folder / CARD_FILE).write_text(json.dumps(card))

    assert load_bundle(folder).card.operating_points == {}
