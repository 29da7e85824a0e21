"""Float training: phase 1 trains the head on a frozen backbone, phase 2 fine-tunes the top blocks.

Each epoch ends with a checkpoint (weights + optimizer with its weight average + epoch counter) and a
row in ``log.csv``; the best epoch by validation balanced accuracy is kept separately. A run killed at
any point continues from its last completed epoch with ``--resume`` and ends exactly as the
uninterrupted run would: batches are a function of (seed, step) (``build.make.pipeline.training_dataset``),
dropout is reseeded per epoch, and with ``train.deterministic`` TensorFlow's kernels are too.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import numpy as np

from build.atomic import write_text_atomic
from build.config import BuildConfig, TrainConfig
from build.console import fit_progress, format_duration, timed_stage
from build.make.context import RunContext
from build.make.pipeline import (
    CachedImages,
    class_loss_weights,
    class_sampling_weights,
    evaluation_batches,
    training_dataset,
)
from build.make.reproducible import (
    BestWeights,
    append_log,
    averaged_weights,
    load_state,
    load_weights,
    make_reproducible,
    reseed_layers,
    save_model_atomic,
    save_weights_atomic,
    truncate_log,
)
from build.make.results import SUMMARY_FILE, FloatResult, read_float
from build.make.strategy import make_strategy
from edge.accuracy import balanced_accuracy
from edge.preprocess import InputSpec

log = logging.getLogger(__name__)


@timed_stage("float")
def train_float(ctx: RunContext, *, finish: bool = False) -> FloatResult:
    """Trains the float model of ``ctx.run`` (or finishes an interrupted training); returns its record,
    also saved as ``float/result.json``.

    The saved model has its decision shift folded into its head (see :func:`decision_shift`); the
    result records the shift so that QAT can take it out and put it back.

    Args:
        finish: End an interrupted training now, at its best completed epoch, instead of running the
            epochs still planned (recorded as ``finished_early`` in the state and summary).

    Raises:
        ValueError: ``finish`` on a run with no completed epoch.
    """
    from build.make.distill import compiled_trainer, load_teachers
    from models.classifier import build_model, prior_shift, set_trainable_top, shift_logits
    from models.keras import tf

    config, classes, spec = ctx.config, list(ctx.classes), ctx.spec
    stage = ctx.run.stage(ctx.float_stage)
    final_path = stage / "model.keras"
    if final_path.exists():
        log.info("float: %s exists, skipping training", final_path)
        return read_float(ctx.run.root, needed_by="float", stage=ctx.float_stage)
    started = time.perf_counter()
    train, val = ctx.train, ctx.val
    prior = training_prior(train.labels, len(classes), config.train)
    cfg = config.train
    steps = cfg.steps_per_epoch or max(1, len(train.labels) // cfg.batch_size)
    total_epochs = cfg.head_epochs + cfg.epochs

    strategy = make_strategy(cfg.strategy)  # first: a multi-worker strategy must precede other TF work
    make_reproducible(cfg.seed, deterministic=cfg.deterministic)
    with strategy.scope():
        model = build_model(config.model, len(classes))
    state = load_state(stage)
    best = BestWeights(stage / "best.weights.npz")
    best.settle(state)
    if finish:
        _finish_early(stage, state)
    if cfg.init_from and state["epoch"] == 0:
        warm_start(model, Path(cfg.init_from), fallback_shift=prior_shift(prior, cfg.prior_correction))
    teacher = None
    if cfg.teachers and state["epoch"] < total_epochs:
        with strategy.scope():
            teacher = load_teachers(
                config.model,
                len(classes),
                cfg.teachers,
                fallback_shift=prior_shift(prior, cfg.prior_correction),
            )
    # Also with no epoch completed: a kill between the log row and state.json leaves a row behind.
    truncate_log(stage / "log.csv", state["epoch"])
    if state["epoch"] > 0:
        log.info(
            "float: resuming after epoch %d (best val balanced accuracy %.4f)", state["epoch"], state["best"]
        )

    class_weight = (
        class_loss_weights(train.labels, len(classes)) if cfg.balance.mode == "class_weight" else None
    )
    phase = None
    resumed_after = state["epoch"]
    epochs_timed, seconds_here = 0, 0.0  # this process's epochs, for the ETA
    for epoch in range(state["epoch"], total_epochs):
        if state["stopped"]:
            break
        epoch_phase = "head" if epoch < cfg.head_epochs else "finetune"
        if epoch_phase != phase:
            phase = epoch_phase
            # A fresh optimizer per phase: Adam moments of newly unfrozen weights must start with their
            # own bias correction, or the first fine-tuning steps are several times too large.
            with strategy.scope():
                trainable = set_trainable_top(
                    model,
                    config.model.backbone,
                    0 if phase == "head" else cfg.unfreeze_blocks,
                    freeze_batchnorm=freeze_batchnorm(config, phase),
                )
                optimizer = make_optimizer(cfg)
                optimizer.build(model.trainable_variables)
                trainer = compiled_trainer(model, teacher, cfg.distillation, optimizer)
            checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
            manager = tf.train.CheckpointManager(
                checkpoint, str(stage / "checkpoints" / phase), max_to_keep=2
            )
            if resumed_after and epoch == resumed_after:
                _restore(stage, state, phase, model, checkpoint)
            log.info("float: phase %s, %d trainable layers", phase, trainable)
        rate = learning_rate_at(epoch, cfg)
        optimizer.learning_rate.assign(rate)
        with strategy.scope():
            reseed_layers(model, cfg.seed * 1_000_003 + epoch)
        dataset = training_dataset(
            train,
            spec,
            num_classes=len(classes),
            batch_size=cfg.batch_size,
            augment=cfg.augment,
            balance=cfg.balance,
            seed=cfg.seed,
            label_smoothing=cfg.label_smoothing,
            start_step=epoch * steps,
            mix=cfg.mix,
        )
        epoch_started = time.perf_counter()
        history = trainer.fit(
            dataset,
            steps_per_epoch=steps,
            epochs=1,
            verbose=0,
            class_weight=class_weight,
            callbacks=[fit_progress(f"float epoch {epoch + 1}/{total_epochs}", steps, cfg.batch_size)],
        )
        seconds = time.perf_counter() - epoch_started
        # Judged (and kept) with the weight average when there is one: that is the model that ships.
        with averaged_weights(model, optimizer):
            score = validation_balanced_accuracy(model, val, spec, prior_shift(prior, cfg.prior_correction))
            improved = score > state["best"]
            if improved:
                best.stage(model, epoch + 1)
        if improved:
            state.update(best=score, best_epoch=epoch + 1, bad_epochs=0)
        elif phase == "finetune":
            state["bad_epochs"] += 1
        append_log(
            stage / "log.csv",
            {
                "epoch": epoch + 1,
                "stage": phase,
                "lr": rate,
                "loss": history.history["loss"][-1],
                "accuracy": history.history["accuracy"][-1],
                "val_balanced_accuracy": score,
                "seconds": round(seconds, 1),
                "images_per_second": round(steps * cfg.batch_size / seconds, 1),
            },
        )
        epochs_timed += 1
        seconds_here += seconds
        left = (total_epochs - epoch - 1) * seconds_here / epochs_timed
        log.info(
            "float: epoch %d/%d (%s) loss %.4f val balanced accuracy %.4f%s in %.0f s (%.1f images/s); "
            "training ETA %s",
            epoch + 1,
            total_epochs,
            phase,
            history.history["loss"][-1],
            score,
            " (best)" if improved else "",
            seconds,
            steps * cfg.batch_size / seconds,
            format_duration(left),
        )
        state["epoch"] = epoch + 1
        state["seconds"] += seconds
        state["stopped"] = phase == "finetune" and state["bad_epochs"] >= cfg.patience
        state["phase"] = phase
        manager.save(checkpoint_number=epoch + 1)
        save_weights_atomic(model, stage / "last.weights.npz")
        write_text_atomic(stage / "state.json", json.dumps(state, indent=2))
        best.settle(state)

    if total_epochs == 0:
        # Nothing to train: the warm start is the model (a release re-exported with today's export). It is
        # also this stage's best weights, which FixRes and later warm starts read.
        state["best"] = validation_balanced_accuracy(
            model, val, spec, prior_shift(prior, cfg.prior_correction)
        )
        save_weights_atomic(model, stage / "best.weights.npz")
        log.info("float: no epochs planned, the warm start from %s is the float model", cfg.init_from)
    else:
        load_weights(model, stage / "best.weights.npz")
    shift = decision_shift(model, val, spec, prior, cfg)
    shift_logits(model, shift)
    save_model_atomic(model, final_path)
    summary = {
        **state,
        "steps_per_epoch": steps,
        "train_prior": prior.tolist(),
        "classes": classes,
        "logit_shift": shift.tolist(),
        "fit_class_bias": cfg.fit_class_bias,
        "val_balanced_accuracy_shifted": validation_balanced_accuracy(model, val, spec, np.zeros_like(shift)),
        "deterministic": cfg.deterministic,
        "schedule": {
            "head_epochs": cfg.head_epochs,
            "epochs": cfg.epochs,
            "warmup_epochs": cfg.warmup_epochs,
            "learning_rate": cfg.learning_rate,
            "optimizer": cfg.optimizer,
            "ema": cfg.ema,
            "teachers": list(cfg.teachers),
            "distillation": cfg.distillation,
            "unfreeze_blocks": cfg.unfreeze_blocks,
            "batch_size": cfg.batch_size,
        },
        "seconds_per_epoch": state["seconds"] / max(1, state["epoch"]),
        "wall_seconds": time.perf_counter() - started,
    }
    write_text_atomic(stage / SUMMARY_FILE, json.dumps(summary, indent=2))
    result = FloatResult(
        path=final_path,
        classes=tuple(classes),
        logit_shift=tuple(shift.tolist()),
        best=state["best"],
        best_epoch=state["best_epoch"],
        epoch=state["epoch"],
        seconds=state["seconds"],
        steps_per_epoch=steps,
        seconds_per_epoch=summary["seconds_per_epoch"],
        deterministic=cfg.deterministic,
        schedule=summary["schedule"],
        finished_early=bool(state.get("finished_early")),
    )
    result.save()  # last: a run killed before this line trains nothing again, and reads its summary
    log.info("float: best val balanced accuracy %.4f at epoch %d", state["best"], state["best_epoch"])
    warn_if_at_chance(state["best"], len(classes), "float")
    return result


CHANCE_MARGIN = 0.05  # balanced accuracy within this of 1 / classes is guessing, given a small split's noise


def is_at_chance(balanced_accuracy: float, num_classes: int) -> bool:
    """Whether a balanced accuracy is no better than guessing among ``num_classes``."""
    return balanced_accuracy <= 1.0 / num_classes + CHANCE_MARGIN


def warn_if_at_chance(balanced_accuracy: float, num_classes: int, stage: str) -> bool:
    """Warns when a model's validation balanced accuracy is at chance level; returns whether it did."""
    chance = 1.0 / num_classes
    if not is_at_chance(balanced_accuracy, num_classes):
        return False
    log.warning(
        "%s: WARNING: validation balanced accuracy %.3f is at chance level (%.3f for %d classes): this "
        "model has learned nothing useful. Train longer, check the data and labels, or lower the "
        "learning rate before shipping it.",
        stage,
        balanced_accuracy,
        chance,
        num_classes,
    )
    return True


