"""Training framing: source-aspect cache, random-resized crops, other runtimes' resampling, blur, JPEG;
and batches that are a function of (seed, step), so a resumed run sees what an uninterrupted one saw."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from build.make.framing import (
    FILTERS,
    canvas_side,
    frame_batch,
    random_crop,
    recompress,
    resize_region,
    runtime_view,
    shades_of_gray,
    sharpen,
)
from build.stage_configs import AugmentConfig, BalanceConfig
from build.make.cache import CachedImages, build_source_cache
from edge.preprocess import InputSpec, load_image
from tests.conftest import NO_AUGMENT

SPEC = InputSpec(height=32, width=32, resize="stretch")


def lesion_photo(width: int = 40, height: int = 30, seed: int = 0) -> np.ndarray:
    """A 4:3 photo: a dark disc on textured skin, so crops and filters change real pixels."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:height, :width]
    skin = np.stack([200 + 20 * np.sin(xs), 150 + 20 * np.cos(ys), 130 + 0 * xs], axis=-1).astype(np.float32)
    disc = ((xs - width / 2) ** 2 + (ys - height / 2) ** 2) < (height / 3) ** 2
    skin[disc] = (90, 50, 40)
    return np.clip(skin + rng.normal(0, 6, skin.shape), 0, 255).astype(np.uint8)


def test_the_default_crop_is_the_runtimes_whole_stretched_frame():
    rng = np.random.default_rng(0)
    assert random_crop(40, 30, NO_AUGMENT, rng) == (0.0, 0.0, 40.0, 30.0)
    photo = lesion_photo()
    framed = frame_batch([photo], SPEC, NO_AUGMENT, rng)[0]
    np.testing.assert_array_equal(framed, runtime_view(photo, SPEC))


@pytest.mark.parametrize("seed", range(20))
def test_random_crops_stay_inside_the_image_within_the_area_and_aspect_asked(seed):
    config = replace(NO_AUGMENT, crop_area=(0.35, 1.0), crop_aspect=(0.75, 4 / 3))
    left, top, right, bottom = random_crop(200, 150, config, np.random.default_rng(seed))
    assert 0 <= left < right <= 200 and 0 <= top < bottom <= 150
    area = (right - left) * (bottom - top) / (200 * 150)
    assert 0.35 * 0.74 <= area <= 1.0  # clipping a too-wide crop to the image can only shrink it
    assert 0.74 <= (right - left) / (bottom - top) <= 200 / 150 + 1e-9


def test_crops_show_other_framings_than_the_runtime_does():
    config = replace(NO_AUGMENT, crop_area=(0.35, 1.0), crop_aspect=(0.75, 4 / 3))
    photo = lesion_photo()
    framed = frame_batch([photo] * 8, SPEC, config, np.random.default_rng(1))
    whole = runtime_view(photo, SPEC)
    assert all(np.abs(f.astype(int) - whole).mean() > 2 for f in framed)


def test_every_filter_resizes_and_they_differ_on_detail():
    photo = lesion_photo(80, 60)
    box = (0.0, 0.0, 80.0, 60.0)
    results = {name: resize_region(photo, box, (32, 32), name) for name in FILTERS}
    assert all(r.shape == (32, 32, 3) and r.dtype == np.uint8 for r in results.values())
    # Unantialiased point sampling keeps more of the high-frequency texture than Pillow's box filter.
    assert np.std(results["point"].astype(float)) > np.std(results["box"].astype(float))
    flat = np.full((60, 80, 3), 77, np.uint8)
    assert all((resize_region(flat, box, (32, 32), name) == 77).all() for name in FILTERS)
    with pytest.raises(ValueError, match="resample filter must be one of"):
        resize_region(photo, box, (32, 32), "cubic-ish")


def test_jpeg_and_blur_degrade_the_image():
    photo = runtime_view(lesion_photo(), SPEC)
    assert np.abs(recompress(photo, 30).astype(int) - photo).mean() > 1
    config = replace(NO_AUGMENT, blur=1.5, jpeg=1.0, jpeg_quality=(40, 60))
    framed = frame_batch([lesion_photo()] * 4, SPEC, config, np.random.default_rng(0))
    assert all(np.abs(f.astype(int) - photo).mean() > 1 for f in framed)


def detail(pixels: np.ndarray) -> float:
    """Variance of the Laplacian: how much fine detail an image shows."""
    grey = pixels.astype(float).mean(axis=-1)
    return float(
        np.var(4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:])
    )


