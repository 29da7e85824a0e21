"""Per-epoch bookkeeping shared by the training stages: state, CSV log, atomic model files.

A stage's folder holds ``state.json`` (epochs done, best score) next to its checkpoints; both are
written after every epoch, so a killed run resumes from the last completed epoch.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from build.atomic import write_with


def load_state(stage: Path) -> dict:
    """The stage's saved progress, or a fresh one."""
    path = stage / "state.json"
    if path.exists():
        return json.loads(path.read_text())
    return {"epoch": 0, "best": -1.0, "best_epoch": 0, "bad_epochs": 0, "seconds": 0.0, "stopped": False, "phase": ""}


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
