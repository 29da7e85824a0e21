"""The runtime and the files' in-graph calibration: the temperature is applied once, never twice."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np

from edge.bundle import load_bundle
from edge.card import CARD_FILE
from edge.classifier import Classifier, apply_temperature, runtime_temperature


def _with_card(tiny_bundle, tmp_path, **changes):
    folder = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, folder)
    card = dataclasses.replace(load_bundle(folder).card, **changes)
    (folder / CARD_FILE).write_text(json.dumps(card.to_dict()))
    return folder


def test_an_old_bundle_gets_its_temperature_from_the_runtime(tiny_bundle, tmp_path, tiny_images):
    plain = Classifier(tiny_bundle, variant="float32").probabilities(tiny_images["red"])
    old = Classifier(_with_card(tiny_bundle, tmp_path, temperature=2.0), variant="float32")
    np.testing.assert_allclose(
        old.probabilities(tiny_images["red"]), apply_temperature(plain, 2.0), atol=1e-6
    )


def test_a_bundle_whose_files_carry_the_temperature_is_not_calibrated_twice(
    tiny_bundle, tmp_path, tiny_images
):
    plain = Classifier(tiny_bundle, variant="float32").probabilities(tiny_images["red"])
    folder = _with_card(
        tiny_bundle,
        tmp_path,
        temperature=2.0,
        training={"calibration": {"temperature": 2.0, "in_graph": True}},
    )
    classifier = Classifier(folder, variant="float32")
    assert runtime_temperature(classifier.card) == 1.0
    np.testing.assert_allclose(classifier.probabilities(tiny_images["red"]), plain, atol=1e-6)


def test_a_file_without_the_head_falls_back_to_the_card_rule(tiny_bundle, tiny_images):
    classifier = Classifier(tiny_bundle)
    assert not classifier.has_abstain_head
    assert classifier.abstain_score(classifier.preprocess(tiny_images["red"])) is None
    assert not classifier.classify(tiny_images["red"]).abstained  # the tiny card has no rule: never abstains
