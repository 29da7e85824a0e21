"""A small hyperparameter search: random trials over optimizer, learning rate, dropout and L2.

Each trial is a short float training (``build.make.train.train_float``) in its own run folder, so a killed
sweep continues where it stopped: finished trials are read back, an interrupted one resumes from its
last epoch. Trials are ranked by validation balanced accuracy, the score training itself keeps.

    runs/<name>-sweep/
      trial-000/ ...       one run folder per trial (config.json, split.csv, float/)
      sweep.csv            the ranked results table
      sweep.json           the search space, budget, seed and ranked results

    >>> results = sweep("runs/ham-sweep", load_config("build/configs/ham10000.toml"), trials=6)
    >>> results[0].optimizer, results[0].val_balanced_accuracy
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from build.console import format_duration
from build.config import BuildConfig
from build.make.run import Run, start_run, write_csv_atomic, write_text_atomic

log = logging.getLogger(__name__)

# SGD has no per-parameter step scaling, so its useful learning rates sit about 10x above Adam's.
_LEARNING_RATE_SCALE = {"adam": 1.0, "adamw": 1.0, "rmsprop": 1.0, "sgd": 10.0}


@dataclass(frozen=True)
class SweepSpace:
    """Where trials are drawn from.

    Attributes:
        optimizers: Optimizers drawn uniformly.
        learning_rate: (low, high) of the phase-2 peak learning rate, drawn log-uniformly (for Adam;
            SGD's is scaled up 10x). The head phase keeps the base config's head/fine-tune ratio.
        dropout: (low, high) of the head dropout, drawn uniformly.
        l2: (low, high) of the L2 penalty on the head, drawn log-uniformly.
    """

    optimizers: tuple[str, ...] = ("adam", "rmsprop", "sgd")
    learning_rate: tuple[float, float] = (1e-4, 3e-3)
    dropout: tuple[float, float] = (0.1, 0.5)
    l2: tuple[float, float] = (1e-6, 1e-3)

    def __post_init__(self) -> None:
        for name in ("learning_rate", "l2"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(
                    f"SweepSpace.{name} must be (low, high) with 0 < low <= high, got {(low, high)}"
                )
        if not 0 <= self.dropout[0] <= self.dropout[1] < 1:
            raise ValueError(f"SweepSpace.dropout must be (low, high) within [0, 1), got {self.dropout}")
        unknown = sorted(set(self.optimizers) - set(_LEARNING_RATE_SCALE))
        if not self.optimizers or unknown:
            raise ValueError(
                f"SweepSpace.optimizers must be a non-empty subset of "
                f"{sorted(_LEARNING_RATE_SCALE)}, got {self.optimizers}"
            )


@dataclass(frozen=True)
class SweepBudget:
    """How long each trial trains: short, so trials compare learning speed rather than final accuracy.

    Attributes:
        head_epochs: Phase-1 epochs (at most the base config's).
        epochs: Phase-2 epochs (at most the base config's).
        steps_per_epoch: Steps per epoch (at most the base config's when it sets one; 0 = the base's).
    """

    head_epochs: int = 1
    epochs: int = 3
    steps_per_epoch: int = 60


@dataclass(frozen=True)
class TrialResult:
    """One trial: what it tried and how well it did.

    Attributes:
        trial: Trial number (also its folder name, ``trial-NNN``).
        optimizer: Optimizer name.
        learning_rate: Phase-2 peak learning rate.
        head_learning_rate: Phase-1 learning rate.
        dropout: Head dropout.
        l2: L2 penalty on the head.
        val_balanced_accuracy: Best validation balanced accuracy over the trial's epochs.
        best_epoch: Epoch (1-based) that reached it.
        epochs: Epochs trained.
        seconds: Training time.
        run_dir: The trial's run folder.
    """

    trial: int
    optimizer: str
    learning_rate: float
    head_learning_rate: float
    dropout: float
    l2: float
    val_balanced_accuracy: float
    best_epoch: int
    epochs: int
    seconds: float
    run_dir: str

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def sweep(
    run_dir: str | Path,
    base_config: BuildConfig,
    *,
    trials: int,
    seed: int = 0,
    space: SweepSpace = SweepSpace(),
    budget: SweepBudget = SweepBudget(),
) -> list[TrialResult]:
    """Trains ``trials`` short variants of ``base_config`` and returns them best first.

    Trial ``i`` draws its hyperparameters from ``(seed, i)`` alone, so asking for more trials later
    keeps the earlier ones (and their finished folders). The ranked table is printed and saved as
    ``sweep.csv`` and ``sweep.json`` in ``run_dir`` after every trial.

    Args:
        run_dir: Folder holding one run folder per trial.
        base_config: The build to vary; its data, model and augmentation stay as they are.
        trials: Number of trials.
        seed: Seed of the draws.
        space: Where hyperparameters are drawn from.
        budget: How long each trial trains.

    Raises:
        ValueError: ``trials`` < 1, or a trial folder holds a run with a different config (another
            base config or seed was swept into the same ``run_dir``).
    """
    from build.make.context import prepare
    from build.make.train import train_float
    from models.keras import keras

    if trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    root = Path(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    results: list[TrialResult] = []
    trained: list[float] = []  # seconds of the trials trained here, for the ETA
    for trial in range(trials):
        config = trial_config(base_config, trial, seed=seed, space=space, budget=budget)
        trial_root = root / f"trial-{trial:03d}"
        run = start_run(trial_root, config, resume=True)
        if (run.root / "float" / "model.keras").exists():
            log.info("sweep: trial %d already finished, reading its result", trial)
        else:
            log.info("sweep: trial %d/%d: %s", trial + 1, trials, _describe(config))
            started = time.perf_counter()
            train_float(prepare(run, config))
            seconds = time.perf_counter() - started
            trained.append(seconds)
            log.info(
                "sweep: trial %d done in %.0f s; sweep ETA %s",
                trial,
                seconds,
                format_duration((trials - trial - 1) * sum(trained) / len(trained)),
            )
            # Each trial builds a fresh model; without this the graph of every earlier one stays alive.
            keras.backend.clear_session()
        results.append(_read_result(trial, run, config))
        ranked = rank(results)
        _save(root, ranked, seed=seed, space=space, budget=budget)
    print(format_table(ranked))
    best = ranked[0]
    log.info(
        "sweep: best is trial %d (%s, lr %.2g, dropout %.2f, l2 %.1e): val balanced accuracy %.4f",
        best.trial,
        best.optimizer,
        best.learning_rate,
        best.dropout,
        best.l2,
        best.val_balanced_accuracy,
    )
    return ranked


def trial_config(
    base: BuildConfig,
    trial: int,
    *,
    seed: int = 0,
    space: SweepSpace = SweepSpace(),
    budget: SweepBudget = SweepBudget(),
) -> BuildConfig:
    """The config of trial ``trial``: ``base`` with drawn hyperparameters and a short budget."""
    rng = np.random.default_rng([seed, trial])
    optimizer = str(space.optimizers[rng.integers(len(space.optimizers))])
    learning_rate = _log_uniform(rng, space.learning_rate) * _LEARNING_RATE_SCALE[optimizer]
    dropout = float(rng.uniform(*space.dropout))
    l2 = _log_uniform(rng, space.l2)
    train = base.train
    head_ratio = train.head_learning_rate / train.learning_rate if train.learning_rate else 1.0
    steps = budget.steps_per_epoch
    if train.steps_per_epoch:
        steps = min(train.steps_per_epoch, steps) if steps else train.steps_per_epoch
    new_train = dataclasses.replace(
        train,
        optimizer=optimizer,
        learning_rate=_round(learning_rate),
        head_learning_rate=_round(learning_rate * head_ratio),
        steps_per_epoch=steps,
        head_epochs=min(train.head_epochs, budget.head_epochs),
        epochs=min(train.epochs, budget.epochs),
        warmup_epochs=min(train.warmup_epochs, max(0, min(train.epochs, budget.epochs) - 1)),
    )
    model = dataclasses.replace(base.model, dropout=_round(dropout), l2=_round(l2))
    # QAT and export are not part of a trial; switching QAT off keeps the trial's saved config honest.
    qat = dataclasses.replace(base.qat, enabled=False)
    return dataclasses.replace(
        base, name=f"{base.name}-trial-{trial:03d}", train=new_train, model=model, qat=qat
    )


def rank(results: list[TrialResult]) -> list[TrialResult]:
    """Best validation balanced accuracy first; ties go to the earlier trial."""
    return sorted(results, key=lambda r: (-r.val_balanced_accuracy, r.trial))


def format_table(results: list[TrialResult]) -> str:
    """The ranked results as a fixed-width text table."""
    header = (
        f"{'rank':>4} {'trial':>5} {'optimizer':<9} {'lr':>8} {'dropout':>7} {'l2':>8} "
        f"{'val bal acc':>11} {'best ep':>7} {'seconds':>8}"
    )
    lines = [header, "-" * len(header)]
    for place, r in enumerate(results, start=1):
        lines.append(
            f"{place:>4} {r.trial:>5} {r.optimizer:<9} {r.learning_rate:>8.2g} {r.dropout:>7.2f} "
            f"{r.l2:>8.1e} {r.val_balanced_accuracy:>11.4f} {r.best_epoch:>7} {r.seconds:>8.0f}"
        )
    return "\n".join(lines)


def _read_result(trial: int, run: Run, config: BuildConfig) -> TrialResult:
    # state.json is written after every epoch, so it is there even if summary.json never was.
    state_file = run.root / "float" / "state.json"
    if not state_file.is_file():
        raise FileNotFoundError(
            f"sweep trial {trial}: {state_file} is missing although training finished; "
            f"delete {run.root} and run the sweep again"
        )
    state = json.loads(state_file.read_text())
    return TrialResult(
        trial=trial,
        optimizer=config.train.optimizer,
        learning_rate=config.train.learning_rate,
        head_learning_rate=config.train.head_learning_rate,
        dropout=config.model.dropout,
        l2=config.model.l2,
        val_balanced_accuracy=float(state["best"]),
        best_epoch=int(state["best_epoch"]),
        epochs=int(state["epoch"]),
        seconds=round(float(state["seconds"]), 1),
        run_dir=str(run.root),
    )


def _save(
    root: Path, ranked: list[TrialResult], *, seed: int, space: SweepSpace, budget: SweepBudget
) -> None:
    write_csv_atomic(root / "sweep.csv", pd.DataFrame([r.to_dict() for r in ranked]))
    write_text_atomic(
        root / "sweep.json",
        json.dumps(
            {
                "seed": seed,
                "space": dataclasses.asdict(space),
                "budget": dataclasses.asdict(budget),
                "ranked_by": "val_balanced_accuracy",
                "results": [r.to_dict() for r in ranked],
            },
            indent=2,
        )
        + "\n",
    )


def _describe(config: BuildConfig) -> str:
    train, model = config.train, config.model
    return (
        f"{train.optimizer}, lr {train.learning_rate:.2g}, dropout {model.dropout:.2f}, "
        f"l2 {model.l2:.1e}, {train.head_epochs}+{train.epochs} epochs"
    )


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _round(value: float) -> float:
    # Three significant digits: readable in config.json, and identical when a trial is drawn again.
    return float(f"{value:.3g}")
