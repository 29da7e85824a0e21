"""Reading float weights back from a float TFLite file: the rebuilt Keras model computes what the file does."""

from __future__ import annotations

import numpy as np
import pytest

from converters.float_weights import load_float_tflite_weights
from edge.preprocess import normalize
from tests.conftest import TINY_SPEC, _build_tiny_model


@pytest.mark.parametrize("variant, tolerance", [("float32", 1e-5), ("float16", 5e-3)])
def test_a_model_rebuilt_from_a_float_file_predicts_what_the_trained_model_predicts(
    exported, tiny_keras_model, validation_set, variant, tolerance
):
    pixels, _ = validation_set
    images = normalize(pixels, TINY_SPEC)
    rebuilt = _build_tiny_model()  # freshly initialised: nothing of the trained model but the file
    assert not np.allclose(
        rebuilt.predict(images, verbose=0), tiny_keras_model.predict(images, verbose=0), atol=tolerance
    )

    assert load_float_tflite_weights(rebuilt, exported[variant].path) == 4  # 3 convolutions, 1 dense

    np.testing.assert_allclose(
        rebuilt.predict(images, verbose=0), tiny_keras_model.predict(images, verbose=0), atol=tolerance
    )


def test_batchnorm_comes_back_as_an_identity_that_adds_the_folded_bias(exported):
    rebuilt = _build_tiny_model()
    load_float_tflite_weights(rebuilt, exported["float32"].path)
    gamma, beta, mean, variance = rebuilt.get_layer("stem_bn").get_weights()
    np.testing.assert_allclose(gamma / np.sqrt(variance + rebuilt.get_layer("stem_bn").epsilon), 1, rtol=1e-6)
    assert np.all(mean == 0) and np.any(beta != 0)


def test_a_quantized_file_is_refused_with_the_file_to_use_instead(exported):
    with pytest.raises(ValueError, match=r"int8\.tflite holds int8 weights; .*float16 or float32"):
        load_float_tflite_weights(_build_tiny_model(), exported["int8"].path)


def test_a_file_of_another_model_is_refused(exported):
    from models.keras import keras

    inputs = keras.Input((TINY_SPEC.height, TINY_SPEC.width, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="other_conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    other = keras.Model(inputs, keras.layers.Dense(3, name="other_dense")(x))
    with pytest.raises(ValueError, match=r"float32\.tflite: .*different model"):
        load_float_tflite_weights(other, exported["float32"].path)
