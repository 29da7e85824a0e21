"""Quantization-aware training: every backbone wraps and trains, and the QAT stage of a run works."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

pytest.importorskip("tensorflow_model_optimization", reason="QAT needs tensorflow-model-optimization")

from build.make.context import prepare  # noqa: E402
from build.make.qat import apply_qat, calibrate_ranges, quantize_aware  # noqa: E402
from build.make.results import read_float  # noqa: E402
from build.make.run import start_run  # noqa: E402
from build.make.train import train_float  # noqa: E402
from models.backbones import BACKBONES  # noqa: E402
from models.classifier import ModelConfig, build_model, head_logits_layer, prior_shift, shift_logits  # noqa: E402
from models.keras import keras  # noqa: E402
from tests.build.make.test_train import read_log, tiny_config, write_synthetic_dataset  # noqa: E402

# The smallest build of each backbone (QAT cost grows with layers and pixels, not with what is tested).
SMALL = {
    "mobilenet_v2": ModelConfig(backbone="mobilenet_v2", alpha=0.35, image_size=96, weights="none"),
    "mobilenet": ModelConfig(backbone="mobilenet", alpha=0.25, image_size=32, weights="none"),
    "resnet50": ModelConfig(backbone="resnet50", alpha=1.0, image_size=32, weights="none"),
    "small_cnn": ModelConfig(backbone="small_cnn", alpha=0.25, image_size=32, weights="none"),
}


def test_every_registered_backbone_is_covered_here():
    assert set(SMALL) == set(BACKBONES)


def _calibration_batches(size: int):
    rng = np.random.default_rng(0)
    return [rng.uniform(-1, 1, (8, size, size, 3)).astype(np.float32) for _ in range(3)]


def test_calibrated_ranges_make_the_fake_quantized_model_match_the_float_one():
    keras.utils.set_random_seed(0)
    quantize_aware(build_model(SMALL["small_cnn"], num_classes=3))  # later wraps get numbered layer names
    float_model = build_model(SMALL["small_cnn"], num_classes=3)
    model = quantize_aware(float_model)
    probe = np.concatenate(_calibration_batches(32))
    error_before = np.abs(model(probe).numpy() - float_model(probe).numpy()).mean()

    calibrate_ranges(model, _calibration_batches(32))

    # tfmot starts at [-6, 6] (the input at [0, 0]); the inputs span [-1, 1].
    input_quantizer = next(layer for layer in model.layers if type(layer).__name__ == "QuantizeLayer")
    ranges = {
        weight.name.split("/")[-1].split(":")[0].rsplit("_", 1)[-1]: weight.numpy()
        for weight in input_quantizer.weights
    }
    low, high = ranges["min"], ranges["max"]
    assert -1.01 < low < -0.95 and 0.95 < high < 1.01
    error_after = np.abs(model(probe).numpy() - float_model(probe).numpy()).mean()
    assert error_after < error_before / 10, (error_before, error_after)


def test_calibrating_ranges_leaves_weights_and_batchnorm_statistics_alone():
    keras.utils.set_random_seed(0)
    model = quantize_aware(build_model(SMALL["mobilenet"], num_classes=3))
    untouched = {v.name: v.numpy() for v in model.variables if not v.name.endswith(("_min:0", "_max:0"))}
    assert any("moving_mean" in name for name in untouched)

    calibrate_ranges(model, _calibration_batches(32))

    for variable in model.variables:
        if variable.name in untouched:
            np.testing.assert_array_equal(variable.numpy(), untouched[variable.name], err_msg=variable.name)


def _is_quantize_wrapper(layer) -> bool:
    return type(layer).__name__.startswith("QuantizeWrapper")


# The two big graphs take tens of seconds to wrap on a busy CPU.
SLOW_TO_WRAP = ("mobilenet_v2", "resnet50")


@pytest.mark.parametrize(
    "name",
    [pytest.param(name, marks=pytest.mark.slow) if name in SLOW_TO_WRAP else name for name in sorted(SMALL)],
)
def test_every_backbone_wraps_for_qat_and_trains_a_step(name):
    config = SMALL[name]
    keras.utils.set_random_seed(0)
    model = quantize_aware(build_model(config, num_classes=3))

    wrapped = [layer for layer in model.layers if _is_quantize_wrapper(layer)]
    convs = [layer for layer in wrapped if "Conv" in type(layer.layer).__name__]
    assert convs, f"{name}: no convolution was wrapped for quantization"
    assert head_logits_layer(model) is model.get_layer("quant_head_logits").layer

    # Eagerly: tracing a graph of a few hundred wrapped layers costs more than the step itself.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", run_eagerly=True)
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (4, config.image_size, config.image_size, 3)).astype(np.float32)
    targets = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    # The wrapper swaps the inner layer's kernel attribute for its fake-quantized tensor: read the variable.
    kernel = next(w for w in convs[-1].trainable_weights if "kernel" in w.name)
    kernel_before = kernel.numpy().copy()
    loss = model.train_on_batch(images, targets)
    assert np.isfinite(loss)
    assert not np.array_equal(kernel.numpy(), kernel_before), "the training step changed no weight"
    probabilities = model(images, training=False).numpy()
    assert probabilities.shape == (4, 3) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)


def test_prior_correction_round_trips_on_a_qat_model():
    model = quantize_aware(build_model(SMALL["small_cnn"], num_classes=3))
    bias = head_logits_layer(model).bias
    original = bias.numpy().copy()
    shift_logits(model, prior_shift(np.array([0.6, 0.3, 0.1]), 1.0))
    assert not np.allclose(bias.numpy(), original)
    shift_logits(model, prior_shift(np.array([0.6, 0.3, 0.1]), -1.0))
    np.testing.assert_allclose(bias.numpy(), original, atol=1e-6)


def test_a_nested_model_is_refused_with_advice():
    inner = build_model(SMALL["small_cnn"], num_classes=3)
    inputs = keras.Input((32, 32, 3))
    outer = keras.Model(inputs, inner(inputs), name="outer")
    with pytest.raises(ValueError, match=r"needs a flat model; 'outer' nests \['small_cnn_classifier'\]"):
        quantize_aware(outer)


def test_qat_stage_needs_the_float_model_first(tmp_path):
    config = tiny_config(tmp_path / "data")
    run = start_run(tmp_path / "runs" / "no-float", config, resume=False)
    with pytest.raises(
        FileNotFoundError, match=r"qat needs the float model .*float[/\\]model.keras; run `skinlesion train"
    ):
        read_float(run.root, needed_by="qat")
    # The command says so before it reads any data (there is none here).
    from build.build import run_stage

    with pytest.raises(FileNotFoundError, match=r"float[/\\]model.keras; run `skinlesion train"):
        run_stage(run.root, "qat")


@pytest.mark.slow
def test_qat_stage_fine_tunes_the_float_model_of_a_run(tmp_path):
    from converters.export import load_keras_model

    config = tiny_config(write_synthetic_dataset(tmp_path / "data"), "train.epochs=1", "qat.epochs=2")
    run = start_run(tmp_path / "runs" / "tiny", config, resume=False)
    ctx = prepare(run, config)
    floated = train_float(ctx)
    path = apply_qat(ctx, floated).path

    assert path == run.root / "qat" / "model.h5"
    model = load_keras_model(path)
    assert sum(_is_quantize_wrapper(layer) for layer in model.layers) >= 4
    pixels = np.random.default_rng(0).uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32)
    probabilities = model.predict(pixels, verbose=0)
    assert probabilities.shape == (3, 3) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    rows = read_log(run.root / "qat" / "log.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2] and {r["stage"] for r in rows} == {"qat"}
    state = json.loads((run.root / "qat" / "state.json").read_text())
    assert state["epoch"] == 2 and 0 <= state["best_epoch"] <= 2
    # The float model's prior correction was taken out for training and folded back in: the QAT head
    # bias stays close to the float model's (QAT trains at a tiny learning rate).
    float_bias = head_logits_layer(load_keras_model(run.root / "float" / "model.keras")).bias.numpy()
    np.testing.assert_allclose(head_logits_layer(model).bias.numpy(), float_bias, atol=0.05)

    modified = path.stat().st_mtime_ns
    assert apply_qat(ctx, floated).path == path and path.stat().st_mtime_ns == modified


@pytest.mark.slow
def test_an_interrupted_qat_is_finished_at_its_best_completed_epoch(tmp_path):
    config = tiny_config(write_synthetic_dataset(tmp_path / "data"), "train.epochs=1", "qat.epochs=1")
    run = start_run(tmp_path / "runs" / "tiny", config, resume=False)
    ctx = prepare(run, config)
    floated = train_float(ctx)
    apply_qat(ctx, floated)
    # As if a 3-epoch QAT had been stopped after its first epoch: the model file is not written yet.
    (run.root / "qat" / "model.h5").unlink()
    planned = dataclasses.replace(config, qat=dataclasses.replace(config.qat, epochs=3))

    path = apply_qat(ctx.with_config(planned), floated, finish=True).path

    assert path.is_file() and [int(r["epoch"]) for r in read_log(run.root / "qat" / "log.csv")] == [1]
    state = json.loads((run.root / "qat" / "state.json").read_text())
    assert state["epoch"] == 1 and state["finished_early"]


@pytest.mark.slow
def test_a_run_folder_made_before_the_stage_records_still_trains_on_and_exports(tmp_path):
    import shutil

    from build.build import run_stage
    from converters.export import load_keras_model

    # Gates any tiny model passes: what is checked here is that the old folder exports, not its numbers.
    config = tiny_config(
        write_synthetic_dataset(tmp_path / "data"),
        "train.epochs=1",
        "qat.epochs=1",
        "export.int8_min_agreement=0.0",
        "export.int8_max_drop_points=100.0",
        "export.float_min_agreement=0.0",
    )
    run = start_run(tmp_path / "runs" / "new", config, resume=False)
    floated = train_float(prepare(run, config))
    # The folder as the code before float/result.json left it: summary.json alone records the stage.
    old = tmp_path / "runs" / "old"
    shutil.copytree(run.root, old)
    (old / "float" / "result.json").unlink()

    ctx = prepare(start_run(old, config, resume=True), config)
    again = train_float(ctx)  # nothing left to train: the record is read back from summary.json
    assert again == dataclasses.replace(floated, path=old / "float" / "model.keras")
    assert len(again.logit_shift) == 3
    quantized = apply_qat(ctx, again)
    # QAT took the recorded shift out and folded the same shift back in.
    float_bias = head_logits_layer(load_keras_model(again.path)).bias.numpy()
    np.testing.assert_allclose(
        head_logits_layer(load_keras_model(quantized.path)).bias.numpy(), float_bias, atol=0.05
    )

    (old / "qat" / "result.json").unlink()  # an old QAT stage, too
    assert run_stage(old, "export") == 0
    card = json.loads((old / "bundle" / "model_card.json").read_text())
    assert card["training"]["float"] == json.loads(json.dumps(floated.card_record()))
    assert card["training"]["float"]["logit_shift"] == list(floated.logit_shift)
    assert card["training"]["qat"] == quantized.card_record()
    assert json.loads((old / "export" / "result.json").read_text())["bundle"] == str(old / "bundle")
