"""The "I can't tell" head: a second model output that says whether an image looks like the training data.

The head reads the pooled features the classifier's last Dense layer reads and scores how much they
look like images that are not the training data's kind: a logistic regression fitted on training images
(as the runtime frames them, and as a phone might) against negative images (clinical photos, other data
sets, synthetic noise and colour images). Every lesion class weighs the same in the fit and in placing
the limit, so a rare class that resembles the negatives (red vascular lesions, red rashes) is not given
up. The logit is shifted so that "other" wins exactly past the limit, and scaled so that the median
validation image scores a fixed margin under it. The model returns
``[in-distribution, other] = softmax([-s/2, s/2])``: one Dense and one Softmax layer, which convert to
every TFLite variant and quantize to int8, and which MediaPipe Tasks' ``ImageClassifier`` returns as
``classifications[1]``.

A one-class model of the same features (a Gaussian, with the validation quantile as the limit) was
tried first and refused only 45 % of the MSID clinical photos: fine-tuning pulls any skin photo onto the
lesion classes' features. With negatives, the MSID photos the head never saw are refused at 97–99 %
(docs/experiments.md).

    >>> head = fit_abstain_head(model, train_pixels, val_pixels, negative_pixels, input_spec=spec,
    ...                         train_labels=train_labels, val_labels=val_labels)
    >>> two_headed = with_abstain_head(float_model, head)          # outputs [probabilities, in_distribution]
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from converters.temperature import logits_layer
from edge.abstain import HEAD_REFUSE_AT
from edge.preprocess import InputSpec, normalize

OUTPUT_NAME = "in_distribution"  # the output tensor's metadata name (MediaPipe's head_name)
DEFAULT_LABELS = ("dermoscopy", "other")
# The same share of validation images the numpy pixel check keeps (build.analysis.trust.DEFAULT_PIXEL_QUANTILE).
DEFAULT_QUANTILE = 0.965
# Inverse L2 strength of the logistic regression on standardized features. Measured on release 2's
# QAT features with three views per image (build.make.head_images): 0.003 refused all 26 natural photos
# (never seen) and answered 0.96 of the HAM originals; 0.001 let 1 natural photo through.
DEFAULT_REGULARIZATION = 0.003
# The strengths the build chooses among per model, by grouped cross-validation on the negatives: the same
# recipe's seeds refused 86-93 % of the unseen MSID half at one fixed strength, and the best strength
# differed between them (docs/experiments.md).
REGULARIZATION_CANDIDATES = (0.001, 0.003, 0.01, 0.03)
CROSS_VALIDATION_FOLDS = 5
STD_FLOOR = 0.3
# The median validation image's "other" logit: -4, a score of 2 % (the limit is 0, a score of 50 %).
MEDIAN_MARGIN = 4.0
# The head's int8 kernel: symmetric, narrow range (TFLite's and tfmot's weights), per tensor.
INT8_KERNEL_LEVELS = 127
# Where the kernel's bound may sit: the largest weight, or a high quantile of the weights' magnitudes.
KERNEL_BOUND_QUANTILES = (1.0, 0.999, 0.998, 0.995, 0.99, 0.98, 0.95, 0.9)
BATCH = 64

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AbstainHead:
    """A fitted abstain head: what :func:`with_abstain_head` builds into the model.

    Attributes:
        weights: The "other" logit per pooled feature, shape (D,).
        bias: The logit's offset, the validation limit folded in: "other" wins where the logit is > 0.
        labels: Names of the two scores, in order: the training data's kind, then ``other``.
        quantile: Share of validation images whose logit stays under the limit (with ``per_class``, the
            average of each class's share).
        per_class: Whether classes weighed the same in the fit and in placing the limit.
        regularization: Inverse L2 strength of the logistic regression it was fitted with.
        n_train: Training-like images it was fitted on.
        n_negative: Negative images it was fitted on.
        val_accepted: Share of validation images the head answers (float model).
        negative_refused: Share of its own negative images it refuses (float model).
        negatives: Where the negative images came from (data sets; synthetic images are always added).
        cross_validated: Per candidate strength, the share of held-out negative images refused in
            cross-validation (empty where one strength was given).
    """

    weights: np.ndarray = field(repr=False)
    bias: float
    labels: tuple[str, str] = DEFAULT_LABELS
    quantile: float = DEFAULT_QUANTILE
    per_class: bool = False
    regularization: float = DEFAULT_REGULARIZATION
    n_train: int = 0
    n_negative: int = 0
    val_accepted: float = 0.0
    negative_refused: float = 0.0
    negatives: tuple[str, ...] = ()
    cross_validated: tuple[tuple[float, float], ...] = ()

    @property
    def features(self) -> int:
        return int(self.weights.shape[0])

    def to_card(self) -> dict[str, Any]:
        """What the model card records about the head (the weights live in the model files)."""
        return {
            "output": OUTPUT_NAME,
            "labels": list(self.labels),
            "refuse_label": self.labels[1],
            "refuse_at": HEAD_REFUSE_AT,
            "kind": "logistic",
            "quantile": self.quantile,
            "per_class": self.per_class,
            "regularization": self.regularization,
            "n_train": self.n_train,
            "n_negative": self.n_negative,
            "val_accepted": self.val_accepted,
            "negative_refused": self.negative_refused,
            "negatives": list(self.negatives),
            "cross_validated_refused": {str(c): share for c, share in self.cross_validated},
        }

    def logit(self, features: np.ndarray) -> np.ndarray:
        """The "other" logit of pooled features (N, D): positive means refuse."""
        return np.asarray(features, np.float64) @ self.weights + self.bias

    def scores(self, features: np.ndarray) -> np.ndarray:
        """The head's two scores for pooled features (N, D), computed in numpy (float reference)."""
        other = 1.0 / (1.0 + np.exp(-np.clip(self.logit(features), -60, 60)))
        return np.stack([1.0 - other, other], axis=1)


def pooled_features(
    model: Any, pixels: Sequence[np.ndarray], input_spec: InputSpec, *, label: str = "pooled features"
) -> np.ndarray:
    """The features the classifier's last Dense layer reads, for uint8 pixels as the runtime frames them."""
    from edge.progress import Progress
    from models.keras import keras

    if not len(pixels):
        raise ValueError("no images given; the abstain head is fitted on images of both kinds")
    extractor = keras.Model(model.inputs, logits_layer(model).input)
    progress = Progress(label, len(pixels))
    batches = []
    for start in range(0, len(pixels), BATCH):
        batch = np.stack([np.asarray(image) for image in pixels[start : start + BATCH]])
        batches.append(np.asarray(extractor(normalize(batch, input_spec), training=False)))
        progress.update(start + len(batch))
    progress.close()
    return np.concatenate(batches).astype(np.float64)


def fit_abstain_head(
    model: Any,
    train_pixels: Sequence[np.ndarray],
    val_pixels: Sequence[np.ndarray],
    negative_pixels: Sequence[np.ndarray],
    *,
    input_spec: InputSpec,
    train_labels: Sequence[int] | None = None,
    val_labels: Sequence[int] | None = None,
    quantile: float = DEFAULT_QUANTILE,
    regularization: float | Sequence[float] = DEFAULT_REGULARIZATION,
    train_groups: Sequence[int] | None = None,
    negative_groups: Sequence[int] | None = None,
    labels: Sequence[str] = DEFAULT_LABELS,
) -> AbstainHead:
    """Fits the head on the model's pooled features: training-like images against negative images, the
    limit placed on validation images.

    Args:
        model: The tf_keras model (the head reads its pooled features).
        train_pixels: Training-split uint8 images, framed as the runtime frames them (and, better, also as
            a phone would: other dermoscopy then passes too).
        val_pixels: Validation-split images, used only to place the limit.
        negative_pixels: Images the head must refuse (other kinds of photos, synthetic images).
        input_spec: The model's normalization.
        train_labels: Class of each training image. Given, every class weighs the same in the fit, so a
            rare class that resembles the negatives (red vascular lesions and red rashes) is not given up.
        val_labels: Class of each validation image. Given, the limit answers ``quantile`` of each
            class's images on average, instead of ``quantile`` of all images (mostly nevi).
        quantile: Share of validation images the head must answer.
        regularization: Inverse L2 strength of the logistic regression (standardized features), or
            several: the one whose head refuses most held-out negatives in grouped cross-validation.
        train_groups: The source image of each training image (views of one image share a fold).
        negative_groups: The source image of each negative image.
        labels: The two score names: the training data's kind, then the refusal.

    Raises:
        ValueError: Too few images of either kind, labels or groups that do not match the images, a
            quantile outside [0.5, 1), or not two labels.
    """
    if not 0.5 <= quantile < 1.0:
        raise ValueError(f"quantile must be in [0.5, 1), got {quantile}")
    if len(labels) != 2:
        raise ValueError(f"the abstain head has two scores; labels must be two names, got {list(labels)}")
    for name, given, images in (
        ("train_labels", train_labels, train_pixels),
        ("val_labels", val_labels, val_pixels),
        ("train_groups", train_groups, train_pixels),
        ("negative_groups", negative_groups, negative_pixels),
    ):
        if given is not None and len(given) != len(images):
            raise ValueError(f"{name} has {len(given)} entries for {len(images)} images; give one per image")
    train = pooled_features(model, train_pixels, input_spec, label="abstain head: training images")
    negative = pooled_features(model, negative_pixels, input_spec, label="abstain head: negative images")
    val = pooled_features(model, val_pixels, input_spec, label="abstain head: validation images")
    return fit_on_features(
        train,
        val,
        negative,
        train_labels=train_labels,
        val_labels=val_labels,
        quantile=quantile,
        regularization=regularization,
        train_groups=train_groups,
        negative_groups=negative_groups,
        labels=labels,
    )


def fit_on_features(
    train: np.ndarray,
    val: np.ndarray,
    negative: np.ndarray,
    *,
    train_labels: Sequence[int] | None = None,
    val_labels: Sequence[int] | None = None,
    quantile: float = DEFAULT_QUANTILE,
    regularization: float | Sequence[float] = DEFAULT_REGULARIZATION,
    train_groups: Sequence[int] | None = None,
    negative_groups: Sequence[int] | None = None,
    labels: Sequence[str] = DEFAULT_LABELS,
) -> AbstainHead:
    """:func:`fit_abstain_head` on pooled features already computed (N, D): the same arguments, features
    in place of images."""
    candidates = tuple(sorted({float(c) for c in np.atleast_1d(regularization)}))
    if not candidates or min(candidates) <= 0:
        raise ValueError(f"regularization must be one or more strengths > 0, got {list(candidates)}")
    fit = dict(train_labels=train_labels, val_labels=val_labels, quantile=quantile, labels=labels)
    if len(candidates) == 1:
        return _fit(train, val, negative, regularization=candidates[0], **fit)
    refused = cross_validated_refusal(
        train, val, negative, candidates, train_groups=train_groups, negative_groups=negative_groups, **fit
    )
    chosen = max(candidates, key=refused.get)  # the first maximum: the strongest regularization among ties
    log.info(
        "abstain head: regularization %g, held-out negatives refused %s",
        chosen,
        ", ".join(f"{c:g}: {share:.1%}" for c, share in refused.items()),
    )
    head = _fit(train, val, negative, regularization=chosen, **fit)
    return dataclasses.replace(head, cross_validated=tuple(refused.items()))


def cross_validated_refusal(
    train: np.ndarray,
    val: np.ndarray,
    negative: np.ndarray,
    candidates: Sequence[float],
    *,
    train_labels: Sequence[int] | None = None,
    val_labels: Sequence[int] | None = None,
    train_groups: Sequence[int] | None = None,
    negative_groups: Sequence[int] | None = None,
    quantile: float = DEFAULT_QUANTILE,
    labels: Sequence[str] = DEFAULT_LABELS,
    folds: int = CROSS_VALIDATION_FOLDS,
) -> dict[float, float]:
    """Per strength, the share of negative images refused by heads fitted without them (grouped k-fold:
    every view of one source image is held out together; the limit is placed on all of ``val``).

    A closer fit refuses more of its own negatives and can refuse fewer new ones. On HAM10000 the
    strengths' held-out shares lay within 2 points of each other (docs/experiments.md): the choice
    guards against a strength that overfits, it does not rescue a model whose features do not set the
    negatives apart.
    """
    rng = np.random.default_rng(0)
    train_fold = _fold_of(train_groups, len(train), folds, rng)
    negative_fold = _fold_of(negative_groups, len(negative), folds, rng)
    classes = None if train_labels is None else np.asarray(train_labels)
    refused = {}
    for strength in candidates:
        held_out = []
        for fold in range(folds):
            kept, out = train_fold != fold, negative_fold == fold
            if not out.any():
                continue
            head = _fit(
                train[kept],
                val,
                negative[~out],
                train_labels=None if classes is None else classes[kept],
                val_labels=val_labels,
                quantile=quantile,
                regularization=strength,
                labels=labels,
            )
            held_out.append(head.logit(negative[out]) > 0)
        refused[float(strength)] = float(np.mean(np.concatenate(held_out)))
    return refused


def _fold_of(groups: Sequence[int] | None, n: int, folds: int, rng: np.random.Generator) -> np.ndarray:
    """The fold of each of ``n`` images, whole groups at a time (no groups: each image its own)."""
    groups = np.arange(n) if groups is None else np.asarray(groups)
    unique, index = np.unique(groups, return_inverse=True)
    return (rng.permutation(len(unique)) % folds)[index]


def _fit(
    train: np.ndarray,
    val: np.ndarray,
    negative: np.ndarray,
    *,
    train_labels: Sequence[int] | None,
    val_labels: Sequence[int] | None,
    quantile: float,
    regularization: float,
    labels: Sequence[str],
) -> AbstainHead:
    """One head at one regularization strength."""
    from sklearn.linear_model import LogisticRegression

    if len(train) < 3 or len(negative) < 3:
        raise ValueError(
            f"{len(train)} training and {len(negative)} negative images are too few to fit the abstain "
            "head; it needs at least 3 of each"
        )
    # Standardized on the training images, so one regularization strength suits any backbone; a
    # feature that barely varies on them is scaled as if it varied STD_FLOOR times the median feature,
    # or the regression leans on it with a weight that int8's per-tensor kernel scale turns the rest of
    # the weights into zeros around (measured on release 2: largest weight 192x the median, 22x floored).
    mean, std = train.mean(axis=0), train.std(axis=0)
    std = np.maximum(std, STD_FLOOR * float(np.median(std)) + 1e-6)
    # Each side weighs half the total, as sklearn's class_weight="balanced" does; within the training
    # images each class weighs the same when the labels are given.
    total = len(train) + len(negative)
    positive = _class_balanced(train_labels, len(train)) * total / 2
    regression = LogisticRegression(C=regularization, max_iter=5000)
    regression.fit(
        (np.concatenate([train, negative]) - mean) / std,
        np.r_[np.zeros(len(train)), np.ones(len(negative))],
        sample_weight=np.r_[positive, np.full(len(negative), total / 2 / len(negative))],
    )
    bias = float(regression.intercept_[0] - np.sum(regression.coef_[0] * mean / std))
    weights = int8_kernel_weights(regression.coef_[0] / std, bias, val, negative, quantile, val_labels)
    val_logits = val @ weights + bias
    limit = answering_limit(val_logits, quantile, val_labels)
    # Rescaled so that the median validation image scores MEDIAN_MARGIN logits under the limit: the int8
    # output resolves 1/8 logit, and an unscaled regression can crowd the data within a few steps of it.
    factor = MEDIAN_MARGIN / max(limit - float(np.median(val_logits)), 1e-6)
    head = AbstainHead(
        weights=weights * factor,
        bias=(bias - limit) * factor,
        labels=tuple(labels),
        quantile=quantile,
        per_class=val_labels is not None,
        regularization=regularization,
        n_train=len(train),
        n_negative=len(negative),
    )
    return dataclasses.replace(
        head,
        val_accepted=float(np.mean(head.logit(val) <= 0)),
        negative_refused=float(np.mean(head.logit(negative) > 0)),
    )


def int8_kernel_weights(
    weights: np.ndarray,
    bias: float,
    val: np.ndarray,
    negative: np.ndarray,
    quantile: float = DEFAULT_QUANTILE,
    val_labels: Sequence[int] | None = None,
) -> np.ndarray:
    """The weights as the int8 file's kernel will hold them, bounded where the head refuses most negatives.

    An int8 kernel is per tensor: 255 levels spanning its largest weight, so a regression that leans on
    a few features turns most other weights into zeros. Bounding the largest weights trades that rounding
    for clipping. Each bound is scored by what the gate measures: with the limit placed on the validation
    images for the weights the kernel holds, the share of negative images refused (ties: the larger
    bound). Scoring by how far the logits move instead chose bounds that kept the largest weights and
    refused 77-85 % of an unseen MSID half where the float weights refused 90 % (docs/experiments.md).
    The weights come back on the kernel's grid, so the limit, placed next, is placed for the weights
    every file variant holds.
    """
    magnitudes = np.abs(weights)
    if not magnitudes.max() > 0:
        return weights

    def held(bound: float) -> np.ndarray:
        step = bound / INT8_KERNEL_LEVELS
        return np.round(np.clip(weights, -bound, bound) / step) * step

    def refused(bound: float) -> float:
        kernel = held(bound)
        limit = answering_limit(val @ kernel + bias, quantile, val_labels)
        return float(np.mean(negative @ kernel + bias > limit))

    bounds = np.unique(np.quantile(magnitudes, KERNEL_BOUND_QUANTILES))[::-1]
    bound = max(bounds[bounds > 0], key=refused)  # the first maximum: the largest bound among ties
    log.info(
        "abstain head: int8 kernel bound %.3g (largest weight %.3g; %.1f %% of the weights clipped, %.0f %% "
        "zero; %.1f %% of the negatives refused)",
        bound,
        magnitudes.max(),
        100 * np.mean(magnitudes > bound),
        100 * np.mean(held(bound) == 0),
        100 * refused(bound),
    )
    return held(bound)


def answering_limit(logits: np.ndarray, quantile: float, labels: Sequence[int] | None = None) -> float:
    """The "other" logit up to which images are answered: the ``quantile`` of ``logits``, or with
    ``labels`` the lowest limit at which the classes' answered shares average ``quantile``."""
    logits = np.asarray(logits, np.float64)
    if labels is None:
        return float(np.quantile(logits, quantile))
    labels = np.asarray(labels)
    classes = np.unique(labels)
    for limit in np.sort(logits):
        if np.mean([np.mean(logits[labels == c] <= limit) for c in classes]) >= quantile:
            return float(limit)
    return float(logits.max())


def _class_balanced(labels: Sequence[int] | None, n: int) -> np.ndarray:
    """Per-image weights summing to 1, equal per class (equal per image without labels)."""
    if labels is None:
        return np.full(n, 1.0 / n)
    labels = np.asarray(labels)
    classes, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
    return 1.0 / (len(classes) * counts[index])


def with_abstain_head(model: Any, head: AbstainHead) -> Any:
    """A new flat Functional model with outputs ``[probabilities, in_distribution]``, sharing ``model``'s
    layers (and weights) and adding the head's two layers. ``model`` itself is not changed."""
    from models.keras import keras

    layers = keras.layers
    features = logits_layer(model).input
    if int(features.shape[-1]) != head.features:
        raise ValueError(
            f"the abstain head was fitted on {head.features} features, model {model.name!r} pools "
            f"{int(features.shape[-1])}; fit it on this model"
        )
    score = layers.Dense(2, name="abstain_score")
    output = layers.Softmax(name=OUTPUT_NAME)(score(features))
    # softmax([-s/2, s/2]) = [1 - sigmoid(s), sigmoid(s)], s = weights . features + bias.
    half = 0.5 * head.weights.astype(np.float32)
    score.set_weights([np.stack([-half, half], axis=1), np.float32([-head.bias / 2, head.bias / 2])])
    return keras.Model(model.inputs, [model.outputs[0], output], name=f"{model.name}_with_abstain")


# The int8 range of the head's score. Calibration on training images would fit it to in-distribution
# images only, and everything far away would saturate near the limit; pinned, the score saturates only
# past +-16 logits (other = 1e-7 .. 1 - 1e-7).
SCORE_RANGE = 16.0
HEAD_LAYERS = ("abstain_score", OUTPUT_NAME)


def with_quantization_aware_head(model: Any, head: AbstainHead) -> Any:
    """:func:`with_abstain_head` for a QAT model: the head's layers get tfmot's default 8-bit wrappers with
    the pinned range set, so the converter folds them into int8 ops like the rest of the QAT graph."""
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry,
    )

    from models.keras import keras

    float_model = with_abstain_head(model, head)
    configs = registry.Default8BitQuantizeRegistry()
    kernel_bound = float(np.abs(float_model.get_layer("abstain_score").get_weights()[0]).max())
    wrapped = {
        name: tfmot.quantization.keras.QuantizeWrapperV2(
            float_model.get_layer(name), configs.get_quantize_config(float_model.get_layer(name))
        )
        for name in HEAD_LAYERS
    }
    output = wrapped[OUTPUT_NAME](wrapped["abstain_score"](logits_layer(model).input))
    for weight in wrapped["abstain_score"].weights:
        short = weight.name.split("/")[-1].split(":")[0]
        if short in ("post_activation_min", "output_min"):
            weight.assign(-SCORE_RANGE)
        elif short in ("post_activation_max", "output_max"):
            weight.assign(SCORE_RANGE)
        elif short in ("kernel_min", "kernel_max"):
            weight.assign(-kernel_bound if short == "kernel_min" else kernel_bound)
    return keras.Model(model.inputs, [model.outputs[0], output], name=f"{model.name}_with_abstain")


