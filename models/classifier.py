"""The classifier: a registry backbone plus a pooling-dropout-softmax head, as one flat Functional graph.

>>> model = build_model(ModelConfig(backbone="mobilenet_v2", alpha=1.0, image_size=160,
...                                 weights="../shared/weights/mobilenet_v2_..._1.0_160_no_top.h5"),
...                     num_classes=7)
"""

from __future__ import annotations

import numpy as np

from models.backbones import BACKBONES
from models.config import ModelConfig  # noqa: F401  (re-exported: configs name it from here too)
from models.keras import keras

HEAD_LAYERS = ("head_pool", "head_dropout", "head_logits", "probabilities")
BATCHNORM_TRAINING_MOMENTUM = 0.99


def build_model(config: ModelConfig, num_classes: int) -> "keras.Model":
    """Builds backbone + head. The output is softmax probabilities (what TFLite classifiers emit)."""
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
    shape = (config.image_size, config.image_size, 3)
    backbone = BACKBONES[config.backbone](shape, config.weights, alpha=config.alpha)
    regularizer = keras.regularizers.L1L2(l1=config.l1, l2=config.l2) if (config.l1 or config.l2) else None
    x = keras.layers.GlobalAveragePooling2D(name="head_pool")(backbone.output)
    x = keras.layers.Dropout(config.dropout, name="head_dropout")(x)
    logits = keras.layers.Dense(num_classes, kernel_regularizer=regularizer, name="head_logits")(x)
    # A separate Softmax layer keeps the logits reachable for prior correction and Grad-CAM.
    probabilities = keras.layers.Softmax(name="probabilities")(logits)
    return keras.Model(backbone.input, probabilities, name=f"{config.backbone}_classifier")


def set_trainable_top(
    model: "keras.Model", backbone: str, blocks: int, *, freeze_batchnorm: bool = True
) -> int:
    """Freezes the backbone except its top ``blocks`` blocks; the head always trains.

    With ``freeze_batchnorm`` BatchNormalization layers stay frozen (inference mode): small CPU batches
    give noisy statistics, and pretrained ones transfer well. A network trained from scratch has no
    statistics worth keeping, so it must train them (pass False). Returns the number of trainable layers.
    """
    prefix = BACKBONES[backbone].block_prefix
    block_ids = []
    for layer in model.layers:
        if layer.name.startswith(prefix):
            block_id = layer.name[len(prefix) :].split("_")[0]
            if block_id not in block_ids:
                block_ids.append(block_id)
    unfrozen = set(block_ids[max(0, len(block_ids) - blocks) :]) if blocks > 0 else set()
    # Asking for every block unfreezes the whole backbone, stem included (training from scratch).
    trainable_from_top = blocks >= len(block_ids)
    for layer in model.layers:
        if layer.name in HEAD_LAYERS:
            layer.trainable = True
            continue
        if layer.name.startswith(prefix) and layer.name[len(prefix) :].split("_")[0] in unfrozen:
            trainable_from_top = True
        # Layers after the first unfrozen block (e.g. MobileNetV2's final Conv_1) train too.
        is_batchnorm = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable_from_top and not (freeze_batchnorm and is_batchnorm)
        if is_batchnorm and layer.trainable:
            # Keras Applications' 0.999 lets moving statistics trail the weights by ~1,000 steps, i.e.
            # several epochs of a small data set; 0.99 follows within an epoch.
            layer.momentum = min(layer.momentum, BATCHNORM_TRAINING_MOMENTUM)
    return sum(1 for layer in model.layers if layer.trainable and layer.weights)


def prior_shift(train_prior: np.ndarray, strength: float, *, num_classes: int | None = None) -> np.ndarray:
    """The (mean-centred) logit shift of logit adjustment: ``strength * log(train_prior)``."""
    prior = np.asarray(train_prior, dtype=np.float64)
    size = num_classes or prior.size
    if prior.shape != (size,) or np.any(prior <= 0):
        raise ValueError(f"train_prior must be {size} positive numbers, got {train_prior}")
    return strength * (np.log(prior) - np.log(prior).mean())


def shift_logits(model: "keras.Model", shift: np.ndarray) -> None:
    """Subtracts ``shift`` (one number per class) from the head's logits by moving its bias."""
    bias = head_logits_layer(model).bias
    shift = np.asarray(shift, dtype=np.float64)
    if shift.shape != tuple(bias.shape) or not np.all(np.isfinite(shift)):
        raise ValueError(f"a logit shift must be {bias.shape[0]} finite numbers, got {shift}")
    bias.assign(bias.numpy() - shift.astype(bias.dtype.as_numpy_dtype))


def head_logits_layer(model: "keras.Model"):
    """The final Dense layer, unwrapped from tfmot's QuantizeWrapper when the model is quantization-aware."""
    for name in ("head_logits", "quant_head_logits"):
        try:
            layer = model.get_layer(name)
        except ValueError:
            continue
        return getattr(layer, "layer", layer)
    raise ValueError(f"model {model.name!r} has no head_logits layer; was it built by models.classifier?")
