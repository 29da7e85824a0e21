"""The one place that knows the quantization modes and how each one sets up a TFLite converter.

Pick a mode with a named factory, then hand the config to :func:`converters.export.export_tflite`::

    >>> QuantizationConfig.for_float16()
    >>> QuantizationConfig.for_int8(calibration_pixels)        # post-training, from a float model
    >>> QuantizationConfig.for_int8(None, io_type="uint8")      # from a QAT model: ranges are learned
    >>> for_variant("int8-ptq", calibration_pixels)            # by a row of edge.variants.VARIANTS

:data:`FACTORIES` maps each row's ``quantization`` to its factory; the rows themselves (names, files,
gates, order) are :data:`edge.variants.VARIANTS`.

Representative data is uint8 pixels produced by :func:`edge.preprocess.load_image` (the build reads them
from the training split's cache); they are normalized here with the model's :class:`InputSpec`, so
calibration sees exactly what training saw.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from edge.preprocess import InputSpec, normalize
from edge.variants import variant as variant_row

# Modes whose ranges come from calibration images, unless a quantization-aware model learned them.
CALIBRATED = ("int8",)
IO_TYPES = ("uint8", "int8", "float32")
# MediaPipe Tasks feeds a uint8 input tensor the camera pixels as they are and dequantizes a uint8
# output; both are what its ImageClassifier handles best (and what Model Maker exports).
DEFAULT_INT8_IO = "uint8"
DEFAULT_CALIBRATION_STEPS = 500


@dataclass(frozen=True)
class QuantizationConfig:
    """How a float or QAT tf_keras model becomes a TFLite file. Build one with a ``for_*`` factory.

    Attributes:
        variant: ``"float32"``, ``"float16"``, ``"dynamic"`` (int8 weights, float activations) or
            ``"int8"`` (full integer).
        io_type: dtype of the input and output tensors: ``"float32"`` for the float variants;
            ``"uint8"``, ``"int8"`` or ``"float32"`` for ``int8``.
        representative_data: uint8 H x W x 3 pixel arrays for post-training int8 calibration; None for
            the other variants and for QAT models (their ranges were learned in training).
        calibration_steps: At most this many representative images are used.
    """

    variant: str
    io_type: str = "float32"
    representative_data: Iterable[np.ndarray] | None = field(default=None, compare=False, repr=False)
    calibration_steps: int = DEFAULT_CALIBRATION_STEPS

    def __post_init__(self) -> None:
        if self.variant not in FACTORIES:
            raise ValueError(f"variant must be one of {tuple(FACTORIES)}, got {self.variant!r}")
        allowed = IO_TYPES if self.variant == "int8" else ("float32",)
        if self.io_type not in allowed:
            raise ValueError(f"io_type for {self.variant} must be one of {allowed}, got {self.io_type!r}")
        if self.calibration_steps < 1:
            raise ValueError(f"calibration_steps must be >= 1, got {self.calibration_steps}")
        if self.representative_data is not None and self.variant not in CALIBRATED:
            raise ValueError(
                f"representative_data is only used by the {', '.join(CALIBRATED)} variant, not {self.variant}"
            )

    @classmethod
    def for_float32(cls) -> "QuantizationConfig":
        """No quantization: the float reference as a TFLite file."""
        return cls(variant="float32")

    @classmethod
    def for_float16(cls) -> "QuantizationConfig":
        """float16 weights (half the size), float32 compute and I/O; GPU delegates run it natively."""
        return cls(variant="float16")

    @classmethod
    def for_dynamic(cls) -> "QuantizationConfig":
        """Dynamic-range quantization: int8 weights, activations quantized on the fly, float32 I/O."""
        return cls(variant="dynamic")

    @classmethod
    def for_int8(
        cls,
        representative_data: Iterable[np.ndarray] | None,
        *,
        io_type: str = DEFAULT_INT8_IO,
        calibration_steps: int = DEFAULT_CALIBRATION_STEPS,
    ) -> "QuantizationConfig":
        """Full-integer quantization.

        Args:
            representative_data: uint8 H x W x 3 pixels from the training split, used to calibrate a
                float model's ranges; None for a QAT model. A one-shot iterator is read once, here, so
                the config can be used for more than one export.
            io_type: ``"uint8"`` (default: raw camera pixels in, what MediaPipe Tasks expects),
                ``"int8"`` or ``"float32"`` (normalized floats in, probabilities out).
            calibration_steps: At most this many images are used for calibration.
        """
        if representative_data is not None and iter(representative_data) is representative_data:
            representative_data = tuple(itertools.islice(representative_data, calibration_steps))
        return cls(
            variant="int8",
            io_type=io_type,
            representative_data=representative_data,
            calibration_steps=calibration_steps,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable summary (the representative data is not stored)."""
        return {
            "variant": self.variant,
            "io_type": self.io_type,
            "calibrated": self.representative_data is not None,
            "calibration_steps": self.calibration_steps,
        }

    def set_converter(self, converter: Any, input_spec: InputSpec) -> None:
        """Configures a ``tf.lite.TFLiteConverter`` for this mode. The only code that does so.

        Args:
            converter: A converter made from the model to export.
            input_spec: The model's input size and normalization, used to normalize calibration pixels.
                Calibration images of another size or dtype, or none at all, raise ``ValueError``
                when the converter reads them.
        """
        from models.keras import tf

        if self.variant == "float32":
            converter.optimizations = []
            return
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if self.variant == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif self.variant == "int8":
            if self.representative_data is not None:
                # Integer-only ops: the converter fails loudly instead of leaving a float op behind.
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                converter.representative_dataset = lambda: self._calibration_batches(input_spec)
            # A QAT model carries its ranges in fake-quant nodes; the converter folds them into int8 ops
            # (and refuses TFLITE_BUILTINS_INT8 without calibration data, so it is not set then).
            converter.inference_input_type = getattr(tf, self.io_type)
            converter.inference_output_type = getattr(tf, self.io_type)

    def _calibration_batches(self, spec: InputSpec) -> Iterator[list[np.ndarray]]:
        count = 0
        for count, pixels in enumerate(itertools.islice(self.representative_data, self.calibration_steps), 1):
            pixels = np.asarray(pixels)
            if pixels.dtype != np.uint8 or pixels.shape != (spec.height, spec.width, 3):
                raise ValueError(
                    f"representative image {count - 1} must be uint8 of shape "
                    f"{(spec.height, spec.width, 3)} from edge.preprocess.load_image, got "
                    f"{pixels.dtype} {pixels.shape}"
                )
            if count == 1:
                # Pin the calibrated input range to the full 0..255 pixel range, so a uint8 input tensor
                # takes camera pixels as they are (MediaPipe feeds them unscaled).
                pixels = pixels.copy()
                pixels[0, 0], pixels[-1, -1] = 0, 255
            yield [normalize(pixels, spec)[None]]
        if count == 0:
            raise ValueError("representative_data is empty: int8 calibration needs training images")


