"""The one Keras import: Keras 2 (``tf_keras``), because tensorflow-model-optimization supports no other.

Import Keras only from here::

    from models.keras import keras, tf
"""

import os

# Must be set before TensorFlow is first imported, or tf.keras resolves to Keras 3.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

__all__ = ["keras", "tf"]
