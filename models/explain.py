"""Grad-CAM on the float reference model: which part of the image made the model say a class.

    >>> heatmap = gradcam(model, normalize(pixels, spec)[None], class_index=4)      # HxW in 0..1
    >>> overlay = gradcam_overlay("bundle/reference.keras", pixels, 4, spec)           # uint8 HxWx3
    >>> lesion_mass_share(heatmap, mask)   # share of the heat inside the expert's lesion mask

Explanations need gradients, so they run on the Keras reference (``reference.keras`` in a bundle), never
on the quantized TFLite files.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from PIL import Image

from edge.preprocess import InputSpec, normalize
from models.keras import keras, tf

OVERLAY_ALPHA = 0.45  # heat-map opacity: enough to read the colours, little enough to see the lesion
_SPATIAL_LAYERS = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
    keras.layers.ReLU,
    keras.layers.Activation,
    keras.layers.BatchNormalization,
    keras.layers.Add,
)


def gradcam(
    model: Any, pixels_normalized: np.ndarray, class_index: int, layer_name: str | None = None
) -> np.ndarray:
    """Grad-CAM heat map of ``class_index`` for one image, at the image's size.

    Args:
        model: A Functional Keras model (float reference) with one image input.
        pixels_normalized: One normalized image, (H, W, 3) or (1, H, W, 3), as ``edge.preprocess.normalize``
            returns it.
        class_index: The output to explain.
        layer_name: The convolutional layer to explain from; default the last layer with a spatial
            (H x W x C) output, which for MobileNetV2 is ``out_relu``.

    Returns:
        float32 (H, W) in 0..1; all zeros when no location raises the class score.
    """
    batch = np.asarray(pixels_normalized, dtype=np.float32)
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[0] != 1:
        raise ValueError(f"gradcam explains one image: pass (H, W, 3) or (1, H, W, 3), got {batch.shape}")
    num_classes = int(model.output_shape[-1])
    if not 0 <= class_index < num_classes:
        raise ValueError(f"class_index must be in 0..{num_classes - 1}, got {class_index}")
    layer = model.get_layer(layer_name) if layer_name else last_conv_layer(model)
    score_tensor = _pre_softmax(model)
    probe = keras.Model(model.inputs, [layer.output, score_tensor])
    with tf.GradientTape() as tape:
        features, scores = probe(batch, training=False)
        score = scores[:, class_index]
    gradients = tape.gradient(score, features)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)  # one weight per channel
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[0].numpy()
    peak = float(cam.max())
    cam = cam / peak if peak > 0 else np.zeros_like(cam)
    height, width = batch.shape[1:3]
    resized = Image.fromarray(cam.astype(np.float32), mode="F").resize(
        (width, height), Image.Resampling.BILINEAR
    )
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def gradcam_overlay(
    model_or_path: Any,
    pixels_uint8: np.ndarray,
    class_index: int,
    input_spec: InputSpec,
    *,
    alpha: float = OVERLAY_ALPHA,
) -> np.ndarray:
    """The image with its Grad-CAM heat map blended on top (blue = no evidence, red = most evidence).

    Args:
        model_or_path: A Keras model or a ``.keras`` file (e.g. a bundle's ``reference.keras``).
        pixels_uint8: Preprocessed RGB uint8 pixels, (H, W, 3) at the model's input size.
        class_index: The output to explain.
        input_spec: The card's input spec, for the normalization.
        alpha: Heat-map opacity in 0..1.

    Returns:
        uint8 (H, W, 3).
    """
    model = load_reference(model_or_path) if isinstance(model_or_path, (str, os.PathLike)) else model_or_path
    pixels = np.asarray(pixels_uint8)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(
            f"pixels_uint8 must be uint8 (H, W, 3) from edge.preprocess.load_image, "
            f"got {pixels.dtype} {pixels.shape}"
        )
    heatmap = gradcam(model, normalize(pixels, input_spec), class_index)
    blended = (1 - alpha) * pixels.astype(np.float32) + alpha * heat_colours(heatmap)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def lesion_mass_share(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the heat map's total mass that falls inside a binary lesion mask (0..1).

    The mask is resized (nearest neighbour) to the heat map's size when they differ, so a 600x450 expert
    mask can score a 224x224 heat map; crop the mask with the same policy as the image first.
    A uniform heat map scores the mask's area share, so compare against that baseline.
    """
    heatmap = np.asarray(heatmap, dtype=np.float64)
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.shape != heatmap.shape:
        mask = np.asarray(
            Image.fromarray((mask > 0).astype(np.uint8) * 255).resize(
                (heatmap.shape[1], heatmap.shape[0]), Image.Resampling.NEAREST
            )
        )
    total = heatmap.sum()
    if total <= 0:
        raise ValueError("the heat map is all zeros; there is no mass to locate")
    return float(heatmap[mask > 0].sum() / total)


def last_conv_layer(model: Any) -> Any:
    """The last layer whose output is a spatial feature map (batch, H > 1, W > 1, channels)."""
    for layer in reversed(model.layers):
        shape = getattr(layer, "output_shape", None)
        if (
            isinstance(layer, _SPATIAL_LAYERS)
            and isinstance(shape, tuple)
            and len(shape) == 4
            and (shape[1] or 2) > 1
            and (shape[2] or 2) > 1
        ):
            return layer
    raise ValueError(
        f"model {model.name!r} has no convolutional layer with a spatial output; Grad-CAM needs "
        "one (pass layer_name=...)"
    )


def load_reference(path: str | os.PathLike) -> Any:
    """Loads a float reference ``.keras`` model for explanations."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Keras reference model not found: {path}; a bundle keeps it as reference.keras"
        )
    return keras.models.load_model(path, compile=False)


def heat_colours(heatmap: np.ndarray) -> np.ndarray:
    """0..1 heat map -> float RGB 0..255 on a blue-cyan-yellow-red ramp ('jet'-like, no matplotlib)."""
    stops = np.array([0.0, 0.35, 0.65, 1.0])
    colours = np.array([[0, 0, 160], [0, 200, 220], [250, 220, 0], [220, 0, 0]], dtype=np.float32)
    h = np.clip(np.asarray(heatmap, dtype=np.float32), 0, 1)
    return np.stack([np.interp(h, stops, colours[:, c]) for c in range(3)], axis=-1)


def _pre_softmax(model: Any) -> Any:
    # Explaining the logit rather than the probability keeps gradients alive when the model is sure
    # (a saturated softmax has almost none) and is what Grad-CAM was defined on.
    last = model.layers[-1]
    is_softmax = isinstance(last, keras.layers.Softmax) or (
        isinstance(last, keras.layers.Activation) and getattr(last.activation, "__name__", "") == "softmax"
    )
    return last.input if is_softmax else model.output
