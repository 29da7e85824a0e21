"""Fixtures of the converter tests only: exported files of every variant and a QAT model."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import TINY_LABELS, TINY_SPEC, tiny_training_set

pytest.importorskip("tensorflow", reason="the converters need TensorFlow (the [build] extra)")

DISPLAY_NAMES = ("Reddish", "Greenish", "Bluish")


@pytest.fixture(scope="session")
def calibration_pixels() -> list[np.ndarray]:
    """uint8 training-like images for int8 calibration."""
    pixels, _ = tiny_training_set(n_per_class=8, seed=1)
    return list(pixels)


@pytest.fixture(scope="session")
def validation_set() -> tuple[np.ndarray, np.ndarray]:
    """Held-out uint8 images (N, 32, 32, 3) and their class indices."""
    return tiny_training_set(n_per_class=12, seed=2)


@pytest.fixture(scope="session")
def exported(tmp_path_factory, tiny_keras_model, calibration_pixels):
    """Variant -> ExportResult for float32, float16, dynamic, int8 (uint8 I/O) and int8_io_int8."""
    from converters.export import export_tflite
    from converters.quantization import QuantizationConfig

    folder = tmp_path_factory.mktemp("exported")
    configs = {
        "float32": QuantizationConfig.for_float32(),
        "float16": QuantizationConfig.for_float16(),
        "dynamic": QuantizationConfig.for_dynamic(),
        "int8": QuantizationConfig.for_int8(calibration_pixels),
        "int8_io_int8": QuantizationConfig.for_int8(calibration_pixels, io_type="int8"),
    }
    return {
        name: export_tflite(
            tiny_keras_model,
            folder / f"{name}.tflite",
            config,
            input_spec=TINY_SPEC,
            labels=TINY_LABELS,
            display_names=DISPLAY_NAMES,
        )
        for name, config in configs.items()
    }


@pytest.fixture(scope="session")
def qat_model_path(tmp_path_factory, tiny_keras_model):
    """The tiny model after quantize_model and one short epoch of QAT, saved as .h5."""
    import tensorflow_model_optimization as tfmot

    from edge.preprocess import normalize
    from models.keras import keras

    clone = keras.models.clone_model(tiny_keras_model)
    clone.set_weights(tiny_keras_model.get_weights())
    qat = tfmot.quantization.keras.quantize_model(clone)
    qat.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    pixels, labels = tiny_training_set()
    qat.fit(normalize(pixels, TINY_SPEC), labels, epochs=2, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("qat") / "qat.h5"
    qat.save(path)
    return path