def test_sharpening_shows_a_softer_source_with_the_detail_of_a_sharper_camera():
    soft = np.asarray(Image.fromarray(lesion_photo(80, 60)).resize((40, 30), Image.Resampling.BILINEAR))
    assert detail(sharpen(soft, 2.0, 150)) > 1.5 * detail(soft)
    flat = np.full((30, 40, 3), 77, np.uint8)
    assert (sharpen(flat, 2.0, 150) == 77).all()
    plain = frame_batch([soft] * 4, SPEC, NO_AUGMENT, np.random.default_rng(0))
    sharpened = frame_batch([soft] * 4, SPEC, replace(NO_AUGMENT, sharpen=1.0), np.random.default_rng(0))
    assert all(detail(s) > detail(p) for s, p in zip(sharpened, plain))


def channel_lights(pixels: np.ndarray) -> np.ndarray:
    """Each channel's 6-mean: the light's colour as Shades of Gray sees it."""
    return np.power(np.mean(np.power(pixels.astype(np.float64), 6), axis=(0, 1)), 1 / 6)


def test_colour_constancy_takes_a_devices_colour_cast_away():
    photo = lesion_photo()
    neutral = shades_of_gray(photo)
    cast = np.clip(photo * np.array([1.15, 1.0, 0.75]), 0, 255).astype(np.uint8)  # a warm light
    corrected = shades_of_gray(cast)
    lights = channel_lights(corrected)
    assert np.ptp(lights) / lights.mean() < 0.01  # a grey light now
    # The same lesion under either light looks alike once corrected, unlike before.
    assert mean_difference(corrected, neutral) < 0.25 * mean_difference(cast, photo)


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(float) - b.astype(float)).mean())


def test_colour_constancy_leaves_a_grey_lit_image_and_a_dark_channel_alone():
    grey = np.stack([np.arange(40, dtype=np.uint8).reshape(5, 8)] * 3, axis=-1) * 5
    np.testing.assert_array_equal(shades_of_gray(grey), grey)
    no_blue = lesion_photo().copy()
    no_blue[..., 2] = 0
    np.testing.assert_array_equal(shades_of_gray(no_blue), no_blue)


def test_training_frames_are_colour_corrected_in_the_share_asked():
    cast = np.clip(lesion_photo() * np.array([1.15, 1.0, 0.75]), 0, 255).astype(np.uint8)
    config = replace(NO_AUGMENT, color_constancy=0.5)
    framed = frame_batch([cast] * 40, SPEC, config, np.random.default_rng(0))
    corrected = [np.ptp(channel_lights(f)) / channel_lights(f).mean() < 0.02 for f in framed]
    assert 10 <= sum(corrected) <= 30
    assert config.frames


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(crop_area=(0.0, 1.0)), "crop_area"),
        (dict(crop_area=(0.9, 0.5)), "crop_area"),
        (dict(crop_aspect=(1.5, 1.0)), "crop_aspect"),
        (dict(resample_filters=("bilinear", "sinc")), "sinc"),
        (dict(jpeg=1.5), "jpeg"),
        (dict(jpeg_quality=(90, 40)), "jpeg_quality"),
        (dict(sharpen=1.5), "sharpen"),
        (dict(color_constancy=-0.2), "color_constancy"),
    ],
)
def test_bad_framing_settings_are_refused_by_name(bad, message):
    with pytest.raises(ValueError, match=message):
        replace(NO_AUGMENT, **bad)


def test_the_source_cache_keeps_each_images_aspect_and_its_runtime_view(tmp_path):
    paths = []
    for i, (width, height) in enumerate([(40, 30), (30, 40), (50, 50)]):
        paths.append(str(tmp_path / f"img{i}.png"))
        Image.fromarray(lesion_photo(width, height, seed=i)).save(paths[-1])

    pixels, sizes = build_source_cache(paths, SPEC, tmp_path / "cache")

    side = canvas_side(SPEC)
    assert pixels.shape == (3, side, side, 3) and side == 40
    assert sizes.tolist() == [[30, 40], [40, 30], [40, 40]]
    data = CachedImages(pixels=pixels, labels=np.zeros(3, np.int32), sizes=sizes)
    # Images that fit the canvas are kept as they are, so the runtime's view of them is exact; a larger
    # one is scaled to the canvas first, one resampling more than the runtime does.
    for i in (0, 1):
        np.testing.assert_array_equal(runtime_view(data.source(i), SPEC), load_image(paths[i], SPEC))
    difference = runtime_view(data.source(2), SPEC).astype(int) - load_image(paths[2], SPEC)
    assert np.abs(difference).mean() < 4
    again, _ = build_source_cache(paths, SPEC, tmp_path / "cache")
    assert again.filename == pixels.filename  # reused, not decoded again


