"""Folding the calibration temperature into a model's head, so exported files return calibrated scores.

Temperature scaling divides the logits by T before the softmax. The head's last Dense layer computes the
logits, so dividing its kernel and bias by T does the same inside the graph: MediaPipe Tasks and LiteRT
then return ``softmax(logits / T)`` with no code on the phone. For a quantization-aware model the
Dense layer's learned ranges (kernel, logits) are divided too, so the fake-quant nodes keep the very
same integer grid and the int8 file stays full-integer.

    >>> with temperature_folded(model, 0.85):
    ...     flatbuffer = converter.convert()      # the caller's model is unchanged afterwards
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

# Quantizer variables of tfmot's Dense wrapper that are in logit units and scale with the logits:
# the kernel range, and the range of the Dense output (before a softmax inside the layer, or the
# layer output when its activation is linear).
_KERNEL_RANGES = ("kernel_min", "kernel_max")
_LOGIT_RANGES_SOFTMAX_INSIDE = ("pre_activation_min", "pre_activation_max")
_LOGIT_RANGES_LINEAR = ("post_activation_min", "post_activation_max")


def logits_layer(model: Any) -> Any:
    """The layer that computes the logits the model's output softmax reads (a QAT wrapper stays wrapped).

    Either the output layer itself (a Dense with ``activation="softmax"``) or the Dense layer feeding the
    output Softmax layer.

    Raises:
        ValueError: The output is not a softmax over a Dense layer's logits.
    """
    output = _unwrapped(_producer(model, model.outputs[0]))
    if _activation_name(output) == "softmax" and _is_dense(output):
        return _producer(model, model.outputs[0])
    if type(output).__name__ == "Softmax" or _activation_name(output) == "softmax":
        source = _producer(model, _producer(model, model.outputs[0]).input)
        if _is_dense(_unwrapped(source)) and _activation_name(_unwrapped(source)) == "linear":
            return source
    raise ValueError(
        f"model {model.name!r}: its output is not a softmax over a Dense layer's logits "
        f"(output layer {output.name!r}, {type(output).__name__}); the temperature cannot "
        "be folded into it"
    )


@contextlib.contextmanager
def temperature_folded(model: Any, temperature: float) -> Iterator[Any]:
    """Divides the head's logits by ``temperature`` inside ``model`` while the block runs, then restores it.

    Args:
        model: A float or QAT tf_keras model whose output is a softmax over a Dense layer (see
            :func:`logits_layer`).
        temperature: The calibration temperature (> 0); 1.0 changes nothing.

    Raises:
        ValueError: ``temperature`` is not a positive finite number, or the model has no foldable head.
    """
    if not (isinstance(temperature, (int, float)) and 0 < temperature < float("inf")):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    if temperature == 1.0:
        yield model
        return
    layer = logits_layer(model)
    # By variable name: inside a QAT wrapper ``dense.kernel`` is the fake-quantized tensor, not the variable.
    names = (
        "kernel",
        "bias",
        *_KERNEL_RANGES,
        *(
            _LOGIT_RANGES_SOFTMAX_INSIDE
            if _activation_name(_unwrapped(layer)) == "softmax"
            else _LOGIT_RANGES_LINEAR
        ),
    )
    scaled = [w for w in layer.weights if _short_name(w) in names]
    saved = [(variable, variable.numpy()) for variable in scaled]
    try:
        for variable, value in saved:
            variable.assign(value / temperature)
        yield model
    finally:
        for variable, value in saved:
            variable.assign(value)


def _producer(model: Any, tensor: Any) -> Any:
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        raise ValueError(f"model {model.name!r}: cannot trace tensor {tensor} to its layer")
    return history.layer


def _unwrapped(layer: Any) -> Any:
    return getattr(layer, "layer", layer)  # tfmot's QuantizeWrapper keeps the float layer in .layer


def _is_dense(layer: Any) -> bool:
    return type(layer).__name__ == "Dense"


def _activation_name(layer: Any) -> str:
    activation = getattr(layer, "activation", None)
    # A QAT wrapper swaps the activation for a QuantizeAwareActivation that holds the original.
    activation = getattr(activation, "activation", activation)
    return getattr(activation, "__name__", "") if activation is not None else ""


def _short_name(variable: Any) -> str:
    return variable.name.split("/")[-1].split(":")[0]
