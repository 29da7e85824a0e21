"""Picks the tf.distribute strategy a run trains under."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def make_strategy(name: str = "auto"):
    """Returns a ``tf.distribute.Strategy``.

    Args:
        name: ``one`` (the first GPU, else the CPU), ``mirrored`` (every local GPU, or every logical
            CPU device when there is no GPU), ``multiworker`` (``MultiWorkerMirroredStrategy``, reads
            ``TF_CONFIG``; call this before any other TensorFlow work in the process), or ``auto``
            (mirrored with several GPUs, else one).
    """
    from models.keras import tf

    if name == "multiworker":
        # Collective ops are configured when TensorFlow starts: this must come before anything that
        # initializes it (listing devices included), or TensorFlow refuses.
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        log.info("strategy: %s with %d replica(s)", type(strategy).__name__, strategy.num_replicas_in_sync)
        return strategy
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "one"
    if name == "one":
        device = gpus[0].name if gpus else "/cpu:0"
        strategy = tf.distribute.OneDeviceStrategy(device)
    elif name == "mirrored":
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
    else:
        raise ValueError(f"strategy must be auto|one|mirrored|multiworker, got {name!r}")
    log.info("strategy: %s with %d replica(s)", type(strategy).__name__, strategy.num_replicas_in_sync)
    return strategy
