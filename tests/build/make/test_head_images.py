"""What the abstain head learns from: every image in three views (runtime, phone, sharper camera), the
negatives framed exactly as the training images, so framing alone cannot tell the two kinds apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from build.make.head_images import head_negative_images, head_views
from build.make.negatives import SYNTHETIC_KINDS, SYNTHETIC_PER_KIND, negative_paths
from build.make.framing import runtime_view
from edge.preprocess import InputSpec
from tests.build.make.test_framing import detail, lesion_photo

SPEC = InputSpec(height=32, width=32, resize="stretch")


def test_each_image_comes_in_the_runtimes_view_a_phones_and_a_sharper_cameras():
    soft = [
        np.asarray(Image.fromarray(lesion_photo(80, 60, seed=i)).resize((40, 30), Image.Resampling.BILINEAR))
        for i in range(6)
    ]
    views = head_views(soft, SPEC, np.random.default_rng(0))
    assert len(views) == 18 and all(v.shape == (32, 32, 3) and v.dtype == np.uint8 for v in views)
    runtime, phone, sharper = views[:6], views[6:12], views[12:]
    assert all((r == runtime_view(s, SPEC)).all() for r, s in zip(runtime, soft))
    assert all(np.abs(p.astype(int) - r).mean() > 1 for p, r in zip(phone, runtime))
    assert np.mean([detail(s) for s in sharper]) > 1.3 * np.mean([detail(r) for r in runtime])


def test_negatives_come_in_the_same_three_views_plus_synthetic_images(tmp_path: Path):
    for index in range(12):
        folder = tmp_path / ("Rash" if index % 2 else "Normal")
        folder.mkdir(exist_ok=True)
        Image.fromarray(lesion_photo(45, 30, seed=index)).save(folder / f"photo{index}.png")
    images, groups = head_negative_images([tmp_path], SPEC, seed=0)
    fit_half = len(negative_paths([tmp_path]))
    # Synthetic images drawn at the input size as they are, and drawn at a photo's size in three views.
    synthetic = 4 * len(SYNTHETIC_KINDS) * SYNTHETIC_PER_KIND
    assert fit_half and len(images) == 3 * fit_half + synthetic
    assert all(image.shape == (32, 32, 3) for image in images)
    # Each photo's three views share a group; every synthetic image is its own or its views'.
    assert len(groups) == len(images) and len(np.unique(groups)) == fit_half + 2 * synthetic // 4
    assert len(head_negative_images([], SPEC)[0]) == synthetic


def test_synthetic_photos_reach_the_head_as_the_runtime_resizes_a_saved_file():
    # A noise photo resized to the input is far smoother than noise drawn at it (a saved noise PNG was
    # answered by a head that had learned only the latter): the head learns from both.
    from build.make.negatives import photo_size, synthetic_images

    def roughness(image):  # mean difference between horizontal neighbours
        return np.abs(np.diff(image.astype(float), axis=1)).mean()

    drawn = synthetic_images(1, (SPEC.height, SPEC.width))["noise"][0]
    resized = runtime_view(synthetic_images(1, photo_size(SPEC))["noise"][0], SPEC)
    assert roughness(resized) < 0.8 * roughness(drawn)
    # Noise as a resized file shows it: a wide spread of values, rougher than blocks, smoother than drawn
    # noise (images drawn at the input size: 4 of 100 look like that).
    smoothed = [
        image
        for image in head_negative_images([], SPEC)[0]
        if image.std() > 55 and 25 < roughness(image) < 0.8 * roughness(drawn)
    ]
    assert len(smoothed) >= SYNTHETIC_PER_KIND