# --- batches as a function of (seed, step) ------------------------------------------------------------


@pytest.fixture(scope="module")
def photos() -> CachedImages:
    pytest.importorskip("tensorflow", reason="the training pipeline needs TensorFlow (the [build] extra)")
    side = canvas_side(SPEC)
    pixels = np.zeros((12, side, side, 3), np.uint8)
    for i in range(12):
        pixels[i, :30, :40] = lesion_photo(seed=i)
    return CachedImages(
        pixels=pixels,
        labels=np.arange(12, dtype=np.int32) % 3,
        sizes=np.tile([30, 40], (12, 1)).astype(np.int32),
    )


def batches(data: CachedImages, *, start_step: int = 0, seed: int = 0, count: int = 3) -> list[np.ndarray]:
    from build.make.pipeline import training_dataset

    augment = replace(
        AugmentConfig(),
        crop_area=(0.35, 1.0),
        crop_aspect=(0.75, 4 / 3),
        resample_filters=tuple(FILTERS),
        blur=1.0,
        jpeg=0.5,
    )
    dataset = training_dataset(
        data,
        SPEC,
        num_classes=3,
        batch_size=4,
        augment=augment,
        balance=BalanceConfig(),
        seed=seed,
        start_step=start_step,
    )
    return [images.numpy() for images, _ in dataset.take(count)]


def test_a_batch_depends_only_on_seed_and_step(photos):
    uninterrupted = batches(photos, count=4)
    resumed = batches(photos, start_step=2, count=2)

    np.testing.assert_array_equal(resumed[0], uninterrupted[2])
    np.testing.assert_array_equal(resumed[1], uninterrupted[3])
    assert not np.array_equal(uninterrupted[0], uninterrupted[1])
    assert not np.array_equal(batches(photos, seed=1, count=1)[0], uninterrupted[0])


# --- best weights and the weight average --------------------------------------------------------------


class Weights:
    """A stand-in model for the weight files: get_weights() only."""

    def __init__(self, value: float):
        self.value = value

    def get_weights(self):
        return [np.full(2, self.value)]


def best_value(path) -> float:
    with np.load(path) as arrays:
        return float(arrays["arr_0"][0])


def test_best_weights_never_run_ahead_of_the_state(tmp_path):
    from build.make.reproducible import BestWeights

    best = BestWeights(tmp_path / "best.weights.npz")
    best.stage(Weights(1.0), epoch=1)
    best.settle({"best_epoch": 1})
    assert best_value(best.path) == 1.0

    # Killed after epoch 2's better weights were written but before state.json said so.
    best.stage(Weights(2.0), epoch=2)
    best.settle({"best_epoch": 1})
    assert best_value(best.path) == 1.0 and not list(tmp_path.glob("best-pending-*"))

    # Killed after state.json recorded epoch 3 as the best but before the rename.
    best.stage(Weights(3.0), epoch=3)
    best.settle({"best_epoch": 3})
    assert best_value(best.path) == 3.0 and not list(tmp_path.glob("best-pending-*"))


def test_the_weight_average_is_swapped_in_and_the_raw_weights_come_back():
    pytest.importorskip("tensorflow", reason="needs TensorFlow (the [build] extra)")
    from build.config import TrainConfig
    from build.make.reproducible import averaged_weights
    from build.make.train import make_optimizer
    from models.keras import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, kernel_initializer="zeros")])
    optimizer = make_optimizer(TrainConfig(optimizer="sgd", ema=0.5, head_learning_rate=1.0))
    model.compile(optimizer=optimizer, loss="mse")
    x, y = np.ones((4, 2), np.float32), np.full((4, 1), 10.0, np.float32)
    model.fit(x, y, batch_size=4, epochs=3, verbose=0)
    raw = [w.copy() for w in model.get_weights()]

    with averaged_weights(model, optimizer):
        averaged = [w.copy() for w in model.get_weights()]
    after = model.get_weights()

    assert not np.allclose(averaged[0], raw[0])  # the average trails the raw weights
    for a, b in zip(after, raw):
        np.testing.assert_array_equal(a, b)  # fit() did not overwrite them, and the swap gave them back