def _finish_early(stage: Path, state: dict) -> None:
    """Marks an interrupted training as stopped, so that the best completed epoch becomes the model."""
    if state["epoch"] == 0:
        raise ValueError(
            f"cannot finish the training in {stage}: no epoch has completed yet. Resume it "
            "without --finish-training, or start a shorter run."
        )
    if not state["stopped"]:
        log.info(
            "float: finishing after epoch %d as asked; the best is epoch %d (val balanced accuracy %.4f)",
            state["epoch"],
            state["best_epoch"],
            state["best"],
        )
        state.update(stopped=True, finished_early=True)
        write_text_atomic(stage / "state.json", json.dumps(state, indent=2))


def _restore(stage: Path, state: dict, phase: str, model, checkpoint) -> None:
    """Restores the last completed epoch: weights and optimizer from the checkpoint within a phase;
    weights alone (``last.weights.npz``) when that epoch ended the previous phase, whose optimizer is gone."""
    if state["phase"] == phase:
        path = stage / "checkpoints" / phase / f"ckpt-{state['epoch']}"
        checkpoint.restore(str(path)).assert_existing_objects_matched()
    else:
        load_weights(model, stage / "last.weights.npz")


def warm_start(model, path: Path, *, fallback_shift: np.ndarray) -> None:
    """Loads an earlier run's float weights: its ``float/best.weights.npz`` (saved before prior correction),
    or a released bundle's float16/float32 ``.tflite``, whose head decision shift is taken out again (the
    one its card records, else ``fallback_shift``, the shift this config's prior correction would fold in)."""
    if not path.is_file():
        raise FileNotFoundError(
            f"train.init_from: {path} does not exist; pass the float/best.weights.npz "
            "of an earlier run of the same model, a bundle's model_float16.tflite, or "
            "leave init_from empty"
        )
    try:
        if path.suffix == ".tflite":
            from converters.float_weights import load_float_tflite_weights
            from models.classifier import shift_logits

            load_float_tflite_weights(model, path)
            recorded = recorded_logit_shift(path)
            shift_logits(model, -(fallback_shift if recorded is None else recorded))
            log.info(
                "float: head decision shift taken out (%s)",
                "the card's" if recorded is not None else "not in the card: prior correction's",
            )
        else:
            load_weights(model, path)
    except (ValueError, KeyError) as error:
        raise ValueError(
            f"train.init_from: {path} does not fit this model ({error}); it must come from a "
            "run with the same [model] settings and classes"
        ) from error
    log.info("float: warm start from %s", path)


