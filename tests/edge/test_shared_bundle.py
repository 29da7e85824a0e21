"""The runtime on the bundle the converters write (tests/conftest.py ``tiny_bundle``)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.classifier import Classifier


@pytest.fixture(scope="module")
def shared_bundle(request):
    # The bundle is written with TensorFlow (the [build] extra); a Pi-style install has only the runtime.
    pytest.importorskip("tensorflow", reason="writing the tiny bundle needs TensorFlow (the [build] extra)")
    return request.getfixturevalue("tiny_bundle")


def test_every_variant_of_the_written_bundle_classifies_the_colours(shared_bundle, tiny_images):
    bundle = load_bundle(shared_bundle)
    for variant in bundle.variants:
        classifier = Classifier(bundle, variant=variant)
        tops = [classifier.classify(tiny_images[name]).top.label for name in ("red", "green", "blue")]
        assert tops == list(bundle.labels), variant


def test_int8_and_float32_agree_on_the_written_bundle(shared_bundle, tiny_images, caplog):
    float32 = Classifier(shared_bundle, variant="float32")
    int8 = Classifier(shared_bundle, variant="int8")
    # The exported uint8 input must take pixels as they are (as MediaPipe feeds them), not need re-quantizing.
    assert "re-quantizing" not in caplog.text
    for image in tiny_images.values():
        np.testing.assert_allclose(int8.probabilities(image), float32.probabilities(image), atol=0.05)
