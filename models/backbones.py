"""Backbones as flat Functional tf_keras graphs, in a plain-dict registry of :class:`Backbone` entries.

Every builder takes ``(input_shape, weights, alpha)`` and returns a model whose layers sit directly in
the graph (no nested model, no Lambda, no Rescaling), so tensorflow-model-optimization can wrap every
layer for quantization-aware training. Each entry also declares the input it expects (timm's
``pretrained_cfg``): the normalization of uint8 pixels and the smallest input side; the build's
``input_spec()`` reads them into the bundle's :class:`edge.preprocess.InputSpec`.
TensorFlow is imported by the builders, not by this module, so configs can name a backbone without it.

    >>> BACKBONES["mobilenet_v2"].mean, BACKBONES["mobilenet_v2"].min_size
    ((127.5, 127.5, 127.5), 96)
    >>> model = BACKBONES["mobilenet_v2"]((160, 160, 3), "imagenet", alpha=1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from models.weights import resolve_weights

if TYPE_CHECKING:
    from models.keras import keras

Builder = Callable[..., "keras.Model"]
# Keras Applications' "tf" mode: 0..255 -> -1..1, what the MobileNet weights were trained on.
MINUS_ONE_TO_ONE = (127.5, 127.5, 127.5)
# Keras Applications' "caffe" mode, what the ResNet50 ImageNet weights were trained on: BGR pixels minus the
# ImageNet means, unscaled. Listed in RGB order: the stem's kernel is flipped to take RGB (build_resnet50), so
# the runtime's one preprocessing stays a per-channel mean and std.
CAFFE_RGB_MEAN = (123.68, 116.779, 103.939)
UNSCALED = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class Backbone:
    """One registry entry: how to build the network and what input it expects.

    Attributes:
        build: ``(input_shape, weights, alpha) -> keras.Model`` without a head.
        block_prefix: Name prefix of the first layer of each block that phase-2 fine-tuning may unfreeze,
            counted from the top.
        mean: Per-channel value subtracted from uint8 pixels (``edge.preprocess.normalize``).
        std: Per-channel divisor applied after ``mean``.
        min_size: Smallest input height and width the network accepts.
    """

    build: Builder
    block_prefix: str
    mean: tuple[float, float, float] = MINUS_ONE_TO_ONE
    std: tuple[float, float, float] = MINUS_ONE_TO_ONE
    min_size: int = 32

    def __call__(
        self, input_shape: tuple[int, int, int], weights: str | None, alpha: float = 1.0
    ) -> "keras.Model":
        return self.build(input_shape, weights, alpha=alpha)


def build_mobilenet_v2(
    input_shape: tuple[int, int, int], weights: str | None, alpha: float = 1.0
) -> "keras.Model":
    if not 0.35 <= alpha <= 1.4:
        raise ValueError(f"mobilenet_v2 alpha must be within 0.35..1.4, got {alpha}")
    _check_min_size(input_shape, "mobilenet_v2")
    weight_file = resolve_weights(weights, "mobilenet_v2", alpha=alpha, size=min(input_shape[:2]))
    from models.keras import keras

    return keras.applications.MobileNetV2(
        input_shape=input_shape, alpha=alpha, include_top=False, weights=weight_file
    )


def build_mobilenet(
    input_shape: tuple[int, int, int], weights: str | None, alpha: float = 1.0
) -> "keras.Model":
    _check_min_size(input_shape, "mobilenet")
    weight_file = resolve_weights(weights, "mobilenet", alpha=alpha, size=min(input_shape[:2]))
    from models.keras import keras

    return keras.applications.MobileNet(
        input_shape=input_shape, alpha=alpha, include_top=False, weights=weight_file
    )


def build_resnet50(
    input_shape: tuple[int, int, int], weights: str | None, alpha: float = 1.0
) -> "keras.Model":
    if alpha != 1.0:
        raise ValueError(f"resnet50 has no width multiplier; alpha must be 1.0, got {alpha}")
    _check_min_size(input_shape, "resnet50")
    weight_file = resolve_weights(weights, "resnet50", alpha=alpha, size=min(input_shape[:2]))
    from models.keras import keras

    model = keras.applications.ResNet50(input_shape=input_shape, include_top=False, weights=weight_file)
    if weight_file is not None:
        # The weights read BGR; reversing the stem kernel's input channels makes the same network read RGB.
        stem = model.get_layer("conv1_conv")
        kernel, bias = stem.get_weights()
        stem.set_weights([kernel[:, :, ::-1, :], bias])
    return model


def build_small_cnn(
    input_shape: tuple[int, int, int], weights: str | None, alpha: float = 1.0
) -> "keras.Model":
    """The seed notebooks' custom network: three Conv-Conv-Pool-Dropout stages, widths scaled by alpha."""
    if weights not in (None, "none"):
        raise ValueError(f"small_cnn has no pretrained weights; use weights='none', got {weights!r}")
    _check_min_size(input_shape, "small_cnn")
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


BACKBONES: dict[str, Backbone] = {
    "mobilenet_v2": Backbone(build_mobilenet_v2, block_prefix="block_", min_size=96),
    "mobilenet": Backbone(build_mobilenet, block_prefix="conv_dw_"),
    "resnet50": Backbone(
        build_resnet50, block_prefix="conv", mean=CAFFE_RGB_MEAN, std=UNSCALED
    ),  # conv1..conv5
    "small_cnn": Backbone(build_small_cnn, block_prefix="stage", min_size=8),  # three 2x poolings
}


def _check_min_size(input_shape: tuple[int, int, int], name: str) -> None:
    minimum = BACKBONES[name].min_size
    if len(input_shape) != 3 or input_shape[2] != 3:
        raise ValueError(f"{name} needs an (height, width, 3) input shape, got {input_shape}")
    if min(input_shape[:2]) < minimum:
        raise ValueError(f"{name} needs inputs of at least {minimum}x{minimum}, got {input_shape[:2]}")
