"""The input pipeline: the uint8 cache, class-balanced sampling and augmentation."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import build.make.pipeline as pipeline
from build.make.pipeline import (AugmentConfig, BalanceConfig, CachedImages, build_cache, class_loss_weights,
                            class_sampling_weights, make_augmenter, training_dataset)
from edge.errors import ImageError
from edge.preprocess import InputSpec, load_image

SPEC = InputSpec(height=16, width=16)
NO_AUGMENT = AugmentConfig(flip=False, rotate_90=False, rotation=0.0, shift=0.0, zoom=0.0, brightness=0.0,
                           contrast=0.0, saturation=0.0, hue=0.0, noise=0.0)


@pytest.fixture
def image_paths(tmp_path) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        path = tmp_path / "images" / f"img{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def count_decodes(monkeypatch) -> list[str]:
    calls: list[str] = []

    def counting(source, spec):
        calls.append(str(source))
        return load_image(source, spec)

    monkeypatch.setattr(pipeline, "load_image", counting)
    return calls


# --- cache ---------------------------------------------------------------------------------------

def test_cache_holds_the_preprocessed_pixels(tmp_path, image_paths):
    pixels = build_cache(image_paths, SPEC, tmp_path / "cache", workers=2)

    assert pixels.shape == (5, 16, 16, 3) and pixels.dtype == np.uint8
    for i, path in enumerate(image_paths):
        np.testing.assert_array_equal(pixels[i], load_image(path, SPEC))
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [Path(pixels.filename).name]


def test_cache_is_reused_without_decoding(tmp_path, image_paths, monkeypatch):
    first = build_cache(image_paths, SPEC, tmp_path / "cache")
    calls = count_decodes(monkeypatch)

    again = build_cache(image_paths, SPEC, tmp_path / "cache")

    assert calls == []
    assert again.filename == first.filename
    np.testing.assert_array_equal(again, first)


def test_cache_is_rebuilt_when_the_spec_changes(tmp_path, image_paths, monkeypatch):
    first = build_cache(image_paths, SPEC, tmp_path / "cache")
    calls = count_decodes(monkeypatch)

    for spec in (InputSpec(height=12, width=12), replace(SPEC, resize="stretch")):
        rebuilt = build_cache(image_paths, spec, tmp_path / "cache")
        assert rebuilt.filename != first.filename
        assert rebuilt.shape == (5, spec.height, spec.width, 3)
    assert len(calls) == 10
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3
    assert not list((tmp_path / "cache").glob("*.tmp*"))  # no leftovers of the atomic write


def test_cache_is_rebuilt_when_an_image_changes(tmp_path, image_paths):
    first = build_cache(image_paths, SPEC, tmp_path / "cache")
    Image.new("RGB", (30, 30), (255, 0, 0)).save(image_paths[2])
    os.utime(image_paths[2], ns=(0, 10**18))  # a clearly different modification time

    rebuilt = build_cache(image_paths, SPEC, tmp_path / "cache")

    assert rebuilt.filename != first.filename
    assert (rebuilt[2] == [255, 0, 0]).all()


def test_corrupt_image_names_the_file_and_leaves_no_partial_cache(tmp_path, image_paths):
    Path(image_paths[3]).write_bytes(b"not an image")

    with pytest.raises(ImageError, match="img3.png"):
        build_cache(image_paths, SPEC, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


# --- balancing -----------------------------------------------------------------------------------

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
    dataset = training_dataset(data, SPEC, num_classes=3, batch_size=64, augment=NO_AUGMENT,
                               balance=balance, seed=0)
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
    dataset = training_dataset(imbalanced, SPEC, num_classes=3, batch_size=8, augment=NO_AUGMENT,
                               balance=BalanceConfig(power=0.0), seed=0, label_smoothing=0.1)

    images, targets = next(iter(dataset))

    assert images.shape == (8, 16, 16, 3) and images.dtype.name == "float32"
    np.testing.assert_allclose(targets.numpy().sum(axis=1), 1.0, rtol=1e-6)
    assert targets.numpy().max() == pytest.approx(0.9 + 0.1 / 3)
    # Pixel value k (the class index) normalizes to k / 127.5 - 1, and it matches the target.
    expected = np.argmax(targets.numpy(), axis=1) / 127.5 - 1
    np.testing.assert_allclose(images.numpy()[:, 0, 0, 0], expected, atol=1e-6)


# --- augmentation --------------------------------------------------------------------------------

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
        variants = [v for image in (original, original.transpose(1, 0, 2))
                    for v in (image, image[:, ::-1], image[::-1], image[::-1, ::-1])]
        matches = [i for i, v in enumerate(variants) if np.array_equal(result, v)]
        assert matches, "a flip or quarter turn must move pixels without resampling them"
        seen.add(matches[0])
    assert len(seen) > 1  # not the same choice for every image


def test_compiled_warp_matches_tensorflow_projective_transform(batch):
    from models.keras import tf

    spec = InputSpec(height=24, width=24)
    rng = tf.random.Generator.from_seed(2)
    transforms = pipeline._random_transforms(AugmentConfig(rotation=30.0, shift=0.2, zoom=0.3), spec, rng,
                                             len(batch), True)
    expected = tf.raw_ops.ImageProjectiveTransformV3(
        images=batch, transforms=transforms, output_shape=[24, 24], fill_value=0.0, interpolation="BILINEAR",
        fill_mode="REFLECT").numpy()

    warped = tf.function(pipeline._warp_bilinear_reflect, jit_compile=True)(batch, transforms).numpy()

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
