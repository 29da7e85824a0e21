"""The classifier head: softmax outputs, prior correction math, and which layers fine-tuning trains."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the classifier needs TensorFlow (the [build] extra)")

from models.classifier import (
    HEAD_LAYERS,
    ModelConfig,
    build_model,
    head_logits_layer,  # noqa: E402
    prior_shift,
    set_trainable_top,
    shift_logits,
)
from models.keras import keras  # noqa: E402

TINY = ModelConfig(backbone="small_cnn", alpha=0.25, image_size=32, weights="none", dropout=0.2, l2=1e-4)


@pytest.fixture
def tiny_model():
    keras.utils.set_random_seed(0)
    model = build_model(TINY, num_classes=4)
    # A random head bias, so predictions differ per class and prior shifts are visible.
    bias = head_logits_layer(model).bias
    bias.assign(np.random.default_rng(0).normal(0, 1, bias.shape).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def mobilenet_v2_035():
    keras.utils.set_random_seed(0)
    return build_model(ModelConfig(backbone="mobilenet_v2", alpha=0.35, image_size=96, weights="none"), 3)


def images(n: int = 6, size: int = 32) -> np.ndarray:
    return np.random.default_rng(1).uniform(-1, 1, (n, size, size, 3)).astype(np.float32)


def test_model_outputs_probabilities_per_class(tiny_model):
    probabilities = tiny_model.predict(images(), verbose=0)
    assert probabilities.shape == (6, 4)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert [layer.name for layer in tiny_model.layers[-len(HEAD_LAYERS) :]] == list(HEAD_LAYERS)


def test_l2_penalty_is_on_the_head_only_when_asked():
    assert len(build_model(TINY, 3).losses) == 1
    assert build_model(dataclasses.replace(TINY, l2=0.0), 3).losses == []


def test_config_and_class_count_are_checked():
    with pytest.raises(ValueError, match="unknown backbone 'efficientnet'"):
        ModelConfig(backbone="efficientnet")
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        ModelConfig(dropout=1.0)
    with pytest.raises(ValueError, match="at least 2 classes, got 1"):
        build_model(TINY, num_classes=1)


def test_prior_correction_shifts_odds_by_the_prior_ratio(tiny_model):
    x = images()
    before = tiny_model.predict(x, verbose=0)
    prior = np.array([0.7, 0.2, 0.07, 0.03])
    shift_logits(tiny_model, prior_shift(prior, 1.0))
    after = tiny_model.predict(x, verbose=0)
    # log(p_i / p_0) grows by log(prior_0 / prior_i): rarer classes gain exactly their prior ratio.
    gained = np.log(after / after[:, :1]) - np.log(before / before[:, :1])
    np.testing.assert_allclose(gained, np.broadcast_to(np.log(prior[0] / prior), gained.shape), atol=1e-4)


def test_prior_correction_is_undone_by_minus_strength(tiny_model):
    bias = head_logits_layer(tiny_model).bias
    original = bias.numpy().copy()
    before = tiny_model.predict(images(), verbose=0)
    prior = np.array([0.5, 0.3, 0.15, 0.05])
    shift_logits(tiny_model, prior_shift(prior, 0.7))
    assert not np.allclose(bias.numpy(), original)
    shift_logits(tiny_model, prior_shift(prior, -0.7))
    np.testing.assert_allclose(bias.numpy(), original, atol=1e-6)
    np.testing.assert_allclose(tiny_model.predict(images(), verbose=0), before, atol=1e-6)


def test_an_equal_prior_changes_no_prediction(tiny_model):
    before = tiny_model.predict(images(), verbose=0)
    shift_logits(tiny_model, prior_shift(np.full(4, 0.25), 1.0))
    after = tiny_model.predict(images(), verbose=0)
    np.testing.assert_array_equal(after.argmax(axis=1), before.argmax(axis=1))
    np.testing.assert_allclose(after, before, atol=1e-6)


@pytest.mark.parametrize("prior", [[0.5, 0.5], [0.5, 0.5, 0.0, 0.0], [0.4, 0.3, 0.3, -0.1]])
def test_prior_must_be_one_positive_number_per_class(prior):
    with pytest.raises(ValueError, match="train_prior must be 4 positive numbers"):
        prior_shift(np.array(prior), 1.0, num_classes=4)


def test_a_shift_that_does_not_fit_the_head_is_refused(tiny_model):
    bias = head_logits_layer(tiny_model).bias.numpy().copy()
    for shift in (prior_shift(np.array([0.5, 0.5]), 1.0), np.array([0.0, 0.0, np.inf, 0.0])):
        with pytest.raises(ValueError, match="a logit shift must be 4 finite numbers"):
            shift_logits(tiny_model, shift)
    np.testing.assert_array_equal(head_logits_layer(tiny_model).bias.numpy(), bias)


def test_head_logits_layer_explains_a_foreign_model():
    inputs = keras.Input((4,))
    foreign = keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs), name="foreign")
    with pytest.raises(ValueError, match="'foreign' has no head_logits layer"):
        head_logits_layer(foreign)


def _trainable_blocks(model, prefix: str) -> list[str]:
    blocks = []
    for layer in model.layers:
        if layer.trainable and layer.weights and layer.name.startswith(prefix):
            block = layer.name[len(prefix) :].split("_")[0]
            if block not in blocks:
                blocks.append(block)
    return blocks


def test_head_only_phase_trains_only_the_head(mobilenet_v2_035):
    model = mobilenet_v2_035
    count = set_trainable_top(model, "mobilenet_v2", 0)
    trainable = [layer.name for layer in model.layers if layer.trainable and layer.weights]
    assert trainable == ["head_logits"] and count == 1
    assert [v.name.split("/")[0] for v in model.trainable_variables] == ["head_logits", "head_logits"]


@pytest.mark.parametrize("blocks", [1, 3])
def test_finetune_phase_trains_the_top_blocks_with_batchnorm_frozen(mobilenet_v2_035, blocks):
    model = mobilenet_v2_035
    count = set_trainable_top(model, "mobilenet_v2", blocks)
    expected = [str(b) for b in range(17 - blocks, 17)]  # MobileNetV2 has blocks 1..16
    assert _trainable_blocks(model, "block_") == expected
    batchnorms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert batchnorms and not any(layer.trainable for layer in batchnorms)
    # Layers above the unfrozen blocks (the final 1x1 conv) train too; the stem never does.
    assert model.get_layer("Conv_1").trainable and not model.get_layer("Conv1").trainable
    assert model.get_layer("head_logits").trainable
    assert count == sum(1 for layer in model.layers if layer.trainable and layer.weights)


def test_unfreezing_more_blocks_than_exist_trains_the_whole_small_cnn():
    model = build_model(TINY, 3)
    set_trainable_top(model, "small_cnn", 99)
    assert _trainable_blocks(model, "stage") == ["1", "2", "3"]
    assert all(layer.trainable for layer in model.layers if layer.weights)


def test_a_network_trained_from_scratch_trains_its_batchnorm():
    from models.keras import keras

    model = build_model(ModelConfig(backbone="mobilenet", alpha=0.25, image_size=32, weights="none"), 3)
    set_trainable_top(model, "mobilenet", 99, freeze_batchnorm=False)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and all(layer.trainable for layer in norms)
    set_trainable_top(model, "mobilenet", 99)
    assert not any(layer.trainable for layer in norms)
