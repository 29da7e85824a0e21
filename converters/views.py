"""Test-time views inside the exported graph: the file scores an image and its mirror images and returns
the mean, so MediaPipe Tasks and LiteRT get the averaged scores with no code on the phone.

A dermatoscopic image has no up, down, left or right, and the model learned from flipped and rotated
crops; averaging its scores over mirror images of the photo (test-time augmentation, as ISIC entries
did) evens out what one orientation gets wrong. The views are the dihedral group's first ``views``
elements, taken as one batch through the network, so a file with 4 views costs ~4x the arithmetic of
one and not a byte more of weights::

    >>> graph = with_views(model, 4)      # identity, left-right, up-down, both: mean of the 4 scores
    >>> flatbuffer = tf.lite.TFLiteConverter.from_keras_model(graph).convert()

For a quantization-aware model the mean gets a fixed [0, 1] range, so the int8 file stays full-integer
with a uint8 output, as MediaPipe reads it.
"""

from __future__ import annotations

from typing import Any

# The counts and their order are the runtime's (edge.preprocess.dihedral_views): 1, the image alone; 2,
# and its left-right mirror; 4, and its up-down mirror and both; 8, and the same four of the transposed
# image (square inputs only: a transposed 4:3 image is another shape).
from edge.preprocess import VIEW_FLIPS, InputSpec, check_view_count


def check_views(views: int, spec: InputSpec) -> None:
    """Raises ValueError when ``views`` is not a count the graph can make for an input of ``spec``."""
    check_view_count(views)
    if views == 8 and spec.height != spec.width:
        raise ValueError(
            f"8 test-time views transpose the image, which needs a square input; this model's is "
            f"{spec.height}x{spec.width}: use 4 views"
        )


def view(images: Any, index: int) -> Any:
    """The ``index``-th dihedral view of a batch of NHWC images (a tf tensor or numpy array)."""
    from models.keras import tf

    if index >= 4:
        images = tf.transpose(images, [0, 2, 1, 3])
    axes = list(VIEW_FLIPS[index % 4])
    return tf.reverse(images, axes) if axes else images


def with_views(model: Any, views: int, *, quantized: bool = False) -> Any:
    """A Functional model that runs ``model`` on ``views`` views of each input image and returns the mean of
    each output over them; the outputs keep ``model``'s names and order. ``views`` = 1 returns ``model``.

    Args:
        model: A tf_keras model from images to scores (one output or several, e.g. with the abstain head).
        views: How many views, one of ``edge.preprocess.VIEW_COUNTS``.
        quantized: Give each mean a fixed [0, 1] fake-quantization range, for a QAT model's int8 file.
    """
    if views == 1:
        return model
    from models.keras import keras, tf

    check_view_count(views)
    source = model.inputs[0]
    image = keras.Input(batch_shape=tuple(source.shape), name=model.input_names[0])
    batch = keras.layers.Lambda(
        lambda x: tf.concat([view(x, k) for k in range(views)], axis=0), name="test_time_views"
    )(image)
    scores = model(batch)
    scores = scores if isinstance(scores, (list, tuple)) else [scores]

    def view_mean(x: Any) -> Any:
        # Rows are view-major (all images' view 0, then view 1, ...): (views, images, classes).
        mean = tf.reduce_mean(tf.reshape(x, [views, -1, x.shape[-1]]), axis=0)
        return tf.quantization.fake_quant_with_min_max_args(mean, min=0.0, max=1.0) if quantized else mean

    outputs = [
        keras.layers.Lambda(view_mean, name=name)(score) for name, score in zip(model.output_names, scores)
    ]
    return keras.Model(image, outputs if len(outputs) > 1 else outputs[0], name=f"{model.name}_views{views}")
