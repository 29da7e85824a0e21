"""tf_keras model -> a TFLite file with metadata, in one call per variant.

>>> result = export_tflite("runs/r1/qat.keras", "runs/r1/model_int8.tflite",
...                        QuantizationConfig.for_int8(None), input_spec=spec, labels=card.labels)
>>> result.bytes, result.seconds
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from converters.input_rounding import pinned_input_range, with_qat_input_rounding
from converters.metadata import add_metadata
from converters.quantization import QuantizationConfig
from converters.temperature import temperature_folded
from converters.views import check_views, with_views
from edge.interpreter import TensorInfo, dequantize, open_interpreter, tensor_info
from edge.preprocess import InputSpec
from edge.tasks import UNSTATED_LICENSE

if TYPE_CHECKING:
    from converters.abstain_head import AbstainHead

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    """One exported file.

    Attributes:
        variant: ``float32``, ``float16``, ``dynamic`` or ``int8``.
        path: The written .tflite file.
        bytes: Its size.
        seconds: Conversion plus writing time.
        input_dtype: dtype of the input tensor (``uint8``, ``int8`` or ``float32``).
        output_dtype: dtype of the output tensor.
        input_scale: Quantization scale of an integer input (0.0 for float inputs).
        input_zero_point: Quantization zero point of an integer input (0 for float inputs).
        float_tensors: Float32 tensors inside the graph besides its inputs and outputs; an int8 export
            with any left runs those ops in float (slower on NPUs, and not what was validated as int8).
        temperature: Calibration temperature folded into the graph (1.0: scores as trained).
        abstain_head: Whether the file carries the abstain head as its second output.
        views: Test-time views the file averages its scores over (``converters.views``; 1: none).
    """

    variant: str
    path: Path
    bytes: int
    seconds: float
    input_dtype: str
    output_dtype: str
    input_scale: float = 0.0
    input_zero_point: int = 0
    float_tensors: int = 0
    temperature: float = 1.0
    abstain_head: bool = False
    views: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "path": str(self.path),
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "input_dtype": self.input_dtype,
            "output_dtype": self.output_dtype,
            "input_scale": self.input_scale,
            "input_zero_point": self.input_zero_point,
            "float_tensors": self.float_tensors,
            "temperature": self.temperature,
            "abstain_head": self.abstain_head,
            "views": self.views,
        }


def load_keras_model(source: Any) -> Any:
    """A tf_keras model from a model object or a ``.keras``/``.h5`` path (QAT models included).

    Raises:
        FileNotFoundError: The path does not exist.
    """
    from models.keras import keras

    if isinstance(source, keras.Model):
        return source
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"Keras model not found: {path} (expected a .keras or .h5 file)")
    import tensorflow_model_optimization as tfmot

    from models.quantization import CUSTOM_OBJECTS

    # The scope registers the QAT wrapper layers and our depthwise quantizer; float models load the same
    # with or without it.
    with tfmot.quantization.keras.quantize_scope(CUSTOM_OBJECTS):
        try:
            return keras.models.load_model(path, compile=False)
        except ValueError as error:
            if "quantize" not in str(error) or path.suffix != ".keras":
                raise
            # tfmot 0.8.1 saves QAT layers to .keras files it cannot read back; HDF5 round-trips.
            raise ValueError(
                f"{path}: a QAT model saved as .keras cannot be loaded again by "
                f"tensorflow-model-optimization ({error}); save QAT models as .h5"
            ) from error


def is_qat_model(model: Any) -> bool:
    """Whether ``model`` came out of ``tfmot.quantization.keras.quantize_model`` (its ranges are learned)."""
    return any(type(layer).__name__.startswith("Quantize") for layer in model.layers)


def export_tflite(
    model: Any,
    path: str | os.PathLike,
    config: QuantizationConfig,
    *,
    input_spec: InputSpec,
    labels: Sequence[str],
    display_names: Sequence[str] | None = None,
    name: str = "skinlesion",
    version: str = "",
    description: str = "",
    license: str = UNSTATED_LICENSE,
    temperature: float = 1.0,
    abstain_head: "AbstainHead | None" = None,
    views: int = 1,
) -> ExportResult:
    """Converts a float or QAT tf_keras model to one TFLite variant, with metadata, written atomically.

    Args:
        model: A tf_keras model, or a path to a ``.keras``/``.h5`` file.
        path: Where to write the ``.tflite`` file; an existing file is replaced only on success.
        config: The variant, from a :class:`QuantizationConfig` factory.
        input_spec: The model's input size and normalization (also stored in the metadata).
        labels: Class codes in output order.
        display_names: Human names in output order, stored for MediaPipe's ``display_name``.
        name: Model name stored in the metadata.
        version: Model version stored in the metadata.
        description: One sentence stored in the metadata.
        license: License of the weights stored in the metadata.
        temperature: Calibration temperature folded into the head's logits (``converters.temperature``):
            the file returns ``softmax(logits / temperature)``. 1.0 exports the scores as trained.
        abstain_head: A fitted :class:`converters.abstain_head.AbstainHead` built into the file as a
            second output (``in_distribution``), described in the metadata as a second head; fit it on
            the model being exported (a QAT model's features differ from its float model's).
        views: Test-time views the file scores each image in and averages (``converters.views``): 1, 2, 4
            or 8 (8 for square inputs only); the file then costs ~``views`` times the arithmetic.

    Raises:
        ValueError: The model's input does not match ``input_spec``, its output size does not match
            ``labels``, an int8 export of a float model has no representative data, a QAT model is
            asked for a float variant, or ``views`` is not a count the input allows.
    """
    started = time.perf_counter()
    model = load_keras_model(model)
    path = Path(path)
    _check_model(model, config, input_spec, labels)
    check_views(views, input_spec)
    from models.keras import tf

    log.info(
        "exporting %s -> %s%s%s%s",
        config.variant,
        path,
        f", temperature {temperature:.4g} in the graph" if temperature != 1.0 else "",
        ", with the abstain head" if abstain_head is not None else "",
        f", {views} test-time views" if views > 1 else "",
    )
    graph = model
    if abstain_head is not None:
        from converters.abstain_head import with_abstain_head, with_quantization_aware_head

        graph = (with_quantization_aware_head if is_qat_model(model) else with_abstain_head)(
            model, abstain_head
        )
    graph = with_views(graph, views, quantized=is_qat_model(model))
    converter = tf.lite.TFLiteConverter.from_keras_model(graph)
    config.set_converter(converter, input_spec)
    # The graph shares the model's layers, so folding the temperature into the model folds it into the graph.
    with _qat_input_range_pinned(model, input_spec), temperature_folded(model, temperature):
        flatbuffer = converter.convert()
    if config.variant == "int8" and is_qat_model(model):
        flatbuffer = with_qat_input_rounding(flatbuffer, input_spec)
    if abstain_head is not None:
        from converters.abstain_head import pin_int8_ranges

        flatbuffer = pin_int8_ranges(flatbuffer)
    description = description or f"Image classifier, {len(labels)} classes ({config.variant})"
    data = add_metadata(
        flatbuffer,
        labels=labels,
        input_spec=input_spec,
        name=name,
        version=version,
        description=description,
        license=license,
        display_names=display_names,
        abstain_labels=abstain_head.labels if abstain_head is not None else None,
    )
    details = _io_details(data)
    write_atomic(path, data)
    result = ExportResult(
        variant=config.variant,
        path=path,
        bytes=len(data),
        seconds=time.perf_counter() - started,
        temperature=float(temperature),
        abstain_head=abstain_head is not None,
        views=views,
        **details,
    )
    _warn_if_pixels_are_not_input(result, input_spec)
    if config.variant == "int8" and result.float_tensors:
        log.warning(
            "%s: the int8 export kept %d float32 tensors; some ops were not quantized",
            path,
            result.float_tensors,
        )
    log.info(
        "exported %s: %s, %.2f MB, %s in / %s out, %.1f s",
        result.variant,
        path,
        result.bytes / 1e6,
        result.input_dtype,
        result.output_dtype,
        result.seconds,
    )
    return result


def write_atomic(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary sibling and a rename: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes files private; models and reports are meant to be shared
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _check_model(model: Any, config: QuantizationConfig, spec: InputSpec, labels: Sequence[str]) -> None:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"model {model.name!r} must have one image input and one output, "
            f"has {len(model.inputs)} and {len(model.outputs)}"
        )
    input_shape = tuple(model.inputs[0].shape[1:])
    if input_shape != (spec.height, spec.width, 3):
        raise ValueError(
            f"model {model.name!r} takes inputs of shape {input_shape}, but input_spec says "
            f"{(spec.height, spec.width, 3)}; pass the InputSpec the model was trained with"
        )
    outputs = model.outputs[0].shape[-1]
    if outputs != len(labels):
        raise ValueError(f"model {model.name!r} has {outputs} outputs but {len(labels)} labels were given")
    qat = is_qat_model(model)
    if qat and config.variant != "int8":
        raise ValueError(
            f"model {model.name!r} is a QAT model, which exports only as int8; export the float "
            f"model for the {config.variant} variant"
        )
    if config.variant == "int8" and not qat and config.representative_data is None:
        raise ValueError(
            f"int8 export of the float model {model.name!r} needs representative data: "
            "QuantizationConfig.for_int8(training_pixels)"
        )


@contextlib.contextmanager
def _qat_input_range_pinned(model: Any, spec: InputSpec) -> Iterator[None]:
    """Sets a QAT model's input quantization range to the full normalized pixel range while converting.

    QAT learns the input range from the training images, which may never contain a pure 0 or 255;
    pinned to ``normalize(0..255)`` the uint8 input takes camera pixels as they are, as MediaPipe feeds
    them. The learned values are put back afterwards: the caller's model is not changed.
    """
    pinned = []
    for layer in model.layers:
        if type(layer).__name__ == "QuantizeLayer" and any(layer.input is source for source in model.inputs):
            bounds = {w.name.split("/")[-1].split(":")[0]: w for w in layer.weights}
            low, high = bounds.get(f"{layer.name}_min"), bounds.get(f"{layer.name}_max")
            if low is None or high is None:
                log.warning("%s: no min/max variables found; input range left as trained", layer.name)
                continue
            pixel_low, pixel_high = pinned_input_range(spec)
            pinned.append((low, low.numpy(), pixel_low))
            pinned.append((high, high.numpy(), pixel_high))
    try:
        for variable, _, value in pinned:
            variable.assign(value)
        yield
    finally:
        for variable, learned, _ in pinned:
            variable.assign(learned)


def _io_details(data: bytes) -> dict[str, Any]:
    interpreter = open_interpreter(data)
    source, outputs = interpreter.get_input_details()[0], interpreter.get_output_details()
    source_info, target_info = tensor_info(source), tensor_info(outputs[0])
    io = {source["index"], *(details["index"] for details in outputs)}
    floats = sum(
        1
        for t in interpreter.get_tensor_details()
        if np.dtype(t["dtype"]) == np.float32 and t["index"] not in io
    )
    return {
        "input_dtype": source_info.dtype.name,
        "output_dtype": target_info.dtype.name,
        "input_scale": source_info.scale,
        "input_zero_point": source_info.zero_point,
        "float_tensors": floats,
    }


def _warn_if_pixels_are_not_input(result: ExportResult, spec: InputSpec) -> None:
    # MediaPipe (and a uint8 runtime) feed raw pixels to a uint8 input; that is only right when the
    # input quantization maps each pixel value p back to normalize(p) within a step.
    if result.input_dtype != "uint8":
        return
    pixels = np.arange(256, dtype=np.uint8)
    dequantized = dequantize(
        pixels, TensorInfo(pixels.shape, pixels.dtype, result.input_scale, result.input_zero_point)
    )
    expected = (pixels - np.float32(spec.mean[0])) / np.float32(spec.std[0])
    error_steps = float(np.max(np.abs(dequantized - expected)) / result.input_scale)
    if error_steps > 1.0:
        log.warning(
            "%s: uint8 input quantization (scale %.5f, zero point %d) is %.1f steps away from the "
            "raw pixels; runtimes that feed pixels unscaled (MediaPipe) will see shifted inputs. "
            "Calibrate with images covering the full 0..255 range.",
            result.path,
            result.input_scale,
            result.input_zero_point,
            error_steps,
        )