def recorded_logit_shift(tflite_path: Path) -> np.ndarray | None:
    """The decision shift folded into a bundle's float model, as its ``model_card.json`` records it."""
    card_path = tflite_path.parent / "model_card.json"
    if not card_path.is_file():
        return None
    recorded = FloatResult.from_card(json.loads(card_path.read_text()), tflite_path)
    shift = recorded.logit_shift if recorded is not None else None
    return None if shift is None else np.asarray(shift, dtype=np.float64)


def freeze_batchnorm(config: BuildConfig, phase: str) -> bool:
    """Pretrained BatchNorm statistics stay frozen unless asked; a network trained from scratch has
    none worth keeping, so it always trains them."""
    if str(config.model.weights).lower() == "none":
        return False
    return not (config.train.train_batchnorm and phase == "finetune")


def decision_shift(
    model, val: CachedImages, spec: InputSpec, prior: np.ndarray, cfg: TrainConfig
) -> np.ndarray:
    """The logit shift folded into the head of a model trained under ``prior``: logit adjustment of
    strength ``cfg.prior_correction``, or with ``cfg.fit_class_bias`` a balanced shift fitted on the
    validation split (the model's own log-probabilities are its logits up to a per-image constant)."""
    from models.classifier import prior_shift

    if not cfg.fit_class_bias:
        return prior_shift(prior, cfg.prior_correction)
    from build.make.calibration import fit_balanced_shift

    shift = fit_balanced_shift(predict_probabilities(model, val.pixels, spec), val.labels)
    log.info(
        "float: class shift fitted on validation %s (prior correction would be %s)",
        np.round(shift, 2),
        np.round(prior_shift(prior, cfg.prior_correction), 2),
    )
    return shift


