"""The quantization-aware training scheme: tfmot's default 8-bit scheme with per-channel depthwise kernels.

tfmot 0.8.1 quantizes convolution kernels per channel along their last axis. A DepthwiseConv2D kernel is
(height, width, channels, multiplier), so its last axis is the multiplier (1 in MobileNetV2) and every
depthwise layer ends up with a single range for all of its channels. After the converter folds
BatchNorm into those kernels, channels with small weights keep only a few of their 127 levels a side (measured
on the v2 release: the first depthwise layer's median channel used 36 of 127, a tenth of them 7 or
fewer). TFLite itself quantizes depthwise kernels per channel, so training under the same rounding
costs nothing at run time.
"""

from __future__ import annotations

from models.keras import keras, tf  # first: it selects Keras 2 before tfmot imports TensorFlow

from tensorflow_model_optimization.python.core.quantization.keras import quantizers  # noqa: E402
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: E402
    default_8bit_quantize_registry as registry,
    default_8bit_quantize_scheme as scheme,
)


class DepthwisePerChannelQuantizer(quantizers.LastValueQuantizer):
    """Symmetric int8 per output channel of a depthwise kernel, the grid TFLite's DEPTHWISE_CONV_2D uses."""

    def __init__(self, **saved_config):
        # A saved model passes back LastValueQuantizer's config; this quantizer has only one setting.
        super().__init__(num_bits=8, per_axis=True, symmetric=True, narrow_range=True)

    def build(self, tensor_shape, name, layer):
        channels = int(tensor_shape[2]) * int(tensor_shape[3])
        return {
            "min_var": layer.add_weight(
                name + "_min",
                shape=(channels,),
                trainable=False,
                initializer=keras.initializers.Constant(-6.0),
            ),
            "max_var": layer.add_weight(
                name + "_max",
                shape=(channels,),
                trainable=False,
                initializer=keras.initializers.Constant(6.0),
            ),
        }

    def __call__(self, inputs, training, weights, **kwargs):
        # Output channel c * multiplier + m moved to the last axis, where the quantizer looks for it.
        height, width, channels, multiplier = inputs.shape
        flat = tf.reshape(inputs, (height, width, 1, channels * multiplier))
        return tf.reshape(super().__call__(flat, training, weights, **kwargs), tf.shape(inputs))


class DepthwiseQuantizeConfig(registry.Default8BitConvQuantizeConfig):
    """tfmot's convolution config with :class:`DepthwisePerChannelQuantizer` for the kernel."""

    def __init__(
        self, weight_attrs=("depthwise_kernel",), activation_attrs=("activation",), quantize_output=False
    ):
        super().__init__(list(weight_attrs), list(activation_attrs), quantize_output)
        self.weight_quantizer = DepthwisePerChannelQuantizer()


class _Registry(registry.Default8BitQuantizeRegistry):
    def __init__(self):
        super().__init__()
        self._layer_quantize_map[keras.layers.DepthwiseConv2D] = DepthwiseQuantizeConfig()


class PerChannelDepthwiseScheme(scheme.Default8BitQuantizeScheme):
    """The default 8-bit scheme (same layer transforms) with per-channel depthwise kernels."""

    def get_quantize_registry(self):
        return _Registry()


# Needed (inside tfmot's quantize_scope) to load a QAT model saved under this scheme.
CUSTOM_OBJECTS = {
    "DepthwiseQuantizeConfig": DepthwiseQuantizeConfig,
    "DepthwisePerChannelQuantizer": DepthwisePerChannelQuantizer,
}


def quantize_model(model):
    """``tfmot.quantization.keras.quantize_model`` under :class:`PerChannelDepthwiseScheme`."""
    import tensorflow_model_optimization as tfmot

    annotated = tfmot.quantization.keras.quantize_annotate_model(model)
    with tfmot.quantization.keras.quantize_scope(CUSTOM_OBJECTS):
        return tfmot.quantization.keras.quantize_apply(annotated, PerChannelDepthwiseScheme())