# A quantization (the ``quantization`` of a row of edge.variants.VARIANTS) -> its factory, called with the
# calibration pixels of a mode in CALIBRATED.
FACTORIES: dict[str, Callable[..., QuantizationConfig]] = {
    "int8": QuantizationConfig.for_int8,
    "float16": QuantizationConfig.for_float16,
    "dynamic": QuantizationConfig.for_dynamic,
    "float32": QuantizationConfig.for_float32,
}


def needs_calibration(name: str) -> bool:
    """Whether the variant row ``name`` is written by a mode that calibrates (int8 from a float model)."""
    return variant_row(name).quantization in CALIBRATED


def for_variant(name: str, representative_data: Iterable[np.ndarray] | None = None) -> QuantizationConfig:
    """The quantization that writes the variant row ``name`` of :data:`edge.variants.VARIANTS`.

        >>> for_variant("float16")
        >>> for_variant("int8-qat")                  # QAT: the model carries its ranges
        >>> for_variant("int8-ptq", calibration)     # post-training: calibrated on training pixels

    Args:
        name: A row name (``int8``, ``float16``, ``int8-ptq``, ...).
        representative_data: Calibration pixels for a mode in :data:`CALIBRATED`; None for a QAT model.
            Ignored by the other modes.

    Raises:
        ValueError: ``name`` is no row of the variant table.
    """
    mode = variant_row(name).quantization
    factory = FACTORIES[mode]
    return factory(representative_data) if mode in CALIBRATED else factory()
