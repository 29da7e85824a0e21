"""The "I can't tell" head: a second model output that says whether an image looks like the training data.

The head reads the pooled features the classifier's last Dense layer reads, and measures how far they
lie from the training images' features: a Gaussian fitted on training features, whitened along its
``components`` principal directions, gives a squared Mahalanobis distance d². The head turns it into
two scores, ``[in-distribution, other] = softmax([-s/2, s/2])`` with ``s = (d² - threshold) / scale``,
so "other" wins exactly when d² passes the threshold placed on the validation images. All of it is
Dense, Multiply and Softmax layers: it converts to every TFLite variant and quantizes to int8, and
MediaPipe Tasks' ``ImageClassifier`` returns it as ``classifications[1]``.

    >>> head = fit_abstain_head(float_model, train_pixels, val_pixels, input_spec=spec)
    >>> two_headed = with_abstain_head(float_model, head)          # outputs [probabilities, in_distribution]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from converters.temperature import logits_layer
from edge.preprocess import InputSpec, normalize

OUTPUT_NAME = "in_distribution"  # the output tensor's metadata name (MediaPipe's head_name)
DEFAULT_LABELS = ("dermoscopy", "other")
DEFAULT_COMPONENTS = 64
# The same share of validation images the numpy pixel check keeps (build.analysis.trust.DEFAULT_PIXEL_QUANTILE).
DEFAULT_QUANTILE = 0.965
RIDGE = 1e-3  # added to each eigenvalue, as a share of the mean one: keeps near-constant features finite
BATCH = 64


@dataclass(frozen=True)
class AbstainHead:
    """A fitted abstain head: what :func:`with_abstain_head` builds into the model.

    Attributes:
        mean: Mean pooled feature vector of the training images, shape (D,).
        projection: Whitening matrix, shape (D, K): ``z = (f - mean) @ projection`` has unit variance
            on the training images along each of its K components.
        threshold: Squared distance at which "other" wins (the validation quantile).
        scale: Squared-distance units per logit unit of the head's score.
        labels: Names of the two scores, in order: the training data's kind, then ``other``.
        quantile: Share of validation images whose distance stays under ``threshold``.
        n_train: Training images the Gaussian was fitted on.
        val_accepted: Share of validation images the head answers (float model).
    """

    mean: np.ndarray = field(repr=False)
    projection: np.ndarray = field(repr=False)
    threshold: float
    scale: float
    labels: tuple[str, str] = DEFAULT_LABELS
    quantile: float = DEFAULT_QUANTILE
    n_train: int = 0
    val_accepted: float = 0.0

    @property
    def components(self) -> int:
        return int(self.projection.shape[1])

    def to_card(self) -> dict[str, Any]:
        """What the model card records about the head (the weights live in the model files)."""
        return {
            "output": OUTPUT_NAME,
            "labels": list(self.labels),
            "refuse_label": self.labels[1],
            "refuse_at": 0.5,
            "components": self.components,
            "threshold_distance2": self.threshold,
            "scale": self.scale,
            "quantile": self.quantile,
            "n_train": self.n_train,
            "val_accepted": self.val_accepted,
        }

    def scores(self, features: np.ndarray) -> np.ndarray:
        """The head's two scores for pooled features (N, D), computed in numpy (float reference)."""
        logit = (self.distance2(features) - self.threshold) / self.scale
        other = 1.0 / (1.0 + np.exp(-np.clip(logit, -60, 60)))
        return np.stack([1.0 - other, other], axis=1)

    def distance2(self, features: np.ndarray) -> np.ndarray:
        """Squared whitened distance of pooled features (N, D) from the training mean."""
        z = (np.asarray(features, np.float64) - self.mean) @ self.projection
        return np.sum(z * z, axis=1)


def pooled_features(model: Any, pixels: Iterable[np.ndarray], input_spec: InputSpec) -> np.ndarray:
    """The features the classifier's last Dense layer reads, for uint8 pixels as the runtime frames them."""
    from models.keras import keras

    extractor = keras.Model(model.inputs, logits_layer(model).input)
    batches, batch = [], []
    for image in pixels:
        batch.append(np.asarray(image))
        if len(batch) == BATCH:
            batches.append(np.asarray(extractor(normalize(np.stack(batch), input_spec), training=False)))
            batch = []
    if batch:
        batches.append(np.asarray(extractor(normalize(np.stack(batch), input_spec), training=False)))
    if not batches:
        raise ValueError("no images given; the abstain head is fitted on training images")
    return np.concatenate(batches).astype(np.float64)