def float_decision_shift(floated: FloatResult, cfg: TrainConfig, prior: np.ndarray) -> np.ndarray:
    """The shift folded into the float model (runs saved before it was recorded used the prior's)."""
    from models.classifier import prior_shift

    if floated.logit_shift is not None:
        return np.asarray(floated.logit_shift, dtype=np.float64)
    return prior_shift(prior, cfg.prior_correction)


def training_prior(labels: np.ndarray, num_classes: int, cfg: TrainConfig) -> np.ndarray:
    """The class distribution the model sees while training (what prior correction removes)."""
    if cfg.balance.mode in ("oversample", "undersample"):
        return class_sampling_weights(labels, num_classes, cfg.balance)
    if cfg.balance.mode == "class_weight":
        return np.full(num_classes, 1.0 / num_classes)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return np.maximum(counts, 1) / counts.sum()


def learning_rate_at(epoch: int, cfg: TrainConfig) -> float:
    """Head phase: constant; fine-tune phase: linear warm-up, then cosine decay to 5% of the peak."""
    if epoch < cfg.head_epochs:
        return cfg.head_learning_rate
    step = epoch - cfg.head_epochs
    if step < cfg.warmup_epochs:
        return cfg.learning_rate * (step + 1) / (cfg.warmup_epochs + 1)
    span = max(1, cfg.epochs - cfg.warmup_epochs)
    progress = (step - cfg.warmup_epochs) / span
    return cfg.learning_rate * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(cfg: TrainConfig):
    """The configured optimizer, keeping an exponential moving average of the weights when ``cfg.ema``."""
    from models.keras import keras

    optimizers = keras.optimizers
    average = dict(use_ema=True, ema_momentum=cfg.ema) if cfg.ema else {}
    if cfg.optimizer == "adam":
        optimizer = optimizers.Adam(cfg.head_learning_rate, **average)
    elif cfg.optimizer == "adamw":
        optimizer = optimizers.AdamW(cfg.head_learning_rate, weight_decay=cfg.weight_decay, **average)
    elif cfg.optimizer == "rmsprop":
        optimizer = optimizers.RMSprop(cfg.head_learning_rate, **average)
    else:
        optimizer = optimizers.SGD(cfg.head_learning_rate, momentum=0.9, nesterov=True, **average)
    if cfg.ema:
        # fit() ends by overwriting the weights with their average; training goes on from the raw
        # weights next epoch, so the average is swapped in only to judge and save (averaged_weights).
        optimizer.finalize_variable_values = lambda var_list: None
    return optimizer


def predict_probabilities(model, pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Class probabilities of a Keras model for cached uint8 pixels."""
    return np.concatenate(
        [model(batch, training=False).numpy() for batch in evaluation_batches(pixels, spec)]
    )


def validation_balanced_accuracy(model, val: CachedImages, spec: InputSpec, shift: np.ndarray) -> float:
    """Balanced accuracy on the validation split, with the logit shift the saved model will have."""
    probabilities = predict_probabilities(model, val.pixels, spec)
    corrected = np.log(probabilities + 1e-12) - shift
    return balanced_accuracy(val.labels, corrected.argmax(axis=1))