def pin_int8_ranges(flatbuffer: bytes) -> bytes:
    """Sets the int8 score tensor of a post-training-quantized head to the pinned range.

    The tensor's scale is shared by the op writing it and the softmax reading it, so changing it is
    consistent. Files without the head, or with a float head, are returned unchanged.
    """
    from converters.metadata import _schemas

    flatbuffers, _, schema_fb = _schemas()
    tflite = schema_fb.ModelT.InitFromObj(schema_fb.Model.GetRootAsModel(flatbuffer, 0))
    graph = tflite.subgraphs[0]
    codes = [max(code.builtinCode, code.deprecatedBuiltinCode) for code in tflite.operatorCodes]
    changed = False
    for op in graph.operators:
        tensor = graph.tensors[op.outputs[0]]
        weights = (
            graph.tensors[op.inputs[1]].name.decode() if len(op.inputs) > 1 and op.inputs[1] >= 0 else ""
        )
        if (
            tensor.type == schema_fb.TensorType.INT8
            and codes[op.opcodeIndex] == schema_fb.BuiltinOperator.FULLY_CONNECTED
            and "abstain_score" in weights
        ):
            _set_range(tensor, -SCORE_RANGE, SCORE_RANGE)
            changed = True
    if not changed:
        return flatbuffer
    builder = flatbuffers.Builder(0)
    builder.Finish(tflite.Pack(builder), b"TFL3")
    return bytes(builder.Output())


def _set_range(tensor: Any, low: float, high: float) -> None:
    scale = (high - low) / 255.0
    tensor.quantization.scale = [scale]
    tensor.quantization.zeroPoint = [int(round(-128 - low / scale))]
