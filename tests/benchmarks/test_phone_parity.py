"""The phone-parity benchmark's in-graph pool simulation sees what such a network would see."""

from __future__ import annotations

import numpy as np
from PIL import Image

from benchmarks.phone_parity import pooled_pixels
from build.make.framing import resize_region


def test_a_1x1_pool_is_the_unantialiased_resize_itself(tmp_path):
    photo = np.random.default_rng(0).integers(0, 256, size=(90, 120, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    expected = resize_region(photo, (0.0, 0.0, 120.0, 90.0), (16, 12), "point")
    np.testing.assert_array_equal(pooled_pixels(tmp_path / "photo.png", (16, 12), 1), expected)


def test_a_larger_pool_averages_away_the_aliasing_of_a_fine_pattern(tmp_path):
    # A white line every third pixel (mean 85): an unantialiased resize hits or misses lines by where its
    # samples fall; a 4x4 pool sees close to their mean everywhere.
    lines = np.zeros((400, 400, 3), dtype=np.uint8)
    lines[:, ::3] = 255
    Image.fromarray(lines).save(tmp_path / "lines.png")
    bare = pooled_pixels(tmp_path / "lines.png", (21, 21), 1).astype(float)
    pooled = pooled_pixels(tmp_path / "lines.png", (21, 21), 4).astype(float)
    assert pooled.shape == (21, 21, 3)
    assert abs(pooled.mean() - 85) < abs(bare.mean() - 85)
    assert pooled.std() < bare.std() / 2
