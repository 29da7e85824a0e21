"""Training augmentation: seeded, exact flips and turns, a compiled warp that matches TensorFlow's kernel."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import build.make.augment as augment
from build.make.augment import make_augmenter
from build.stage_configs import AugmentConfig
from edge.preprocess import InputSpec
from tests.conftest import NO_AUGMENT


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    pytest.importorskip("tensorflow", reason="augmentation runs in TensorFlow (the [build] extra)")
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (6, 24, 24, 3)).astype(np.float32)


def test_default_augmentation_keeps_shape_dtype_and_range(batch):
    spec = InputSpec(height=24, width=24)

    out = make_augmenter(AugmentConfig(), spec, seed=0)(batch).numpy()

    assert out.shape == batch.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0
    assert np.abs(out - batch).mean() > 5  # it did change the images


def test_augmentation_is_seeded(batch):
    spec = InputSpec(height=24, width=24)

    first = make_augmenter(AugmentConfig(), spec, seed=3)(batch).numpy()
    again = make_augmenter(AugmentConfig(), spec, seed=3)(batch).numpy()
    other = make_augmenter(AugmentConfig(), spec, seed=4)(batch).numpy()

    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_no_augmentation_is_identity_and_flips_only_flip(batch):
    spec = InputSpec(height=24, width=24)

    same = make_augmenter(NO_AUGMENT, spec, seed=0)(batch).numpy()
    flipped = make_augmenter(replace(NO_AUGMENT, flip=True), spec, seed=0)(batch).numpy()

    np.testing.assert_array_equal(same, batch)
    for original, out in zip(batch, flipped):
        variants = [original, original[:, ::-1], original[::-1], original[::-1, ::-1]]
        assert any(np.array_equal(out, v) for v in variants)


def test_flips_and_quarter_turns_are_exact(batch):
    spec = InputSpec(height=24, width=24)

    out = make_augmenter(replace(NO_AUGMENT, flip=True, rotate_90=True), spec, seed=5)(batch).numpy()

    seen = set()
    for original, result in zip(batch, out):
        variants = [
            v
            for image in (original, original.transpose(1, 0, 2))
            for v in (image, image[:, ::-1], image[::-1], image[::-1, ::-1])
        ]
        matches = [i for i, v in enumerate(variants) if np.array_equal(result, v)]
        assert matches, "a flip or quarter turn must move pixels without resampling them"
        seen.add(matches[0])
    assert len(seen) > 1  # not the same choice for every image


def test_compiled_warp_matches_tensorflow_projective_transform(batch):
    from models.keras import tf

    spec = InputSpec(height=24, width=24)
    rng = tf.random.Generator.from_seed(2)
    transforms = augment._random_transforms(
        AugmentConfig(rotation=30.0, shift=0.2, zoom=0.3), spec, rng, len(batch), True
    )
    expected = tf.raw_ops.ImageProjectiveTransformV3(
        images=batch,
        transforms=transforms,
        output_shape=[24, 24],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode="REFLECT",
    ).numpy()

    warped = tf.function(augment._warp_bilinear_reflect, jit_compile=True)(batch, transforms).numpy()

    np.testing.assert_allclose(warped, expected, atol=0.05)


def test_noise_is_gaussian_with_the_configured_deviation():
    pytest.importorskip("tensorflow", reason="augmentation runs in TensorFlow (the [build] extra)")
    grey = np.full((8, 32, 32, 3), 128.0, dtype=np.float32)

    out = make_augmenter(replace(NO_AUGMENT, noise=6.0), InputSpec(height=32, width=32), seed=0)(grey).numpy()

    noise = (out - 128.0).ravel()
    assert abs(noise.mean()) < 0.1
    assert noise.std() == pytest.approx(6.0, rel=0.05)
    assert np.mean(np.abs(noise) < 6.0) == pytest.approx(0.683, abs=0.02)  # a normal's one-sigma share


def test_rectangular_input_skips_transpose(batch):
    spec = InputSpec(height=24, width=12)
    images = batch[:, :, :12]

    out = make_augmenter(replace(NO_AUGMENT, rotate_90=True), spec, seed=0)(images).numpy()

    np.testing.assert_array_equal(out, images)
