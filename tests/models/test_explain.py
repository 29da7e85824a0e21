"""Grad-CAM points at the evidence: a valid heat map, hot where the class colour is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="Grad-CAM needs TensorFlow (the [build] extra)")

from edge.preprocess import normalize  # noqa: E402
from models.explain import gradcam, gradcam_overlay, last_conv_layer, lesion_mass_share  # noqa: E402
from tests.conftest import TINY_COLOURS, TINY_SPEC  # noqa: E402

SHARED = Path(__file__).resolve().parents[2].parent / "shared"


def red_patch_image() -> tuple[np.ndarray, np.ndarray]:
    """A grey 32x32 image with a red (class 0) square in the lower right, and that square's mask."""
    pixels = np.full((TINY_SPEC.height, TINY_SPEC.width, 3), 128, dtype=np.uint8)
    mask = np.zeros(pixels.shape[:2], dtype=bool)
    mask[16:, 16:] = True
    pixels[mask] = TINY_COLOURS[0]
    return pixels, mask


def test_last_conv_layer_is_found(tiny_keras_model):
    assert last_conv_layer(tiny_keras_model).name == "pw_relu"


def test_heatmap_is_valid_and_hot_on_the_class_colour(tiny_keras_model):
    pixels, mask = red_patch_image()
    heatmap = gradcam(tiny_keras_model, normalize(pixels, TINY_SPEC), class_index=0)
    assert heatmap.shape == (TINY_SPEC.height, TINY_SPEC.width) and heatmap.dtype == np.float32
    assert np.isfinite(heatmap).all() and heatmap.min() >= 0 and heatmap.max() == pytest.approx(1.0)
    # The patch covers a quarter of the image; the red class's evidence should sit mostly there.
    assert lesion_mass_share(heatmap, mask) > 0.5


def test_overlay_keeps_the_image_shape_and_colours_it(tiny_keras_model, tmp_path):
    pixels, _ = red_patch_image()
    path = tmp_path / "reference.keras"
    tiny_keras_model.save(path)
    overlay = gradcam_overlay(path, pixels, 0, TINY_SPEC)
    assert overlay.shape == pixels.shape and overlay.dtype == np.uint8
    assert not np.array_equal(overlay, pixels)
    with pytest.raises(ValueError, match="class_index"):
        gradcam_overlay(tiny_keras_model, pixels, 7, TINY_SPEC)


def test_lesion_mass_share_by_hand():
    heatmap = np.zeros((4, 4))
    heatmap[:2] = 1.0
    mask = np.zeros((4, 4), dtype=bool)
    mask[:, :2] = True
    assert lesion_mass_share(heatmap, mask) == pytest.approx(0.5)
    assert lesion_mass_share(np.ones((4, 4)), mask) == pytest.approx(0.5)  # uniform heat = area share
    big_mask = np.kron(mask, np.ones((10, 10))).astype(np.uint8) * 255  # a larger mask is resized down
    assert lesion_mass_share(heatmap, big_mask) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="all zeros"):
        lesion_mass_share(np.zeros((4, 4)), mask)


@pytest.mark.shared_data
def test_expert_masks_score_a_centred_heatmap():
    masks = sorted((SHARED / "data" / "ham10000-fullres-sample" / "masks").glob("*_expert.png"))
    if not masks:
        pytest.skip(f"no expert masks under {SHARED}/data/ham10000-fullres-sample/masks")
    from PIL import Image

    mask = np.asarray(Image.open(masks[0]).convert("L")) > 127
    yy, xx = np.mgrid[-1:1:64j, -1:1:64j]
    centred = np.exp(-(xx**2 + yy**2) / 0.1)
    # HAM10000 lesions sit in the middle: a centred heat map lands on the lesion far above its area share.
    area = mask.mean()
    assert lesion_mass_share(centred, mask) > min(0.9, 2 * area)
