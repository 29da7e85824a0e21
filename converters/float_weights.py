"""Float Keras weights read back from a float TFLite file converted from the same architecture.

This lets a build continue from a released bundle whose run folder is gone. The converter folds every
BatchNormalization into the convolution before it, so each such BatchNormalization comes back as an
identity that only adds the folded bias: the model computes what the file computes, but its BatchNorm
layers must stay frozen while it trains (batch statistics would replace the identity).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.interpreter import open_interpreter

# TFLite weight layouts -> Keras: conv OHWI -> HWIO, depthwise 1HWC -> HWC1, dense (out, in) -> (in, out).
KERNEL_AXES = {"CONV_2D": (1, 2, 3, 0), "DEPTHWISE_CONV_2D": (1, 2, 3, 0), "FULLY_CONNECTED": (1, 0)}


def load_float_tflite_weights(model, path: Path) -> int:
    """Sets every weighted layer of ``model`` from the float32 or float16 TFLite file ``path``.

    Returns:
        The number of Conv2D, DepthwiseConv2D and Dense layers set.

    Raises:
        ValueError: the file holds quantized weights, or it was not converted from this architecture.
    """
    interpreter = open_interpreter(path)
    interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    # float16 files store float16 constants and turn them into float32 with a DEQUANTIZE op.
    ops = interpreter._get_ops_details()  # the public API has no operator list
    float16_source = {op["outputs"][0]: op["inputs"][0] for op in ops if op["op_name"] == "DEQUANTIZE"}

    def constant(index: int) -> np.ndarray:
        source = float16_source.get(index, index)
        if tensors[source]["dtype"] not in (np.float32, np.float16):
            raise ValueError(
                f"{path} holds {np.dtype(tensors[source]['dtype']).name} weights; continue from "
                "the bundle's float16 or float32 file, not a quantized one"
            )
        return interpreter.get_tensor(source).astype(np.float32)

    batchnorm_after = _batchnorm_after(model)
    done: set[str] = set()
    for op in ops:
        if op["op_name"] not in KERNEL_AXES:
            continue
        kernel_index, bias_index = op["inputs"][1], op["inputs"][2]
        layer = _layer_of(model, tensors[float16_source.get(kernel_index, kernel_index)]["name"], path)
        kernel = constant(kernel_index).transpose(KERNEL_AXES[op["op_name"]])
        bias = constant(bias_index) if bias_index >= 0 else np.zeros(kernel.shape[-1], np.float32)
        expected = tuple(layer.get_weights()[0].shape)  # DepthwiseConv2D calls it depthwise_kernel
        if kernel.shape != expected:
            raise ValueError(
                f"{path}: {layer.name} has a {kernel.shape} kernel, the model {expected}; "
                "the file was converted from a different model"
            )
        batchnorm = batchnorm_after.get(layer.name)
        if batchnorm is None:
            layer.set_weights([kernel, bias] if layer.use_bias else [kernel])
        else:
            layer.set_weights([kernel, np.zeros_like(bias)] if layer.use_bias else [kernel])
            _set_identity(batchnorm, bias)
            done.add(batchnorm.name)
        done.add(layer.name)
    missing = [layer.name for layer in model.layers if layer.weights and layer.name not in done]
    if missing:
        raise ValueError(
            f"{path} has no weights for {', '.join(missing[:5])}"
            f"{' …' if len(missing) > 5 else ''}; it was converted from a different model"
        )
    return sum(1 for op in ops if op["op_name"] in KERNEL_AXES)


def _layer_of(model, tensor_name: str, path: Path):
    """The Conv2D/DepthwiseConv2D/Dense layer a converted weight tensor came from: the converter names
    tensors after the ops that use them (``model/block_1_project/Conv2D;model/block_1_project_BN/...``)."""
    from models.keras import keras

    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    weighted = {layer.name for layer in model.layers if isinstance(layer, kinds)}
    segments = {segment for part in tensor_name.split(";") for segment in part.split("/")}
    names = sorted(segments & weighted)
    if len(names) != 1:
        raise ValueError(
            f"{path}: cannot tell which layer the tensor {tensor_name!r} belongs to "
            f"(matches {names or 'none'}); the file was converted from a different model"
        )
    return model.get_layer(names[0])


def _batchnorm_after(model) -> dict[str, object]:
    """Layer name -> the BatchNormalization that reads that layer's output, for layers followed by one."""
    from models.keras import keras

    producers = {id(layer.output): layer.name for layer in model.layers}
    return {
        producers[id(layer.input)]: layer
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization) and id(layer.input) in producers
    }


def _set_identity(batchnorm, bias: np.ndarray) -> None:
    """Makes ``batchnorm`` (in inference mode) add ``bias`` and nothing else."""
    if not (batchnorm.scale and batchnorm.center):
        raise ValueError(
            f"{batchnorm.name}: a BatchNormalization without scale and offset cannot hold a folded bias"
        )
    ones = np.ones_like(bias)
    batchnorm.set_weights([ones, bias, np.zeros_like(bias), ones - batchnorm.epsilon])
