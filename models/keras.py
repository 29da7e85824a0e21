"""The one Keras import: Keras 2 (``tf_keras``), because tensorflow-model-optimization supports no other.

Import Keras only from here::

    from models.keras import keras, tf
"""

import contextlib
import os
import sys
import tempfile

# Must be set before TensorFlow is first imported, or tf.keras resolves to Keras 3.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@contextlib.contextmanager
def _native_notes_hidden():
    """With TF_CPP_MIN_LOG_LEVEL 3 (``build.console.quiet_tensorflow``), hides what TensorFlow's native
    libraries print to stderr while they load (oneDNN and CUDA notes, before their own log level is read);
    if the import fails, what they printed is shown after all."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "3":
        yield
        return
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to hide anything from
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


with _native_notes_hidden():
    import tensorflow as tf  # noqa: E402
    import tf_keras as keras  # noqa: E402

__all__ = ["keras", "tf"]
