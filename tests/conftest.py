"""Session fixtures shared by every test folder: a tiny trained model, a tiny bundle, synthetic images.

The tiny model learns one thing a test can check: a reddish image is class 0 (``rdl``, the malignant
one), a greenish image class 1 (``grn``), a bluish image class 2 (``blu``). ``tiny_images`` holds solid
images of those colours plus two patterns, so a test can assert the ranked class a user would see.

The fixtures are session-scoped and shared: treat the returned objects and folders as read-only
(``shutil.copytree`` the bundle first if a test needs to damage or change it).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import pytest

from build.stage_configs import AugmentConfig
from edge.card import ClassInfo, ModelCard
from edge.preprocess import InputSpec, load_image, normalize

TINY_SPEC = InputSpec(height=32, width=32)
# Augmentation switched off, for tests that need to see the pixels the cache holds.
NO_AUGMENT = AugmentConfig(
    flip=False,
    rotate_90=False,
    rotation=0.0,
    shift=0.0,
    zoom=0.0,
    brightness=0.0,
    contrast=0.0,
    saturation=0.0,
    hue=0.0,
    noise=0.0,
)
TINY_CLASSES = (
    ClassInfo("rdl", "Reddish test lesion", True, "A made-up malignant class: reddish images."),
    ClassInfo("grn", "Greenish test lesion", False, "A made-up benign class: greenish images."),
    ClassInfo("blu", "Bluish test lesion", False, "A made-up benign class: bluish images."),
)
TINY_LABELS = tuple(c.code for c in TINY_CLASSES)
# Class colours, in output order; the model is trained on noisy, shaded versions of these.
TINY_COLOURS = ((200, 40, 50), (40, 170, 60), (50, 60, 200))
TINY_BUNDLE_VARIANTS = ("float32", "int8")


def tiny_training_set(n_per_class: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noisy, shaded solid-colour images at the tiny model's input size and their class indices.

    Returns:
        ``(pixels, labels)``: uint8 (N, 32, 32, 3) and int (N,). The set includes pure black and white
        pixels so that int8 calibration sees the whole 0..255 input range.
    """
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, colour in enumerate(TINY_COLOURS):
        for _ in range(n_per_class):
            shade = rng.uniform(0.6, 1.3)
            noise = rng.normal(0, 18, size=(TINY_SPEC.height, TINY_SPEC.width, 3))
            image = np.clip(np.float32(colour) * shade + noise, 0, 255)
            image[0, 0], image[-1, -1] = 0, 255  # a dead and a hot pixel: the full input range
            images.append(image.astype(np.uint8))
            labels.append(label)
    return np.stack(images), np.asarray(labels)


def _build_tiny_model():
    from models.keras import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    inputs = keras.Input((TINY_SPEC.height, TINY_SPEC.width, 3), name="image")
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw_conv")(x)
    x = layers.BatchNormalization(name="dw_bn")(x)
    x = layers.ReLU(6.0, name="dw_relu")(x)
    x = layers.Conv2D(16, 1, use_bias=False, name="pw_conv")(x)
    x = layers.BatchNormalization(name="pw_bn")(x)
    x = layers.ReLU(6.0, name="pw_relu")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(len(TINY_CLASSES), activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="tiny_classifier")


@pytest.fixture(scope="session")
def tiny_keras_model():
    """A trained flat Functional tf_keras model: float input (1, 32, 32, 3) in -1..1, 3 softmax outputs.

    Red, green and blue images (``tiny_images``) are classes 0, 1 and 2 with high confidence.
    """
    pytest.importorskip("tensorflow", reason="tiny_keras_model needs TensorFlow (the [build] extra)")
    from models.keras import keras

    model = _build_tiny_model()
    pixels, labels = tiny_training_set()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    model.fit(normalize(pixels, TINY_SPEC), labels, epochs=15, batch_size=32, shuffle=True, verbose=0)
    return model


@pytest.fixture(scope="session")
def tiny_images() -> dict[str, np.ndarray]:
    """Synthetic RGB uint8 images, 40x48 (H x W) so that the center crop has work to do.

    Keys, in order: ``red``, ``green``, ``blue`` (solid class colours; classes 0, 1, 2 of the tiny
    model), ``checker`` (8 px black/white squares) and ``gradient`` (left-to-right grey ramp).
    """
    height, width = 40, 48
    images = {
        name: np.full((height, width, 3), colour, dtype=np.uint8)
        for name, colour in zip(("red", "green", "blue"), TINY_COLOURS)
    }
    yy, xx = np.mgrid[0:height, 0:width]
    checker = (((yy // 8) + (xx // 8)) % 2 * 255).astype(np.uint8)
    images["checker"] = np.repeat(checker[:, :, None], 3, axis=2)
    ramp = np.linspace(0, 255, width).astype(np.uint8)
    images["gradient"] = np.repeat(np.tile(ramp, (height, 1))[:, :, None], 3, axis=2)
    return images


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory, tiny_keras_model, tiny_images) -> Path:
    """A bundle folder written by ``converters.bundle.write_bundle`` from the tiny model.

    Holds ``model_float32.tflite`` (float32 I/O), ``model_int8.tflite`` (uint8 I/O, TFLite metadata),
    ``reference.keras``, ``labels.txt`` and ``model_card.json`` (classes ``TINY_CLASSES``, input
    ``TINY_SPEC``, validation of both variants on ``tiny_images``). Read-only: copy it to change it.
    """
    from converters.bundle import write_bundle
    from converters.export import export_tflite
    from converters.quantization import QuantizationConfig
    from converters.validate import validate_tflite

    work = tmp_path_factory.mktemp("tiny_bundle_build")
    calibration, _ = tiny_training_set(n_per_class=8, seed=1)
    configs = {
        "float32": QuantizationConfig.for_float32(),
        "int8": QuantizationConfig.for_int8(list(calibration)),
    }
    files = {}
    for variant in TINY_BUNDLE_VARIANTS:
        result = export_tflite(
            tiny_keras_model,
            work / f"model_{variant}.tflite",
            configs[variant],
            input_spec=TINY_SPEC,
            labels=TINY_LABELS,
            display_names=[c.display_name for c in TINY_CLASSES],
        )
        files[variant] = result.path
    reference = work / "reference.keras"
    tiny_keras_model.save(reference)

    pixels = np.stack([load_image(tiny_images[name], TINY_SPEC) for name in ("red", "green", "blue")])
    validation = {
        variant: validate_tflite(path, tiny_keras_model, pixels, [0, 1, 2], input_spec=TINY_SPEC).to_dict()
        for variant, path in files.items()
    }
    card = ModelCard(
        name="skinlesion-tiny-test",
        version="0.0.0",
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        task="synthetic 3-class colour test",
        classes=TINY_CLASSES,
        input=TINY_SPEC,
        validation=validation,
        license="Apache-2.0 (synthetic test model)",
        intended_use="Tests of the skinlesion runtime only; not a medical device.",
        limitations=("Trained on solid colours; meaningless on real photos.",),
    )
    return write_bundle(
        tmp_path_factory.mktemp("bundles") / "tiny", card, files, reference=reference, report_dir=None
    )
