"""A QAT int8 file's uint8 input hands the network each pixel at the level the QAT model trained on.

With the default normalization, pixel ``p`` becomes ``(p - 127.5) / 127.5``: exactly halfway between two
levels of the QAT input quantizer (256 levels, zero on a level). TensorFlow's fake quantization rounds
the half up, so the QAT model trained on level ``p - 127``; the converter gives the uint8 input zero
point 128, so the int8 file feeds the network level ``p - 128``: every pixel one step darker than in
training. One input step is small, but MobileNetV2's coarse bottleneck ranges amplify it: on release 2's
QAT model and its int8 file, 1,000 validation images, top-1 agreement 0.949 as converted and 0.970 with
the zero points below (mean |probability difference| 0.0119 -> 0.0073). The file still takes raw pixels,
as MediaPipe feeds them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edge.preprocess import InputSpec, normalize

log = logging.getLogger(__name__)

PIXELS = np.arange(256, dtype=np.uint8)


def pinned_input_range(spec: InputSpec) -> tuple[float, float]:
    """The input quantizer's range that covers every normalized pixel value, over all channels."""
    channels = list(zip(spec.mean, spec.std))
    return (
        float(min((0.0 - mean) / std for mean, std in channels)),
        float(max((255.0 - mean) / std for mean, std in channels)),
    )


def qat_input_values(spec: InputSpec) -> np.ndarray:
    """What a QAT model's input quantizer, pinned to :func:`pinned_input_range`, makes of each pixel
    value: float32 of shape (3, 256), one row per channel."""
    from models.keras import tf

    low, high = pinned_input_range(spec)
    pixels = np.repeat(PIXELS[:, None], 3, axis=1)
    values = tf.quantization.fake_quant_with_min_max_vars(
        normalize(pixels, spec), min=low, max=high, num_bits=8, narrow_range=False
    )
    return np.asarray(values).T


def matching_zero_points(spec: InputSpec, scale: float) -> tuple[int, int] | None:
    """The zero points of the uint8 input and of the int8 tensor it is quantized into with which the
    file hands the network, for every pixel value and channel, the level the QAT model trained on;
    None when no pair does (per-channel normalizations that differ).

    TensorFlow nudges the range [-1, 1] to the levels -127..128 (zero point 127 on its 0..255 scale);
    the converter's int8 tensor holds -128..127, so without moving its zero point a white pixel lands
    one level low.
    """
    expected = np.round(qat_input_values(spec) / scale).astype(int)
    lowest = int(np.round(float(qat_input_values_at(spec, -np.inf)) / scale))
    int8_zero_point = -128 - lowest
    for input_zero_point in np.unique(PIXELS - expected):
        levels = np.clip(PIXELS.astype(int) - input_zero_point + int8_zero_point, -128, 127) - int8_zero_point
        if np.array_equal(np.broadcast_to(levels, expected.shape), expected) and 0 <= input_zero_point <= 255:
            return int(input_zero_point), int8_zero_point
    return None


def qat_input_values_at(spec: InputSpec, value: float) -> float:
    """What the pinned input quantizer makes of one normalized value (its nudged bounds, for +-inf)."""
    from models.keras import tf

    low, high = pinned_input_range(spec)
    clipped = np.float32(np.clip(value, -1e6, 1e6))
    return float(tf.quantization.fake_quant_with_min_max_vars(clipped, min=low, max=high, num_bits=8))


def with_qat_input_rounding(flatbuffer: bytes, spec: InputSpec) -> bytes:
    """``flatbuffer`` (an int8 file converted from a QAT model) with the zero points of its uint8 input
    and of the int8 tensor the first op quantizes it into set to :func:`matching_zero_points`. Files
    with another input, or whose input already matches, are returned unchanged."""
    from converters.metadata import _schemas

    flatbuffers, _, schema_fb = _schemas()
    tflite = schema_fb.ModelT.InitFromObj(schema_fb.Model.GetRootAsModel(flatbuffer, 0))
    graph = tflite.subgraphs[0]
    source = graph.tensors[graph.inputs[0]]
    codes = [max(code.builtinCode, code.deprecatedBuiltinCode) for code in tflite.operatorCodes]
    quantize = [
        op
        for op in graph.operators
        if codes[op.opcodeIndex] == schema_fb.BuiltinOperator.QUANTIZE and op.inputs[0] == graph.inputs[0]
    ]
    if source.type != schema_fb.TensorType.UINT8 or len(quantize) != 1:
        return flatbuffer
    target = graph.tensors[quantize[0].outputs[0]]
    (scale,), (target_scale,) = source.quantization.scale, target.quantization.scale
    found = matching_zero_points(spec, float(scale)) if np.isclose(scale, target_scale, rtol=1e-6) else None
    if found is None:
        log.warning(
            "no zero points reproduce the QAT model's input levels (mean %s, std %s, input scale %.6g, "
            "int8 scale %.6g); the input is left as converted",
            spec.mean,
            spec.std,
            scale,
            target_scale,
        )
        return flatbuffer
    now = (int(source.quantization.zeroPoint[0]), int(target.quantization.zeroPoint[0]))
    if found == now:
        return flatbuffer
    log.info("input zero points %s -> %s: pixels reach the network at the QAT model's levels", now, found)
    source.quantization.zeroPoint, target.quantization.zeroPoint = [found[0]], [found[1]]
    _follow_zero_point(graph, codes, schema_fb, quantize[0].outputs[0], now[1], found[1])
    builder = flatbuffers.Builder(0)
    builder.Finish(tflite.Pack(builder), b"TFL3")
    return bytes(builder.Output())


# Ops that move int8 values without arithmetic: their output shares the input's scale and zero point
# (the test-time views mirror and batch the quantized input before the first convolution).
_SAME_SCALE_OPS = ("REVERSE_V2", "TRANSPOSE", "CONCATENATION", "RESHAPE")


def _follow_zero_point(graph: Any, codes: list[int], schema_fb: Any, start: int, old: int, new: int) -> None:
    """Moves the zero point of the tensors that ops in ``_SAME_SCALE_OPS`` copy from tensor ``start`` along
    with it, so every view of the input reaches the network at the same levels."""
    same_scale = {getattr(schema_fb.BuiltinOperator, name) for name in _SAME_SCALE_OPS}
    moved = {start}
    scale = graph.tensors[start].quantization.scale[0]
    for op in graph.operators:  # in execution order: a copy of a copy is reached
        if codes[op.opcodeIndex] not in same_scale or not moved.intersection(op.inputs):
            continue
        for index in op.outputs:
            quantization = graph.tensors[index].quantization
            if (
                quantization is not None
                and quantization.scale is not None
                and len(quantization.scale) == 1
                and np.isclose(quantization.scale[0], scale, rtol=1e-6)
                and int(quantization.zeroPoint[0]) == old
            ):
                quantization.zeroPoint = [new]
                moved.add(index)
