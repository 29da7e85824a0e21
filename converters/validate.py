"""Does a TFLite file still behave like the float model it came from? Measure, then gate.

    >>> report = validate_tflite("model_int8.tflite", "reference.keras", pixels, labels, input_spec=spec)
    >>> failures = check_gate(report, ParityGate.for_variant(report.variant))
    >>> if failures: ...  # write the report, exit non-zero, do not publish

``pixels`` are uint8 images from :func:`edge.preprocess.load_image` (e.g. the validation split's cache).
The TFLite file sees them as a device does: quantized with its input tensor's scale and zero point for
integer inputs, normalized with the :class:`InputSpec` for float inputs; integer outputs are dequantized.
Each variant's default gate is a column of its row in :data:`edge.variants.VARIANTS`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from converters.temperature import temperature_folded
from edge.accuracy import balanced_accuracy
from edge.interpreter import TensorInfo, dequantize, open_interpreter, quantize, tensor_info
from edge.preprocess import InputSpec, normalize
from edge.progress import Progress
from edge.variants import ParityGate, from_file_name, names, variant as variant_row

log = logging.getLogger(__name__)

BATCH_SIZE = 32
EPSILON = 1e-7  # keeps KL finite where an int8 output rounds a probability to exactly 0


@dataclass(frozen=True)
class ParityReport:
    """How closely a TFLite file follows its float reference on the same images.

    Attributes:
        variant: The TFLite variant (``int8``, ``float16``, ...).
        model: File name of the TFLite file that was checked (no folder: reports travel in bundles).
        n: Number of images.
        top1_agreement: Fraction of images where both models rank the same class first.
        max_abs_diff: Largest absolute difference of any class probability.
        mean_abs_diff: Mean absolute difference over all images and classes.
        mean_kl: Mean KL divergence KL(reference || tflite), in nats.
        balanced_accuracy_reference: Mean per-class recall of the float model.
        balanced_accuracy_tflite: Mean per-class recall of the TFLite file.
        balanced_accuracy_delta: ``balanced_accuracy_tflite - balanced_accuracy_reference``.
        input_dtype: dtype of the TFLite input tensor.
        output_dtype: dtype of the TFLite output tensor.
        seconds: Time the TFLite file took on the images (single process, batched).
    """

    variant: str
    model: str
    n: int
    top1_agreement: float
    max_abs_diff: float
    mean_abs_diff: float
    mean_kl: float
    balanced_accuracy_reference: float
    balanced_accuracy_tflite: float
    balanced_accuracy_delta: float
    input_dtype: str
    output_dtype: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ParityReport":
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


def top1_agreement(reference_probs: np.ndarray, tflite_probs: np.ndarray) -> float:
    """Share of images on which the file scores the reference's top class highest.

    An int8 output holds 256 levels: classes the file scores equally (within one step) are
    indistinguishable in it, so the file agrees when the reference's top class is among its tied best.
    Without the rule, a nearly uniform output (an untrained model, or a high temperature) "disagrees" on
    every image because argmax breaks the tie by class order.
    """
    top = reference_probs.argmax(axis=1)
    return float(np.mean(tflite_probs[np.arange(len(top)), top] >= tflite_probs.max(axis=1)))


def validate_tflite(
    tflite_path: str | os.PathLike,
    reference_model: Any,
    images_uint8: Any,
    labels_true: Sequence[int],
    *,
    input_spec: InputSpec,
    variant: str | None = None,
    batch_size: int = BATCH_SIZE,
    temperature: float = 1.0,
    views: int = 1,
) -> ParityReport:
    """Runs a TFLite file and its float reference on the same images and compares their outputs.

    Args:
        tflite_path: The exported file.
        reference_model: The float tf_keras model, or a path to its ``.keras``/``.h5`` file.
        images_uint8: uint8 pixels of shape (N, H, W, 3) or a sequence of (H, W, 3) arrays.
        labels_true: True class index of each image, for balanced accuracy.
        input_spec: The models' input size and normalization.
        variant: The TFLite variant; when None it is read from a ``model_<variant>.tflite`` file name.
        batch_size: Images per interpreter call.
        temperature: The temperature the file was exported with (folded into its graph); the same is
            folded into the reference for the comparison, so calibrated files are gated like the rest.
        views: The test-time views the file averages over (``converters.views``); the reference averages
            the same views.

    Raises:
        ValueError: Images are not uint8 (N, H, W, 3) of the spec's size, labels do not match the
            images, the variant is unknown, or the two models disagree on the number of classes.
    """
    from converters.export import load_keras_model
    from converters.views import with_views

    path = Path(tflite_path)
    variant = variant or _variant_from_name(path)
    if variant not in names():
        raise ValueError(f"unknown variant {variant!r} for {path}; expected one of {', '.join(names())}")
    pixels = _check_images(images_uint8, input_spec)
    labels = np.asarray(labels_true)
    if labels.shape != (len(pixels),) or labels.dtype.kind not in "iu":
        raise ValueError(
            f"labels_true must be {len(pixels)} integer class indices (one per image), "
            f"got {labels.dtype} {labels.shape}"
        )
    model = load_keras_model(reference_model)
    reference = with_views(model, views)  # shares the model's layers, and so the folded temperature

    started = time.perf_counter()
    tflite_probs, io_types = run_tflite(path, pixels, input_spec, batch_size=batch_size)
    seconds = time.perf_counter() - started
    with temperature_folded(model, temperature):
        reference_probs = np.concatenate(
            [
                np.asarray(reference(normalize(pixels[i : i + batch_size], input_spec), training=False))
                for i in range(0, len(pixels), batch_size)
            ]
        )
    if reference_probs.shape != tflite_probs.shape:
        raise ValueError(
            f"{path} outputs {tflite_probs.shape[1]} classes but the reference model outputs "
            f"{reference_probs.shape[1]}; were they exported from the same model?"
        )
    num_classes = reference_probs.shape[1]
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels_true must lie in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")

    difference = np.abs(reference_probs - tflite_probs)
    p = np.clip(reference_probs, EPSILON, 1.0)
    q = np.clip(tflite_probs, EPSILON, 1.0)
    bacc_reference = balanced_accuracy(labels, reference_probs.argmax(1))
    bacc_tflite = balanced_accuracy(labels, tflite_probs.argmax(1))
    report = ParityReport(
        variant=variant,
        model=path.name,
        n=len(pixels),
        top1_agreement=top1_agreement(reference_probs, tflite_probs),
        max_abs_diff=float(difference.max()),
        mean_abs_diff=float(difference.mean()),
        mean_kl=float(np.mean(np.sum(p * np.log(p / q), axis=1))),
        balanced_accuracy_reference=bacc_reference,
        balanced_accuracy_tflite=bacc_tflite,
        balanced_accuracy_delta=bacc_tflite - bacc_reference,
        input_dtype=io_types[0],
        output_dtype=io_types[1],
        seconds=seconds,
    )
    log.info(
        "validated %s on %d images: top-1 agreement %.4f, max |dp| %.4f, mean KL %.2e, balanced "
        "accuracy %.4f vs %.4f",
        path.name,
        report.n,
        report.top1_agreement,
        report.max_abs_diff,
        report.mean_kl,
        bacc_tflite,
        bacc_reference,
    )
    return report


def check_gate(report: ParityReport, gate: ParityGate) -> list[str]:
    """Every threshold ``report`` misses, as one sentence each; an empty list means publish."""
    failures = []
    if report.n == 0:
        failures.append(f"{report.variant}: validated on 0 images; nothing was measured")
    if report.top1_agreement < gate.min_top1_agreement:
        failures.append(
            f"{report.variant}: top-1 agreement {report.top1_agreement:.2%} is below "
            f"{gate.min_top1_agreement:.2%} ({report.model}, n={report.n})"
        )
    drop_points = -100.0 * report.balanced_accuracy_delta
    if drop_points > gate.max_balanced_accuracy_drop:
        failures.append(
            f"{report.variant}: balanced accuracy drops {drop_points:.2f} points "
            f"({report.balanced_accuracy_reference:.2%} -> "
            f"{report.balanced_accuracy_tflite:.2%}), "
            f"more than {gate.max_balanced_accuracy_drop:.2f}"
        )
    if gate.max_mean_kl is not None and report.mean_kl > gate.max_mean_kl:
        failures.append(
            f"{report.variant}: mean KL divergence {report.mean_kl:.2e} is above {gate.max_mean_kl:.2e}"
        )
    return failures


def run_tflite(
    path: Path, pixels: np.ndarray, spec: InputSpec, *, batch_size: int = BATCH_SIZE, output: int = 0
) -> tuple[np.ndarray, tuple[str, str]]:
    """Class probabilities of a TFLite file on uint8 pixels, plus its (input, output) dtypes; with
    ``output=1`` the abstain head's scores instead (the exporter puts the class scores first).

    Integer inputs get the normalized pixels quantized with the tensor's own scale and zero point,
    integer outputs are dequantized, so every variant is compared in probability space.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"TFLite model not found: {path}")
    interpreter = open_interpreter(path)
    outputs = interpreter.get_output_details()
    if output >= len(outputs):
        raise ValueError(f"{path} has {len(outputs)} output(s); it has no output {output}")
    source, target = interpreter.get_input_details()[0], outputs[output]
    source_info, target_info = tensor_info(source), tensor_info(target)
    batch = max(1, min(batch_size, len(pixels)))
    interpreter.resize_tensor_input(source["index"], [batch, spec.height, spec.width, 3])
    interpreter.allocate_tensors()
    outputs = []
    progress = Progress(f"checking {Path(path).name}", len(pixels))
    for start in range(0, len(pixels), batch):
        chunk = pixels[start : start + batch]
        padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])  # fixed shape
        interpreter.set_tensor(source["index"], _to_input(padded, spec, source_info))
        interpreter.invoke()
        scores = dequantize(interpreter.get_tensor(target["index"]), target_info).astype(np.float32)
        outputs.append(scores[: len(chunk)])
        progress.update(start + len(chunk))
    progress.close()
    num_classes = int(target["shape"][-1])
    probabilities = np.concatenate(outputs) if outputs else np.zeros((0, num_classes), np.float32)
    return probabilities, (source_info.dtype.name, target_info.dtype.name)


def _to_input(pixels: np.ndarray, spec: InputSpec, info: TensorInfo) -> np.ndarray:
    values = normalize(pixels, spec)
    return values if info.dtype == np.float32 else quantize(values, info)


def _check_images(images: Any, spec: InputSpec) -> np.ndarray:
    pixels = np.asarray(images) if not isinstance(images, np.ndarray) else images
    expected = (spec.height, spec.width, 3)
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != expected:
        raise ValueError(
            f"images must be uint8 of shape (N, {expected[0]}, {expected[1]}, 3) from "
            f"edge.preprocess.load_image, got {pixels.dtype} {pixels.shape}"
        )
    return pixels


def _variant_from_name(path: Path) -> str:
    found = from_file_name(path.name)
    if found is None:
        raise ValueError(
            f"cannot tell the variant of {path.name}; pass variant= one of {', '.join(names())}, "
            f"or name the file as its row does ({variant_row(names()[0]).file})"
        )
    return found
