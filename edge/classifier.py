"""The classifier every front end shares: image in; ranked classes, malignant probability, abstain flag out.

    >>> classifier = Classifier(DEFAULT_BUNDLE)                  # the preferred variant (int8 when present)
    >>> prediction = classifier.classify("lesion.jpg")
    >>> prediction.top.display_name, prediction.malignant_probability, prediction.abstained
    ('Melanocytic nevus (mole)', 0.04, False)

The path of one image: :func:`edge.preprocess.load_image` (the card's input spec) -> the model's input
tensor (normalized and/or quantized as the interpreter reports) -> invoke -> dequantized softmax ->
calibration temperature (only for files exported before the temperature was folded into the graph) ->
:func:`edge.abstain.abstain_reason`, which reads the model's own abstain head when the file has one
(a second output, ``in_distribution``) and falls back to the card's numpy pixel check otherwise.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.abstain import DERMOSCOPY_RETAKE, abstain_reason
from edge.bundle import REFERENCE, Bundle, load_bundle, resolve_bundle
from edge.card import ModelCard
from edge.errors import BundleError, SkinlesionError
from edge.interpreter import TensorInfo, TFLiteModel, dequantize, quantize
from edge.labels import labels_for_model, read_metadata_display_names
from edge.preprocess import ImageSource, InputSpec, describe_source, dihedral_views, load_image, normalize
from edge.tasks import for_card_name

log = logging.getLogger(__name__)

BACKENDS = ("tflite", "keras")
KERAS_SUFFIXES = (".keras", ".h5")
LOG_EPSILON = 1e-7  # keeps log(p) finite for a probability the model rounded to 0


@dataclass(frozen=True)
class Category:
    """One class and its calibrated probability.

    Attributes:
        label: Class code as in labels.txt (e.g. ``"mel"``).
        display_name: Plain-language name from the card, or from a bare ``.tflite``'s metadata (the code
            itself when neither has one).
        score: Calibrated probability in 0..1.
    """

    label: str
    display_name: str
    score: float


@dataclass(frozen=True)
class Prediction:
    """What the classifier says about one image.

    Attributes:
        categories: Every class, ranked from most to least probable.
        malignant_probability: Sum of the probabilities of the card's malignant classes; None when the card
            marks no class malignant (or there is no card).
        abstained: True when the answer should not be trusted (see ``abstain_reason``).
        abstain_reason: Why the classifier abstained, in plain words; None when it did not.
        source: The input, as a path or a short description such as ``<bytes: 1234 bytes>``.
    """

    categories: tuple[Category, ...]
    malignant_probability: float | None
    abstained: bool
    abstain_reason: str | None
    source: str

    @property
    def top(self) -> Category:
        """The most probable class."""
        return self.categories[0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``top`` repeats the first category for convenience."""
        return {
            "source": self.source,
            "top": dataclasses.asdict(self.top),
            **{k: v for k, v in dataclasses.asdict(self).items() if k != "source"},
        }


