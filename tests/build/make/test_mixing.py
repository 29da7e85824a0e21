"""CutMix and mixup: each mixed image is made of itself and its partner, and its target says how much."""

from __future__ import annotations

import numpy as np
import pytest

from build.make.cache import CachedImages
from build.make.mixing import mix_batch
from build.stage_configs import BalanceConfig, MixConfig
from edge.preprocess import InputSpec
from tests.conftest import NO_AUGMENT


def numbered_batch(n: int = 16, size: int = 24) -> np.ndarray:
    """Image ``i`` is filled with the value ``10 * i``, so each pixel says which image it came from."""
    return np.broadcast_to(
        (10 * np.arange(n, dtype=np.uint8))[:, None, None, None], (n, size, size, 3)
    ).copy()


def test_cutmix_pastes_a_box_of_the_partner_and_the_share_is_the_area_left():
    images = numbered_batch()
    partner, share = mix_batch(images, np.random.default_rng(0), MixConfig(cutmix=1.0))
    assert sorted(partner) == list(range(16))
    for i in range(16):
        own = images[i] == 10 * i
        theirs = images[i] == 10 * partner[i]
        assert np.all(own | theirs)
        if partner[i] != i:
            assert own.mean() == pytest.approx(share[i])
            # The partner's pixels form one rectangle.
            rows, cols = np.nonzero(theirs[..., 0])
            if len(rows):
                assert len(rows) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    assert 0.2 < share.mean() < 0.8  # Beta(1, 1): about half of each image, on average


def test_mixup_blends_each_image_with_its_partner_by_its_share():
    images = numbered_batch()
    original = images.copy()
    partner, share = mix_batch(images, np.random.default_rng(1), MixConfig(mixup=1.0, mixup_alpha=0.4))
    expected = np.rint(
        share[:, None, None, None] * original + (1 - share[:, None, None, None]) * original[partner]
    )
    np.testing.assert_array_equal(images, expected.astype(np.uint8))
    assert np.all((share >= 0) & (share <= 1)) and np.ptp(share) > 0


def test_a_batch_left_alone_is_unchanged_with_full_shares():
    images = numbered_batch()
    partner, share = mix_batch(images, np.random.default_rng(2), MixConfig())
    np.testing.assert_array_equal(images, numbered_batch())
    np.testing.assert_array_equal(share, 1.0)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(cutmix=0.7, mixup=0.5), "together at most 1"),
        (dict(cutmix=-0.1), "each in \\[0, 1\\]"),
        (dict(mixup=0.5, mixup_alpha=0.0), "must be > 0"),
    ],
)
def test_mixing_settings_out_of_range_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        MixConfig(**settings)


@pytest.fixture(scope="module")
def numbered_images() -> CachedImages:
    pytest.importorskip("tensorflow", reason="the training pipeline needs TensorFlow (the [build] extra)")
    labels = np.repeat(np.arange(3, dtype=np.int32), 20)
    # Pixel value = 100 * class: a mixed pixel's value says which classes it came from.
    pixels = np.broadcast_to((100 * labels)[:, None, None, None].astype(np.uint8), (60, 16, 16, 3)).copy()
    return CachedImages(pixels=pixels, labels=labels)


def batches(data: CachedImages, mix: MixConfig | None, count: int = 4, start_step: int = 0):
    from build.make.pipeline import training_dataset

    dataset = training_dataset(
        data,
        InputSpec(height=16, width=16),
        num_classes=3,
        batch_size=8,
        augment=NO_AUGMENT,
        balance=BalanceConfig(power=0.0),
        seed=3,
        mix=mix,
        start_step=start_step,
    )
    return [(images.numpy(), targets.numpy()) for images, targets in dataset.take(count)]


def test_a_mixed_batchs_targets_follow_its_pixels(numbered_images):
    for images, targets in batches(numbered_images, MixConfig(cutmix=1.0)):
        np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
        pixel_class = np.rint((images[..., 0] + 1) * 127.5 / 100).astype(int)  # undo the normalization
        from_pixels = np.stack([(pixel_class == k).mean(axis=(1, 2)) for k in range(3)], axis=1)
        np.testing.assert_allclose(targets, from_pixels, atol=1e-6)


def test_mixing_is_a_function_of_seed_and_step_and_off_leaves_the_batches_as_they_were(numbered_images):
    mixed = batches(numbered_images, MixConfig(cutmix=0.5, mixup=0.5), count=3, start_step=5)
    again = batches(numbered_images, MixConfig(cutmix=0.5, mixup=0.5), count=1, start_step=7)
    np.testing.assert_array_equal(again[0][0], mixed[2][0])
    np.testing.assert_array_equal(again[0][1], mixed[2][1])
    # Runs made before mixing existed (no mix) resume to the batches they were trained on.
    for (a, ta), (b, tb) in zip(batches(numbered_images, None), batches(numbered_images, MixConfig())):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ta, tb)
