"""The shared fixtures of tests/conftest.py keep the promises other test folders rely on."""

import numpy as np

from edge.preprocess import load_image, normalize
from tests.conftest import TINY_SPEC


def test_tiny_images_are_distinct_uint8_rgb(tiny_images):
    assert list(tiny_images) == ["red", "green", "blue", "checker", "gradient"]
    for image in tiny_images.values():
        assert image.dtype == np.uint8 and image.shape == (40, 48, 3)
    flattened = {image.tobytes() for image in tiny_images.values()}
    assert len(flattened) == len(tiny_images)


def test_tiny_model_ranks_the_solid_colours_as_classes_0_1_2(tiny_keras_model, tiny_images):
    pixels = np.stack([load_image(tiny_images[name], TINY_SPEC) for name in ("red", "green", "blue")])
    probabilities = np.asarray(tiny_keras_model(normalize(pixels, TINY_SPEC), training=False))
    assert list(probabilities.argmax(axis=1)) == [0, 1, 2]
    assert probabilities.max(axis=1).min() > 0.8
    assert type(tiny_keras_model.get_layer("probabilities")).__name__ == "Dense"
