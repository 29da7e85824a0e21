"""Backbones as flat Functional tf_keras graphs, in a plain-dict registry.

Every builder takes ``(input_shape, weights, alpha)`` and returns a model whose layers sit directly in
the graph (no nested model, no Lambda, no Rescaling), so tensorflow-model-optimization can wrap every
layer for quantization-aware training. Inputs are normalized floats (see ``edge.preprocess.InputSpec``).
TensorFlow is imported by the builders, not by this module, so configs can name a backbone without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from models.weights import resolve_weights

if TYPE_CHECKING:
    from models.keras import keras

Builder = Callable[..., "keras.Model"]


def build_mobilenet_v2(input_shape: tuple[int, int, int], weights: str | None, alpha: float = 1.0) -> "keras.Model":
    if not 0.35 <= alpha <= 1.4:
        raise ValueError(f"mobilenet_v2 alpha must be within 0.35..1.4, got {alpha}")
    _check_min_size(input_shape, 96, "mobilenet_v2")
    weight_file = resolve_weights(weights, "mobilenet_v2", alpha=alpha, size=min(input_shape[:2]))
    from models.keras import keras

    return keras.applications.MobileNetV2(input_shape=input_shape, alpha=alpha, include_top=False,
                                          weights=weight_file)


def build_mobilenet(input_shape: tuple[int, int, int], weights: str | None, alpha: float = 1.0) -> "keras.Model":
    _check_min_size(input_shape, 32, "mobilenet")
    weight_file = resolve_weights(weights, "mobilenet", alpha=alpha, size=min(input_shape[:2]))
    from models.keras import keras

    return keras.applications.MobileNet(input_shape=input_shape, alpha=alpha, include_top=False,
                                        weights=weight_file)


def build_resnet50(input_shape: tuple[int, int, int], weights: str | None, alpha: float = 1.0) -> "keras.Model":
    if alpha != 1.0:
        raise ValueError(f"resnet50 has no width multiplier; alpha must be 1.0, got {alpha}")
    _check_min_size(input_shape, 32, "resnet50")
    weight_file = resolve_weights(weights, "resnet50", alpha=alpha, size=min(input_shape[:2]))
    from models.keras import keras

    return keras.applications.ResNet50(input_shape=input_shape, include_top=False, weights=weight_file)


def build_small_cnn(input_shape: tuple[int, int, int], weights: str | None, alpha: float = 1.0) -> "keras.Model":
    """The seed notebooks' custom network: three Conv-Conv-Pool-Dropout stages, widths scaled by alpha."""
    if weights not in (None, "none"):
        raise ValueError(f"small_cnn has no pretrained weights; use weights='none', got {weights!r}")
    from models.keras import keras

    layers = keras.layers
    inputs = keras.Input(input_shape, name="input")
    x = inputs
    for stage, filters in enumerate((32, 64, 128), start=1):
        width = max(8, int(filters * alpha))
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"stage{stage}_conv1")(x)
        x = layers.Conv2D(width, 3, padding="same", activation="relu", name=f"stage{stage}_conv2")(x)
        x = layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)
        x = layers.Dropout(0.25, name=f"stage{stage}_dropout")(x)
    return keras.Model(inputs, x, name="small_cnn")


BACKBONES: dict[str, Builder] = {
    "mobilenet_v2": build_mobilenet_v2,
    "mobilenet": build_mobilenet,
    "resnet50": build_resnet50,
    "small_cnn": build_small_cnn,
}

# The first layer of each block that phase-2 fine-tuning may unfreeze, counted from the top.
BLOCK_PREFIXES: dict[str, str] = {
    "mobilenet_v2": "block_",
    "mobilenet": "conv_dw_",
    "resnet50": "conv",  # stages conv1..conv5
    "small_cnn": "stage",
}


def _check_min_size(input_shape: tuple[int, int, int], minimum: int, name: str) -> None:
    if len(input_shape) != 3 or input_shape[2] != 3:
        raise ValueError(f"{name} needs an (height, width, 3) input shape, got {input_shape}")
    if min(input_shape[:2]) < minimum:
        raise ValueError(f"{name} needs inputs of at least {minimum}x{minimum}, got {input_shape[:2]}")