def fit_abstain_head(
    model: Any,
    train_pixels: Iterable[np.ndarray],
    val_pixels: Iterable[np.ndarray],
    *,
    input_spec: InputSpec,
    components: int = DEFAULT_COMPONENTS,
    quantile: float = DEFAULT_QUANTILE,
    labels: Sequence[str] = DEFAULT_LABELS,
) -> AbstainHead:
    """Fits the head on the float model's pooled features of training images; the threshold on validation.

    Args:
        model: The float tf_keras model (the head reads its pooled features).
        train_pixels: Training-split uint8 images framed as the runtime frames them.
        val_pixels: Validation-split images, used only to place the threshold.
        input_spec: The model's normalization.
        components: Principal directions kept (at most the feature size and the training images - 1).
        quantile: Share of validation images the head must answer.
        labels: The two score names: the training data's kind, then the refusal.

    Raises:
        ValueError: Too few images, a quantile outside [0.5, 1), or not two labels.
    """
    if not 0.5 <= quantile < 1.0:
        raise ValueError(f"quantile must be in [0.5, 1), got {quantile}")
    if len(labels) != 2:
        raise ValueError(f"the abstain head has two scores; labels must be two names, got {list(labels)}")
    train = pooled_features(model, train_pixels, input_spec)
    val = pooled_features(model, val_pixels, input_spec)
    if len(train) < 3:
        raise ValueError(f"{len(train)} training images are too few to fit the abstain head; use more")
    mean = train.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(train - mean, rowvar=False))
    order = np.argsort(eigenvalues)[::-1][: max(1, min(components, train.shape[1], len(train) - 1))]
    ridge = RIDGE * max(float(eigenvalues.clip(0).mean()), 1e-12)
    projection = eigenvectors[:, order] / np.sqrt(eigenvalues[order].clip(0) + ridge)
    head = AbstainHead(
        mean=mean,
        projection=projection,
        threshold=1.0,
        scale=1.0,
        labels=tuple(labels),
        quantile=quantile,
        n_train=len(train),
    )
    distances = head.distance2(val)
    threshold = float(np.quantile(distances, quantile))
    # A tenth of the threshold per logit unit: "other" goes from 27% to 73% across +-10% of the limit.
    head = dataclasses.replace(
        head,
        threshold=threshold,
        scale=max(0.1 * threshold, 1e-6),
        val_accepted=float(np.mean(distances < threshold)),
    )
    return head


def with_abstain_head(model: Any, head: AbstainHead) -> Any:
    """A new flat Functional model with outputs ``[probabilities, in_distribution]``, sharing ``model``'s
    layers (and weights) and adding the head's four layers. ``model`` itself is not changed."""
    from models.keras import keras

    layers = keras.layers
    features = logits_layer(model).input
    size, k = head.projection.shape
    if int(features.shape[-1]) != size:
        raise ValueError(
            f"the abstain head was fitted on {size} features, model {model.name!r} pools "
            f"{int(features.shape[-1])}; fit it on this model"
        )
    whiten = layers.Dense(k, name="abstain_whiten")
    square = layers.Multiply(name="abstain_square")
    score = layers.Dense(2, name="abstain_score")
    softmax = layers.Softmax(name=OUTPUT_NAME)
    z = whiten(features)
    output = softmax(score(square([z, z])))
    whiten.set_weights(
        [head.projection.astype(np.float32), (-head.mean @ head.projection).astype(np.float32)]
    )
    # softmax([-s/2, s/2]) = [1 - sigmoid(s), sigmoid(s)], s = (sum z^2 - threshold) / scale.
    half = 0.5 / head.scale
    kernel = np.tile(np.float32([[-half, half]]), (k, 1))
    bias = np.float32([head.threshold * half, -head.threshold * half])
    score.set_weights([kernel, bias])
    return keras.Model(model.inputs, [model.outputs[0], output], name=f"{model.name}_with_abstain")


# Fixed int8 ranges of the head's tensors. Calibration on training images would fit them to in-distribution
# images only, and everything far away would saturate near the threshold; pinned, a whitened component
# saturates only past 8 standard deviations and the score past +-16 logits (other = 1e-7 .. 1 - 1e-7).
WHITENED_RANGE = 8.0
SQUARED_RANGE = WHITENED_RANGE**2
SCORE_RANGE = 16.0
HEAD_LAYERS = ("abstain_whiten", "abstain_square", "abstain_score", OUTPUT_NAME)


