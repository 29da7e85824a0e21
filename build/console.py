"""What a long build shows while it works: each stage's time and output, progress for Keras fits, and
TensorFlow kept quiet.

``Progress`` itself lives in ``edge.progress`` (the bottom layer), so converters and the runtime use it too.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar

from edge.progress import Progress, format_duration

__all__ = ["Progress", "fit_progress", "format_duration", "quiet_tensorflow", "timed_stage"]

log = logging.getLogger(__name__)
Result = TypeVar("Result")


def timed_stage(name: str) -> Callable[[Callable[..., Result]], Callable[..., Result]]:
    """Decorates one stage of the build with its chores, written once for every stage: the time it took and
    what it made (``"float: done in 2m 30s -> runs/x/float/model.keras"``), or the failure and when it
    happened. The stage returns a result with a ``path``, or a path.

        >>> @timed_stage("float")
        ... def train_float(ctx, *, finish=False) -> FloatResult: ...
    """

    def decorate(function: Callable[..., Result]) -> Callable[..., Result]:
        @functools.wraps(function)
        def timed(*args, **kwargs) -> Result:
            started = time.perf_counter()
            try:
                result = function(*args, **kwargs)
            except Exception as error:  # logged with its stage and time, then left to the caller
                log.error(
                    "%s: failed after %s: %s", name, format_duration(time.perf_counter() - started), error
                )
                raise
            log.info(
                "%s: done in %s -> %s",
                name,
                format_duration(time.perf_counter() - started),
                getattr(result, "path", result),
            )
            return result

        return timed

    return decorate


def fit_progress(label: str, steps: int, batch_size: int):
    """A Keras callback that reports each batch of a one-epoch ``fit`` through :class:`Progress`."""
    from models.keras import keras

    class FitProgress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.progress = Progress(label, steps, unit="steps", per_unit=batch_size)

        def on_train_batch_end(self, batch, logs=None):
            # Every number fit reports (loss, accuracy, a Distiller's agreement with its teacher).
            numbers = {
                name: float(value)
                for name, value in (logs or {}).items()
                if isinstance(value, (int, float)) or getattr(value, "shape", None) == ()
            }
            self.progress.update(batch + 1, **numbers)

        def on_train_end(self, logs=None):
            self.progress.close()

    return FitProgress()


def quiet_tensorflow(verbose: bool = False) -> None:
    """Keeps TensorFlow's C++ and Python chatter (CUDA probing, oneDNN notes, converter internals) out of
    the output unless ``verbose``. Must run before TensorFlow is imported to silence its C++ side."""
    if verbose:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in ("tensorflow", "absl", "h5py", "matplotlib"):
        logging.getLogger(name).setLevel(logging.ERROR)
