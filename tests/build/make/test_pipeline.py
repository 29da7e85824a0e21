"""The training stream: class-balanced draws from the cache, normalized, with one-hot (smoothed) targets."""

from __future__ import annotations

import numpy as np
import pytest

from build.make.cache import CachedImages
from build.make.pipeline import class_loss_weights, class_sampling_weights, training_dataset
from build.stage_configs import BalanceConfig
from edge.preprocess import InputSpec
from tests.conftest import NO_AUGMENT

SPEC = InputSpec(height=16, width=16)


def test_sampling_weights_follow_the_power():
    labels = np.array([0] * 80 + [1] * 20 + [3] * 5)  # class 2 absent

    uniform = class_sampling_weights(labels, 4, BalanceConfig(power=0.0))
    natural = class_sampling_weights(labels, 4, BalanceConfig(power=1.0))
    capped = class_sampling_weights(labels, 4, BalanceConfig(mode="undersample"))

    np.testing.assert_allclose(uniform, [1 / 3, 1 / 3, 0, 1 / 3])
    np.testing.assert_allclose(natural, [80 / 105, 20 / 105, 0, 5 / 105])
    np.testing.assert_allclose(capped, [1 / 3, 1 / 3, 0, 1 / 3])
    weights = class_loss_weights(labels, 4)
    assert weights[3] > weights[1] > weights[0] and weights[2] == 0.0


def test_bad_balance_mode_is_refused():
    with pytest.raises(ValueError, match="oversample"):
        BalanceConfig(mode="smote")


def drawn_class_shares(data: CachedImages, balance: BalanceConfig, batches: int = 30) -> np.ndarray:
    dataset = training_dataset(
        data, SPEC, num_classes=3, batch_size=64, augment=NO_AUGMENT, balance=balance, seed=0
    )
    targets = np.concatenate([t.numpy() for _, t in dataset.take(batches)])
    return targets.sum(axis=0) / len(targets)


@pytest.fixture(scope="module")
def imbalanced() -> CachedImages:
    pytest.importorskip("tensorflow", reason="the training pipeline needs TensorFlow (the [build] extra)")
    labels = np.array([0] * 200 + [1] * 40 + [2] * 8, dtype=np.int32)
    # Each image's pixels are its class index, so a batch shows which images were drawn.
    pixels = np.broadcast_to(labels[:, None, None, None].astype(np.uint8), (len(labels), 16, 16, 3)).copy()
    return CachedImages(pixels=pixels, labels=labels)


def test_oversampling_power_zero_draws_classes_uniformly(imbalanced):
    shares = drawn_class_shares(imbalanced, BalanceConfig(mode="oversample", power=0.0))

    # 1,920 draws: one standard deviation of a share is about 0.011.
    np.testing.assert_allclose(shares, [1 / 3] * 3, atol=0.05)


def test_oversampling_power_one_keeps_natural_frequencies(imbalanced):
    shares = drawn_class_shares(imbalanced, BalanceConfig(mode="oversample", power=1.0))

    np.testing.assert_allclose(shares, [200 / 248, 40 / 248, 8 / 248], atol=0.05)


def test_batches_are_normalized_images_matching_their_labels(imbalanced):
    dataset = training_dataset(
        imbalanced,
        SPEC,
        num_classes=3,
        batch_size=8,
        augment=NO_AUGMENT,
        balance=BalanceConfig(power=0.0),
        seed=0,
        label_smoothing=0.1,
    )

    images, targets = next(iter(dataset))

    assert images.shape == (8, 16, 16, 3) and images.dtype.name == "float32"
    np.testing.assert_allclose(targets.numpy().sum(axis=1), 1.0, rtol=1e-6)
    assert targets.numpy().max() == pytest.approx(0.9 + 0.1 / 3)
    # Pixel value k (the class index) normalizes to k / 127.5 - 1, and it matches the target.
    expected = np.argmax(targets.numpy(), axis=1) / 127.5 - 1
    np.testing.assert_allclose(images.numpy()[:, 0, 0, 0], expected, atol=1e-6)
