"""Quantization-aware training: wrap the trained float model with tfmot and fine-tune it briefly.

Training sees int8 rounding in the forward pass, so the int8 TFLite file keeps the float model's
accuracy. Like float training, every epoch is checkpointed and ``--resume`` continues after a kill.
"""

from __future__ import annotations

import json
import logging
import re
import time

import numpy as np

from build.atomic import write_text_atomic
from build.console import fit_progress, timed_stage
from build.make.context import RunContext
from build.make.pipeline import calibration_sample, training_dataset
from build.make.reproducible import (
    BestWeights,
    append_log,
    load_state,
    load_weights,
    make_reproducible,
    reseed_layers,
    save_model_atomic,
    save_weights_atomic,
    truncate_log,
)
from build.make.results import SUMMARY_FILE, FloatResult, QatResult, read_qat
from build.make.train import float_decision_shift, training_prior, validation_balanced_accuracy
from converters.export import load_keras_model
from edge.preprocess import normalize

log = logging.getLogger(__name__)


def quantize_aware(model):
    """Wraps every layer of a flat Functional float model for quantization-aware training (tfmot's
    default 8-bit scheme with per-channel depthwise kernels, see :mod:`models.quantization`).

    Raises:
        ValueError: The model nests another model or holds a layer tfmot cannot quantize.
    """
    from models.keras import keras
    from models.quantization import quantize_model

    nested = [layer.name for layer in model.layers if isinstance(layer, keras.Model)]
    if nested:
        raise ValueError(
            f"quantization-aware training needs a flat model; {model.name!r} nests {nested}. "
            "Build it with models.classifier.build_model."
        )
    return quantize_model(model)


# How tfmot's quantizers update their ranges in training mode: activations (MovingAverageQuantizer)
# move 0.1% of the way towards each batch's min/max; weights (LastValueQuantizer) take the weights'
# min/max; the input (AllValuesQuantizer) widens to every value seen.
_EMA_DECAY = 0.999
_MOVING_RANGES = (
    "output_min",
    "output_max",
    "post_activation_min",
    "post_activation_max",
    "pre_activation_min",
    "pre_activation_max",
)
_OBSERVED_RANGES = ("kernel_min", "kernel_max", "depthwise_kernel_min", "depthwise_kernel_max")
# The input's QuantizeLayer names its range after itself: "quantize_layer_min", or "quantize_layer_3_min"
# when the process has wrapped models before.
_INPUT_RANGE = re.compile(r"quantize_layer(_\d+)?_(min|max)")


def calibrate_ranges(model, batches: list, rounds: int = 2) -> None:
    """Sets the quantization ranges of a QAT model from real batches (after wrapping, and again on the
    final weights).

    tfmot starts every range at [-6, 6] and, for activations, moves it by 0.1% per training step: a
    short QAT run would train under (and export) ranges still far from the model's: ReLU-free
    bottlenecks and logits clip at 6, and weights use a few of their 256 levels until the first step.
    Each batch runs once in training mode; its min/max per activation quantizer is read back from the
    moving-average update, and the range is set to the mean over batches. The first round settles
    upstream ranges; the second measures under them. Weights, BatchNorm statistics and step counters
    are left exactly as they were.
    """
    variables = model.variables
    kinds = [_range_kind(variable) for variable in variables]
    for _ in range(rounds):
        seen = [[] for _ in variables]
        for batch in batches:
            before = [variable.numpy() for variable in variables]
            model(batch, training=True)
            for variable, kind, old, ranges in zip(variables, kinds, before, seen):
                new = variable.numpy()
                if kind == "moving":  # undo the moving average: new = old + (1 - decay) * (batch - old)
                    ranges.append(old + (new - old) / (1 - _EMA_DECAY))
                    variable.assign(np.mean(ranges, axis=0))
                elif kind == "other":
                    variable.assign(old)


def freeze_batchnorm_statistics(model) -> None:
    """Runs BatchNormalization in inference mode during QAT: batch statistics of fake-quantized
    activations pull the moving statistics away from what the int8 file will use (measured on the
    release: validation balanced accuracy fell 0.68 -> 0.41 over 750 QAT steps with trainable BN)."""
    from models.keras import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _range_kind(variable) -> str:
    name = variable.name.split("/")[-1].split(":")[0]
    if name in _MOVING_RANGES:
        return "moving"
    return "observed" if name in _OBSERVED_RANGES or _INPUT_RANGE.fullmatch(name) else "other"


