"""The QAT scheme: depthwise kernels are rounded per channel, as TFLite stores them."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow_model_optimization", reason="QAT needs tensorflow-model-optimization")

from build.make.qat import calibrate_ranges, quantize_aware  # noqa: E402
from converters.export import export_tflite, load_keras_model  # noqa: E402
from converters.quantization import QuantizationConfig  # noqa: E402
from edge.preprocess import InputSpec, normalize  # noqa: E402
from models.keras import keras  # noqa: E402

SPEC = InputSpec(height=24, width=24)


def _depthwise_model():
    """Conv -> depthwise -> head, its depthwise channels' weights spread over three decades (as BatchNorm
    folding leaves them after fine-tuning)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(16, 3, strides=2, use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.DepthwiseConv2D(3, use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    depthwise = next(layer for layer in model.layers if isinstance(layer, keras.layers.DepthwiseConv2D))
    kernel = depthwise.get_weights()[0]
    depthwise.set_weights([kernel * np.logspace(-1.5, 1.5, kernel.shape[2])[None, None, :, None]])
    return model


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 24, 24, 3), dtype=np.uint8)


def _levels_per_depthwise_channel(tflite_path) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite_path))
    interpreter.allocate_tensors()
    kernel = next(
        t
        for t in interpreter.get_tensor_details()
        if t["dtype"] == np.int8 and list(t["shape"]) == [1, 3, 3, 16]
    )
    values = interpreter.get_tensor(kernel["index"]).astype(np.int32)
    return np.abs(values).reshape(-1, values.shape[-1]).max(axis=0)


def _qat_int8(tmp_path, quantize) -> tuple:
    model = quantize(_depthwise_model())
    calibrate_ranges(model, [normalize(_images(16, seed=1), SPEC)])
    model.save(tmp_path / "qat.h5")
    reloaded = load_keras_model(tmp_path / "qat.h5")
    result = export_tflite(
        reloaded,
        tmp_path / "int8.tflite",
        QuantizationConfig.for_int8(None),
        input_spec=SPEC,
        labels=["a", "b", "c"],
    )
    return reloaded, result.path


def test_depthwise_kernels_use_the_full_int8_range_of_every_channel(tmp_path):
    _, path = _qat_int8(tmp_path, quantize_aware)

    assert _levels_per_depthwise_channel(path).min() >= 125


def test_stock_tfmot_shares_one_range_across_depthwise_channels(tmp_path):
    """Why models.quantization exists: the stock scheme leaves small channels a handful of levels."""
    import tensorflow_model_optimization as tfmot

    _, path = _qat_int8(tmp_path, tfmot.quantization.keras.quantize_model)

    assert _levels_per_depthwise_channel(path).min() <= 10


def test_int8_file_follows_the_fake_quantized_model(tmp_path):
    from converters.validate import run_tflite

    model, path = _qat_int8(tmp_path, quantize_aware)
    images = _images(32, seed=2)

    expected = model.predict(normalize(images, SPEC), verbose=0)
    actual, _ = run_tflite(path, images, SPEC)

    assert np.abs(actual - expected).max() < 0.03