class Classifier:
    """Runs a bundle's (or a bare ``.tflite``'s) model on images.

    Args:
        model: A bundle folder (or a loaded :class:`edge.bundle.Bundle`), a bare ``.tflite`` file, or with
            ``backend="keras"`` a bundle whose card lists a ``reference`` Keras model (or a bare ``.keras``).
        variant: Which TFLite variant of a bundle to run (a shipped row of :data:`edge.variants.VARIANTS`:
            ``int8``, ``float16``, ...); None picks the first present in that table's order.
        labels: Class codes for a bare model file. Without it the labels come from ``labels.txt`` beside the
            file, then from the label file packed in the model's TFLite metadata.
        num_threads: Interpreter CPU threads (None: the runtime's default).
        delegate: ``"edgetpu"``, ``"gpu"`` or a delegate library path.
        backend: ``"tflite"``, or ``"keras"`` to run the float reference with TensorFlow (imported only then),
            so that quantized and float models can be compared on one host.

    A bare model has no card, so: its input size comes from the interpreter, a uint8 input gets the
    pixels as they are, a float input gets the default :class:`InputSpec` normalization (``x/127.5 - 1``),
    the temperature is 1 (a file exported with it has it in its graph) and it abstains only when the
    file carries the in-graph abstain head and the head refuses.

    Thread-safe: preprocessing runs in the caller's thread; the interpreter call holds a lock.
    """

    def __init__(
        self,
        model: str | os.PathLike | Bundle,
        *,
        variant: str | None = None,
        labels: Sequence[str] | None = None,
        num_threads: int | None = None,
        delegate: str | None = None,
        backend: str = "tflite",
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "keras" and (delegate is not None or num_threads is not None):
            raise ValueError(
                "delegate= and num_threads= configure a TFLite interpreter; the keras backend "
                "runs TensorFlow with its own settings, so leave them out"
            )
        self._bundle = model if isinstance(model, Bundle) else None
        if self._bundle is None and resolve_bundle(model).is_dir():  # a folder, or a shipped bundle's name
            self._bundle = load_bundle(model)
        if self._bundle is not None:
            if labels is not None:
                raise ValueError("labels= is for a bare model file; a bundle's labels come from its card")
            path, self._variant = self._bundle_file(self._bundle, variant, backend)
        else:
            path = Path(model)
            if variant is not None:
                raise ValueError(
                    f"variant={variant!r} selects a file inside a bundle, but {path} is a "
                    "single model file; pass the bundle folder instead"
                )
            _check_model_file(path, backend)
            self._variant = None
        self._model: TFLiteModel | _KerasModel = (
            TFLiteModel(path, num_threads=num_threads, delegate=delegate)
            if backend == "tflite"
            else _KerasModel(path, views=self._bundle.card.test_time_views if self._bundle else 1)
        )
        self._path = path
        num_outputs = int(np.prod(self._model.output.shape[1:]))
        self._check_input_shape()
        if self._bundle is not None:
            self._bundle.check_output_size(self._variant, num_outputs)
            self._labels = self._bundle.labels
            self._display_names = self._bundle.card.display_names
            self._spec = self._bundle.card.input
            if (self._spec.height, self._spec.width) != self._model.input.shape[1:3]:
                raise BundleError(
                    f"{path} takes {self._model.input.shape[1:3]} inputs but the card of "
                    f"{self._bundle.folder} says {self._spec.size}; re-export the bundle"
                )
        else:
            self._labels = labels_for_model(path, labels, num_outputs)
            self._display_names = (
                read_metadata_display_names(path, self._labels) if backend == "tflite" else {}
            )
            self._spec = InputSpec(height=self._model.input.shape[1], width=self._model.input.shape[2])
        self._feed_pixels = self._takes_pixels_as_they_are()
        self._temperature = runtime_temperature(self.card) if self.card else 1.0
        self._has_head = len(getattr(self._model, "outputs", ())) == 2
        # A refusal ends with what to do instead, in the words of the model's task.
        row = for_card_name(self.card.name) if self.card else None
        self._retake = row.retake if row else DERMOSCOPY_RETAKE
        self._last_head = threading.local()  # (pixels, other score) of the last probabilities_from_pixels

    # -- public properties -------------------------------------------------------------------------------

    @property
    def card(self) -> ModelCard | None:
        """The bundle's model card; None for a bare model file."""
        return self._bundle.card if self._bundle else None

    @property
    def bundle(self) -> Bundle | None:
        """The bundle the model came from; None for a bare model file."""
        return self._bundle

    @property
    def labels(self) -> tuple[str, ...]:
        """Class codes in output order."""
        return self._labels

    @property
    def input_spec(self) -> InputSpec:
        """Input size, resize policy and normalization used by :meth:`preprocess`."""
        return self._spec

    @property
    def interpreter_name(self) -> str:
        """The runtime that runs the model: ``ai_edge_litert``, ``tflite_runtime``, ``tensorflow.lite`` or
        ``tf_keras``."""
        return self._model.runtime.name

    @property
    def variant(self) -> str | None:
        """The bundle variant being run (``reference`` for the Keras backend); None for a bare file."""
        return self._variant

    @property
    def model_path(self) -> Path:
        """The model file being run."""
        return self._path

    @property
    def has_abstain_head(self) -> bool:
        """Whether the model file carries the in-graph abstain head (its second output)."""
        return self._has_head

    @property
    def model(self) -> TFLiteModel | _KerasModel:
        """The opened model (benchmarks time its ``invoke`` alone)."""
        return self._model

    # -- the pipeline --------------------------------------------------------------------------------------

    def preprocess(self, image: ImageSource) -> np.ndarray:
        """Decodes and crops ``image`` to the uint8 pixels the model sees (also the app's preview).

        Raises:
            ImageError: The image cannot be read; the message names it.
        """
        return load_image(image, self._spec)

    def input_tensor(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 HxWx3 pixels -> the batch of one the model's input expects (normalized, quantized)."""
        info = self._model.input
        if self._feed_pixels:
            return pixels[np.newaxis]
        values = normalize(pixels, self._spec)[np.newaxis]
        if info.quantized:
            return quantize(values, info)
        return values.astype(info.dtype)

    def probabilities_from_pixels(self, pixels: np.ndarray, *, tta: bool = False) -> np.ndarray:
        """Calibrated class probabilities (output order) for preprocessed pixels.

        With ``tta`` the calibrated probabilities are averaged over flips and 90-degree rotations of the
        pixels (8 views for a square input, 4 otherwise), unless the file already averages all 8 in its
        graph (the card's ``test_time_views``): the same mean again would only cost 8x the time.
        """
        views = tta_views(pixels) if tta else [pixels]
        if len(views) <= (self.card.test_time_views if self.card else 1):
            views = [pixels]  # the file's graph averages these very views already
        per_view = [self._calibrated(view) for view in views]
        if self._has_head:
            # Kept for predict_pixels on the same array, so the abstain decision costs no second invoke.
            self._last_head.value = (pixels, float(np.mean([other for _, other in per_view])))
        return np.mean([probabilities for probabilities, _ in per_view], axis=0)

    def probabilities(self, image: ImageSource, *, tta: bool = False) -> np.ndarray:
        """Calibrated class probabilities in output order (``labels`` order), for evaluation code."""
        return self.probabilities_from_pixels(self.preprocess(image), tta=tta)

    def classify(self, image: ImageSource, *, tta: bool = False) -> Prediction:
        """Classifies one image (path, bytes, file object, PIL image or array).

        Raises:
            ImageError: The image cannot be read; the message names it.
        """
        pixels = self.preprocess(image)
        return self.predict_pixels(
            pixels, self.probabilities_from_pixels(pixels, tta=tta), source=describe_source(image)
        )

    def predict_pixels(self, pixels: np.ndarray, probabilities: np.ndarray, *, source: str) -> Prediction:
        """Builds the :class:`Prediction` for calibrated ``probabilities`` of ``pixels``."""
        card = self.card
        names = self._display_names
        order = np.argsort(-probabilities, kind="stable")
        categories = tuple(
            Category(self._labels[i], names.get(self._labels[i], self._labels[i]), float(probabilities[i]))
            for i in order
        )
        malignant = card.malignant_indices if card else []
        # A bare file with the in-graph head still refuses what its head refuses; without a card or a head
        # nothing says when to abstain.
        reason = (
            abstain_reason(
                probabilities,
                pixels,
                card.abstain if card else {},
                other_score=self.abstain_score(pixels),
                retake=self._retake,
            )
            if card or self._has_head
            else None
        )
        return Prediction(
            categories=categories,
            malignant_probability=float(probabilities[malignant].sum()) if malignant else None,
            abstained=reason is not None,
            abstain_reason=reason,
            source=source,
        )

    def abstain_score(self, pixels: np.ndarray) -> float | None:
        """The in-graph abstain head's "other" score (0..1) for preprocessed pixels; None without a head.

        Free right after :meth:`probabilities_from_pixels` on the same array (the score of that invoke
        is reused); otherwise the model runs once more.
        """
        if not self._has_head:
            return None
        last = getattr(self._last_head, "value", None)
        if last is not None and last[0] is pixels:
            return last[1]
        return self._calibrated(pixels)[1]

    # -- internals ------------------------------------------------------------------------------------------

    def _calibrated(self, pixels: np.ndarray) -> tuple[np.ndarray, float | None]:
        """Calibrated class probabilities and the abstain head's "other" score (None without a head)."""
        tensor = self.input_tensor(pixels)
        if self._has_head:
            raw, head = self._model.run_all(tensor)
            other = float(dequantize(head, self._model.outputs[1]).reshape(-1)[1])
        else:
            raw, other = self._model.run(tensor), None
        probabilities = dequantize(raw, self._model.output).reshape(-1)
        if self._temperature != 1.0:
            probabilities = apply_temperature(probabilities, self._temperature)
        return probabilities, other

    @staticmethod
    def _bundle_file(bundle: Bundle, variant: str | None, backend: str) -> tuple[Path, str]:
        if backend == "keras":
            if variant not in (None, REFERENCE):
                raise ValueError(f"backend='keras' runs the bundle's {REFERENCE!r} model, not {variant!r}")
            return bundle.path(REFERENCE), REFERENCE
        if variant == REFERENCE:
            raise ValueError(f"the {REFERENCE!r} model is a Keras file: pass backend='keras' to run it")
        path = bundle.path(variant)
        return path, variant or bundle.variants[0]

    def _check_input_shape(self) -> None:
        shape = self._model.input.shape
        if len(shape) != 4 or shape[3] != 3:
            raise SkinlesionError(f"{self._path}: expected an image input of shape (1, H, W, 3), got {shape}")
        if self._model.input.dtype.kind not in "iuf":
            raise SkinlesionError(f"{self._path}: unsupported input dtype {self._model.input.dtype}")

    def _takes_pixels_as_they_are(self) -> bool:
        """Whether uint8 pixels can be copied into the input unchanged.

        A uint8 input whose quantization (real = scale * (q - zero_point)) equals the card's normalization
        ((pixel - mean) / std) takes the pixels as they are, as MediaPipe feeds them. When the two disagree,
        pixels are normalized and re-quantized so this runtime still computes the right thing.
        """
        info = self._model.input
        if info.dtype != np.uint8:
            return False
        if self.card is None or not info.quantized:
            return True
        spec = self._spec
        matches = all(abs(info.scale * s - 1.0) < 0.01 for s in spec.std) and all(
            abs(info.zero_point - m) <= 1.0 for m in spec.mean
        )
        if not matches:
            log.warning(
                "%s: uint8 input quantization (scale %.6g, zero point %d) does not match the card's "
                "normalization (mean %s, std %s); normalizing and re-quantizing pixels (MediaPipe, "
                "which feeds raw pixels, will disagree with this model)",
                self._path,
                info.scale,
                info.zero_point,
                spec.mean,
                spec.std,
            )
        return matches


def runtime_temperature(card: ModelCard) -> float:
    """The temperature this runtime still has to apply to a bundle's outputs: 1.0 when the card says the
    export folded it into the graph (``training.calibration.in_graph``), the card's temperature for
    bundles exported before that (their files return the uncalibrated softmax)."""
    calibration = card.training.get("calibration") or {}
    return 1.0 if calibration.get("in_graph") else float(card.temperature)


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrates softmax outputs (one vector or a batch): p ∝ exp(log(p + 1e-7) / T) over the last axis."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = np.log(np.clip(probabilities, 0.0, None) + LOG_EPSILON) / temperature
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def tta_views(pixels: np.ndarray) -> list[np.ndarray]:
    """The test-time-augmentation views of HxWx3 pixels: the dihedral group for square images (8 views),
    identity, both flips and the 180-degree rotation otherwise (4 views)."""
    if pixels.shape[0] == pixels.shape[1]:
        rotations = [np.rot90(pixels, k) for k in range(4)]
        return [np.ascontiguousarray(v) for r in rotations for v in (r, r[:, ::-1])]
    return [np.ascontiguousarray(v) for v in (pixels, pixels[:, ::-1], pixels[::-1], pixels[::-1, ::-1])]


def _check_model_file(path: Path, backend: str) -> None:
    if not path.exists():
        raise SkinlesionError(f"{path} not found: pass a bundle folder or a model file")
    expected = (".tflite",) if backend == "tflite" else KERAS_SUFFIXES
    if path.suffix.lower() not in expected:
        raise SkinlesionError(
            f"{path}: backend={backend!r} runs {' or '.join(expected)} files; pass a "
            "bundle folder, a matching file, or the other backend"
        )


class _KerasRuntime:
    name = "tf_keras"


class _KerasModel:
    """A float Keras model behind the same small interface as :class:`TFLiteModel`.

    TensorFlow is imported here and only here, so the TFLite path never loads it.
    """

    runtime = _KerasRuntime()

    def __init__(self, path: Path, *, views: int = 1) -> None:
        import tf_keras  # noqa: PLC0415 - lazy: a Raspberry Pi has no TensorFlow

        try:
            self._model = tf_keras.models.load_model(str(path), compile=False)
        except (OSError, ValueError, TypeError) as error:
            raise SkinlesionError(f"{path}: tf_keras cannot load this model ({error})") from error
        shape = tuple(int(d) if d is not None else 1 for d in self._model.input_shape)
        self.input = TensorInfo(shape=shape, dtype=np.dtype(np.float32))
        self.output = TensorInfo(shape=(1, int(self._model.output_shape[-1])), dtype=np.dtype(np.float32))
        self._lock = threading.Lock()
        self._views = views

    def run(self, tensor: np.ndarray) -> np.ndarray:
        # The bundle's files average their scores over mirror images in their graph; so does the reference.
        batch = np.concatenate(dihedral_views(tensor, self._views)) if self._views > 1 else tensor
        with self._lock:
            scores = np.asarray(self._model(batch, training=False))
        return scores.reshape(self._views, len(tensor), -1).mean(axis=0)
