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
    images = head_negative_images([tmp_path], SPEC, seed=0)
    fit_half = len(negative_paths([tmp_path]))
    assert fit_half and len(images) == 3 * fit_half + len(SYNTHETIC_KINDS) * SYNTHETIC_PER_KIND
    assert all(image.shape == (32, 32, 3) for image in images)
    assert len(head_negative_images([], SPEC)) == len(SYNTHETIC_KINDS) * SYNTHETIC_PER_KIND