@timed_stage("qat")
def apply_qat(
    ctx: RunContext, floated: FloatResult, *, quantize=quantize_aware, finish: bool = False
) -> QatResult:
    """Fine-tunes the float model (``floated``, the float stage's result) with fake quantization; returns
    the QAT stage's record, also saved as ``qat/result.json``.

    The float model's decision shift is taken out before training (the training data is drawn with
    the sampling prior) and folded back into the quantized head afterwards. ``quantize`` wraps the
    float model (``benchmarks.qat_scheme`` compares tfmot's stock scheme with ours). ``finish`` ends an
    interrupted QAT at its best completed epoch instead of running the remaining ones (a QAT with no
    completed epoch runs in full: there is nothing to finish).
    """
    from build.make.distill import compiled_trainer
    from models.classifier import shift_logits
    from models.keras import keras, tf

    config, classes, spec = ctx.config, ctx.classes, ctx.spec
    stage = ctx.run.stage("qat")
    # HDF5: tfmot 0.8.1 cannot read back the .keras files it writes for QAT layers.
    final_path = stage / "model.h5"
    if final_path.exists():
        log.info("qat: %s exists, skipping", final_path)
        return read_qat(ctx.run.root, needed_by="qat")
    started = time.perf_counter()
    train, val = ctx.train, ctx.val
    cfg, qcfg = config.train, config.qat
    prior = training_prior(train.labels, len(classes), cfg)
    steps = qcfg.steps_per_epoch or cfg.steps_per_epoch or max(1, len(train.labels) // cfg.batch_size)

    make_reproducible(cfg.seed, deterministic=cfg.deterministic)
    float_model = load_keras_model(floated.path)
    shift = float_decision_shift(floated, cfg, prior)
    shift_logits(float_model, -shift)
    freeze_batchnorm_statistics(float_model)
    model = quantize(float_model)
    calibration = [
        normalize(np.stack(images), spec)
        for images in _chunks(
            calibration_sample(train, spec, config.export.calibration_images, cfg.seed), cfg.batch_size
        )
    ]
    optimizer = keras.optimizers.Adam(qcfg.learning_rate)
    optimizer.build(model.trainable_variables)  # its moments exist before a resume restores them
    trainer = compiled_trainer(model, float_model, qcfg.distillation, optimizer)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    manager = tf.train.CheckpointManager(checkpoint, str(stage / "checkpoints"), max_to_keep=2)
    state = load_state(stage)
    best = BestWeights(stage / "best.weights.npz")
    best.settle(state)
    # Also with no epoch completed: a kill between the log row and state.json leaves a row behind.
    truncate_log(stage / "log.csv", state["epoch"])
    if state["epoch"] > 0:
        checkpoint.restore(str(stage / "checkpoints" / f"ckpt-{state['epoch']}"))
        log.info("qat: resumed after epoch %d", state["epoch"])
    else:
        calibrate_ranges(model, calibration)
        # Epoch 0 = the float weights under fake quantization: QAT must beat it to be kept.
        state["best"] = validation_balanced_accuracy(model, val, spec, shift)
        save_weights_atomic(model, stage / "best.weights.npz")
        log.info("qat: before fine-tuning, val balanced accuracy %.4f", state["best"])

    if finish and 0 < state["epoch"] < qcfg.epochs and not state.get("finished_early"):
        log.info(
            "qat: finishing after epoch %d of %d as asked; the best is epoch %d (val balanced accuracy %.4f)",
            state["epoch"],
            qcfg.epochs,
            state["best_epoch"],
            state["best"],
        )
        state["finished_early"] = True
        write_text_atomic(stage / "state.json", json.dumps(state, indent=2))
    last_epoch = state["epoch"] if state.get("finished_early") else qcfg.epochs

    for epoch in range(state["epoch"], last_epoch):
        reseed_layers(model, cfg.seed * 1_000_003 + 1000 + epoch)
        dataset = training_dataset(
            train,
            spec,
            num_classes=len(classes),
            batch_size=cfg.batch_size,
            augment=cfg.augment,
            balance=cfg.balance,
            seed=cfg.seed + 1000,
            label_smoothing=cfg.label_smoothing,
            start_step=epoch * steps,
        )
        epoch_started = time.perf_counter()
        history = trainer.fit(
            dataset,
            steps_per_epoch=steps,
            epochs=1,
            verbose=0,
            callbacks=[fit_progress(f"qat epoch {epoch + 1}/{last_epoch}", steps, cfg.batch_size)],
        )
        seconds = time.perf_counter() - epoch_started
        score = validation_balanced_accuracy(model, val, spec, shift)
        improved = score > state["best"]
        if improved:
            best.stage(model, epoch + 1)
            state.update(best=score, best_epoch=epoch + 1)
        append_log(
            stage / "log.csv",
            {
                "epoch": epoch + 1,
                "stage": "qat",
                "lr": qcfg.learning_rate,
                "loss": history.history["loss"][-1],
                "accuracy": history.history["accuracy"][-1],
                "val_balanced_accuracy": score,
                "seconds": round(seconds, 1),
            },
        )
        log.info(
            "qat: epoch %d/%d loss %.4f val balanced accuracy %.4f%s in %.0f s",
            epoch + 1,
            qcfg.epochs,
            history.history["loss"][-1],
            score,
            " (best)" if improved else "",
            seconds,
        )
        state["epoch"] = epoch + 1
        state["seconds"] += seconds
        manager.save(checkpoint_number=epoch + 1)
        write_text_atomic(stage / "state.json", json.dumps(state, indent=2))
        best.settle(state)

    load_weights(model, stage / "best.weights.npz")
    shift_logits(model, shift)
    # Measured again on the final weights: the shift moves the logits' range.
    calibrate_ranges(model, calibration)
    save_model_atomic(model, final_path)
    write_text_atomic(
        stage / SUMMARY_FILE,
        json.dumps(
            {**state, "steps_per_epoch": steps, "wall_seconds": time.perf_counter() - started}, indent=2
        ),
    )
    result = QatResult(
        path=final_path,
        best=state["best"],
        best_epoch=state["best_epoch"],
        epoch=state["epoch"],
        seconds=state["seconds"],
        steps_per_epoch=steps,
        finished_early=bool(state.get("finished_early")),
    )
    result.save()
    log.info("qat: val balanced accuracy %.4f (epoch %d)", state["best"], state["best_epoch"])
    return result
