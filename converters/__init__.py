"""Keras -> TFLite: quantization modes, export with metadata, parity validation, the bundle writer.

Modules: ``quantization`` (the modes), ``export`` (one call per variant), ``metadata`` (labels and
normalization inside the .tflite), ``validate`` (parity against the float model, and its gate),
``bundle`` (the atomic bundle writer). TensorFlow is imported only when a conversion runs.
"""