def with_quantization_aware_head(model: Any, head: AbstainHead) -> Any:
    """:func:`with_abstain_head` for a QAT model: the head's layers get tfmot's default 8-bit wrappers with
    the pinned ranges set, so the converter folds them into int8 ops like the rest of the QAT graph."""
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs as quantize_configs,
        default_8bit_quantize_registry as registry,
    )

    from models.keras import keras

    float_model = with_abstain_head(model, head)
    configs = registry.Default8BitQuantizeRegistry()

    def config(layer: Any) -> Any:
        # tfmot's registry has no entry for Multiply; its output is quantized like an Add's.
        return (
            configs.get_quantize_config(layer)
            if configs.supports(layer)
            else quantize_configs.Default8BitOutputQuantizeConfig()
        )

    kernel_bounds = {
        name: float(np.abs(float_model.get_layer(name).get_weights()[0]).max())
        for name in ("abstain_whiten", "abstain_score")
    }
    wrapped = {
        name: tfmot.quantization.keras.QuantizeWrapperV2(
            float_model.get_layer(name), config(float_model.get_layer(name))
        )
        for name in HEAD_LAYERS
    }
    z = wrapped["abstain_whiten"](logits_layer(model).input)
    output = wrapped[OUTPUT_NAME](wrapped["abstain_score"](wrapped["abstain_square"]([z, z])))
    ranges = {
        "abstain_whiten": (-WHITENED_RANGE, WHITENED_RANGE),
        "abstain_square": (0.0, SQUARED_RANGE),
        "abstain_score": (-SCORE_RANGE, SCORE_RANGE),
    }
    for name, (low, high) in ranges.items():
        layer = wrapped[name]
        for weight in layer.weights:
            short = weight.name.split("/")[-1].split(":")[0]
            if short in ("post_activation_min", "output_min"):
                weight.assign(low)
            elif short in ("post_activation_max", "output_max"):
                weight.assign(high)
            elif short in ("kernel_min", "kernel_max"):
                bound = kernel_bounds[name]
                weight.assign(-bound if short == "kernel_min" else bound)
    return keras.Model(model.inputs, [model.outputs[0], output], name=f"{model.name}_with_abstain")


def pin_int8_ranges(flatbuffer: bytes) -> bytes:
    """Sets the int8 head tensors of a post-training-quantized file to the pinned ranges.

    Each tensor's scale is shared by the op writing it and the op reading it, so changing it is
    consistent; the score layer's int32 bias, whose scale is its input's times its kernel's, is
    re-quantized with it. Files without the head, or with a float head, are returned unchanged.
    """
    from converters.metadata import _schemas

    flatbuffers, _, schema_fb = _schemas()
    tflite = schema_fb.ModelT.InitFromObj(schema_fb.Model.GetRootAsModel(flatbuffer, 0))
    graph = tflite.subgraphs[0]
    codes = [max(code.builtinCode, code.deprecatedBuiltinCode) for code in tflite.operatorCodes]
    name = lambda index: graph.tensors[index].name.decode() if index >= 0 else ""  # noqa: E731
    changed = False
    for op in graph.operators:
        code, inputs, output = codes[op.opcodeIndex], list(op.inputs), op.outputs[0]
        tensor = graph.tensors[output]
        if tensor.type != schema_fb.TensorType.INT8:
            continue
        if code == schema_fb.BuiltinOperator.FULLY_CONNECTED and "abstain_whiten" in name(inputs[1]):
            _set_range(tensor, -WHITENED_RANGE, WHITENED_RANGE)
            changed = True
        elif code == schema_fb.BuiltinOperator.MUL and "abstain_square" in name(output):
            old = graph.tensors[output].quantization.scale[0]
            _set_range(tensor, 0.0, SQUARED_RANGE)
            for reader in graph.operators:  # the score layer reads the square: its bias follows the scale
                if list(reader.inputs)[:1] == [output] and len(reader.inputs) > 2 and reader.inputs[2] >= 0:
                    bias = graph.tensors[reader.inputs[2]]
                    data = tflite.buffers[bias.buffer].data
                    values = np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.int32).astype(np.float64)
                    factor = old / tensor.quantization.scale[0]
                    tflite.buffers[bias.buffer].data = np.frombuffer(
                        np.round(values * factor).astype(np.int32).tobytes(), np.uint8
                    )
                    bias.quantization.scale = [s / factor for s in bias.quantization.scale]
            changed = True
        elif code == schema_fb.BuiltinOperator.FULLY_CONNECTED and "abstain_score" in name(inputs[1]):
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
