"""Per-epoch bookkeeping shared by the training stages: state, CSV log, atomic model files.

A stage's folder holds ``state.json`` (epochs done, best score) next to its checkpoints; both are
written after every epoch, so a killed run resumes from the last completed epoch.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from pathlib import Path

import numpy as np

from build.atomic import write_with


def load_state(stage: Path) -> dict:
    """The stage's saved progress, or a fresh one."""
    path = stage / "state.json"
    if path.exists():
        return json.loads(path.read_text())
    return {
        "epoch": 0,
        "best": -1.0,
        "best_epoch": 0,
        "bad_epochs": 0,
        "seconds": 0.0,
        "stopped": False,
        "phase": "",
    }


def append_log(path: Path, row: dict) -> None:
    """Appends one epoch's row to a CSV log, writing the header for a new file."""
    new = not path.exists()
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def truncate_log(path: Path, epochs: int) -> None:
    """Drops log rows of an epoch that was logged but not checkpointed before a crash."""
    if not path.exists():
        return
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        fieldnames = reader.fieldnames or []
        rows = [row for row in reader if int(row["epoch"]) <= epochs]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)

    write_with(path, write)


def save_weights_atomic(model, path: Path) -> None:
    """Saves the model's layer weights as ``.npz`` (no optimizer or metric state), atomically.

    Plain arrays load back into any model of the same architecture, whether or not it has been
    compiled or trained since (Keras' own weight files also carry metric variables, which makes an
    epoch-0 file unloadable once the model has trained) and under any tf.distribute strategy.
    """
    write_with(path, lambda tmp: np.savez(tmp, *model.get_weights()))


def load_weights(model, path: Path) -> None:
    """Loads weights saved by :func:`save_weights_atomic` into ``model``."""
    with np.load(path) as arrays:
        model.set_weights([arrays[f"arr_{i}"] for i in range(len(arrays.files))])


def save_model_atomic(model, path: Path) -> None:
    """Saves a whole model to a temporary file and renames it over ``path``."""
    from models.keras import keras

    # A reference model, not a training state: leave the optimizer out (a third of the file).
    if path.suffix == ".h5":
        write_with(path, lambda tmp: model.save(str(tmp), include_optimizer=False))
    else:  # the .keras format has no such switch; an uncompiled view of the same layers has no optimizer
        view = keras.Model(model.inputs, model.outputs, name=model.name)
        write_with(path, lambda tmp: view.save(str(tmp)))


class BestWeights:
    """The best epoch's weights, kept so that a kill at any point leaves them matching ``state.json``.

    A better epoch's weights go to ``best-pending-<epoch>.npz`` first (:meth:`stage`); once
    ``state.json`` records that epoch as the best, :meth:`settle` renames them over the best file. A
    kill before the state is written leaves a pending file that ``settle`` discards on resume; a kill
    after it, one that ``settle`` promotes.
    """

    def __init__(self, path: Path):
        self.path = path

    def stage(self, model, epoch: int) -> None:
        save_weights_atomic(model, self._pending(epoch))

    def settle(self, state: dict) -> None:
        for pending in self.path.parent.glob("best-pending-*.npz"):
            if pending == self._pending(state["best_epoch"]):
                os.replace(pending, self.path)
            else:
                pending.unlink()

    def _pending(self, epoch: int) -> Path:
        return self.path.with_name(f"best-pending-{epoch}.npz")


@contextlib.contextmanager
def averaged_weights(model, optimizer):
    """Inside the block the model holds the optimizer's moving average of its trainable weights (the
    optimizer's ``use_ema``); on leaving, the raw weights training goes on from are back. A no-op for
    an optimizer that keeps no average."""
    if not getattr(optimizer, "use_ema", False):
        yield
        return
    variables = model.trainable_variables
    raw = [variable.numpy() for variable in variables]
    optimizer._overwrite_model_variables_with_average_value(variables)  # tf_keras' own swap-in
    try:
        yield
    finally:
        for variable, value in zip(variables, raw):
            variable.assign(value)


def make_reproducible(seed: int, *, deterministic: bool) -> None:
    """Seeds Python, NumPy and TensorFlow; with ``deterministic`` also asks TensorFlow for
    deterministic kernels (same seed and data -> the same weights, bit for bit, on one machine)."""
    from models.keras import keras, tf

    # Random layers (dropout) then draw from a tf.random.Generator, whose state can be reseeded per epoch
    # (reseed_layers); tf_keras' default, TF1 stateful random ops, keeps a state no resume can restore.
    keras.backend.experimental.enable_tf_random_generator()
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def reseed_layers(model, seed: int) -> None:
    """Resets every layer's random generator (dropout) from ``seed``: with a seed per epoch, an epoch's
    masks do not depend on whether the process ran the epochs before it."""
    for index, layer in enumerate(model.layers):
        layer = getattr(layer, "layer", layer)  # a QAT wrapper holds the real layer
        random = getattr(layer, "_random_generator", None)
        if random is None:
            continue
        random._maybe_init()  # tf_keras creates the generator on first use; a resumed run must reseed it too
        if random._generator is not None:
            random._generator.reset_from_seed(seed * 1009 + index)
