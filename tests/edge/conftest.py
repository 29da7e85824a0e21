"""Fixtures for the edge runtime tests: a tiny model with hand-set weights, its TFLite files, bundles.

The model's behaviour is known without training: a solid red image is class 0 (``red``), green class 1,
blue class 2 with probability ~0.99, and mid-grey is ~uniform (so a confidence rule abstains). Small seeded
spatial weights make it sensitive to flips, so test-time augmentation changes its answer a little.

The shared ``tests/conftest.py`` fixtures (``tiny_bundle``) are used where the converters' bundle
writer is exercised end to end; these fixtures keep the runtime tests independent of it.
"""

from __future__ import annotations

import datetime as _dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.bundle import file_sha256
from edge.card import CARD_FILE, LABELS_FILE, ClassInfo, ModelCard, ModelFile
from edge.preprocess import InputSpec

SIZE = 32
SPEC = InputSpec(height=SIZE, width=SIZE)
CLASSES = (
    ClassInfo("red", "Red test lesion", True, "Made-up malignant class: red images."),
    ClassInfo("green", "Green test lesion", False, "Made-up benign class: green images."),
    ClassInfo("blue", "Blue test lesion", False, "Made-up benign class: blue images."),
)
LABELS = tuple(c.code for c in CLASSES)
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "grey": (128, 128, 128)}


@dataclass(frozen=True)
class TinyModels:
    """The tiny model as float32 and int8 (uint8 input, int8 output) TFLite files and a Keras file."""

    float32: Path
    int8: Path
    reference: Path
    keras_model: Any


def solid(name: str, height: int = 40, width: int = 48) -> np.ndarray:
    """A solid RGB uint8 image of one of :data:`COLOURS`."""
    return np.full((height, width, 3), COLOURS[name], dtype=np.uint8)


def asymmetric(seed: int = 3) -> np.ndarray:
    """A 32x32 image whose left half is red and right half random: flips change what the model sees."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(SIZE, SIZE, 3), dtype=np.uint8)
    image[:, : SIZE // 2] = COLOURS["red"]
    return image


def _build_keras_model():
    from models.keras import keras

    layers = keras.layers
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = layers.Conv2D(3, 1, name="colour")(inputs)
    x = layers.ReLU(name="relu")(x)
    x = layers.AveragePooling2D(2, name="pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(3, name="logits")(x)
    outputs = layers.Softmax(name="probabilities")(x)
    model = keras.Model(inputs, outputs, name="edge_tiny")
    # Identity 1x1 conv: after ReLU a feature is "how much of this colour" in 0..1.
    model.get_layer("colour").set_weights([np.eye(3, dtype=np.float32)[None, None], np.zeros(3, np.float32)])
    cells = (SIZE // 2) ** 2
    # A solid colour gets logit 6 for its class.
    colour_term = np.tile(np.eye(3, dtype=np.float32), (cells, 1)) * (6.0 / cells)
    spatial = np.random.default_rng(0).normal(0, 0.02, size=colour_term.shape).astype(np.float32)
    model.get_layer("logits").set_weights([colour_term + spatial, np.zeros(3, np.float32)])
    return model


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> TinyModels:
    """The tiny model as float32 and int8 TFLite files and a ``.keras`` file (TensorFlow needed to build)."""
    pytest.importorskip("tensorflow", reason="building the test models needs TensorFlow (the [build] extra)")
    from models.keras import tf

    folder = tmp_path_factory.mktemp("edge_models")
    model = _build_keras_model()
    (folder / "float32.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())

    rng = np.random.default_rng(1)

    def representative():
        for colour in list(COLOURS.values()) + [None] * 12:
            pixels = (
                np.full((1, SIZE, SIZE, 3), colour, np.float32)
                if colour is not None
                else rng.integers(0, 256, (1, SIZE, SIZE, 3)).astype(np.float32)
            )
            pixels[0, 0, 0], pixels[0, -1, -1] = 0, 255  # the full input range: scale 2/255
            yield [pixels / 127.5 - 1.0]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.int8
    (folder / "int8.tflite").write_bytes(converter.convert())
    model.save(folder / "reference.keras")
    return TinyModels(folder / "float32.tflite", folder / "int8.tflite", folder / "reference.keras", model)


def write_test_bundle(
    folder: Path,
    files: dict[str, Path],
    *,
    classes: tuple[ClassInfo, ...] = CLASSES,
    temperature: float = 1.0,
    abstain: dict[str, Any] | None = None,
    spec: InputSpec = SPEC,
    test_time_views: int = 1,
) -> Path:
    """Writes a bundle by hand (card, labels.txt, files with sha256) so the loader is tested on its own."""
    folder.mkdir(parents=True)
    entries = {}
    for variant, source in files.items():
        name = f"model_{variant}.tflite" if variant != "reference" else "reference.keras"
        shutil.copyfile(source, folder / name)
        entries[variant] = ModelFile(name, (folder / name).stat().st_size, file_sha256(folder / name))
    card = ModelCard(
        name="edge-tiny",
        version="0.0.0",
        created=_dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc).isoformat(),
        task="synthetic 3-class colour test",
        classes=classes,
        input=spec,
        files=entries,
        temperature=temperature,
        test_time_views=test_time_views,
        abstain=abstain or {},
    )
    (folder / CARD_FILE).write_text(card.to_json(), encoding="utf-8")
    (folder / LABELS_FILE).write_text("".join(c.code + "\n" for c in classes), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def edge_bundle(tmp_path_factory, tiny_models) -> Path:
    """A read-only bundle with float32, int8 and reference; temperature 1; no abstain rule."""
    return write_test_bundle(
        tmp_path_factory.mktemp("edge_bundle") / "tiny",
        {"float32": tiny_models.float32, "int8": tiny_models.int8, "reference": tiny_models.reference},
    )


@pytest.fixture
def make_bundle(tmp_path, tiny_models) -> Callable[..., Path]:
    """``make_bundle(variants=("float32",), **card_fields) -> folder``: a fresh, writable bundle per call."""
    counter = iter(range(1000))

    def make(variants: tuple[str, ...] = ("float32",), **kwargs: Any) -> Path:
        files = {v: getattr(tiny_models, v) for v in variants}
        return write_test_bundle(tmp_path / f"bundle{next(counter)}", files, **kwargs)

    return make
