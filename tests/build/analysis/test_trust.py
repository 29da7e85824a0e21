"""The abstain rule: fitted on dermoscopy, it answers dermoscopy and refuses noise, flat, clinical photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from build.analysis.trust import acceptance_rate, fit_abstain_rule, measure_abstain
from build.make.negatives import synthetic_images
from edge.abstain import FEATURE_NAMES, abstain_reason, image_features

SHARED = Path(__file__).resolve().parents[3].parent / "shared"
SIZE = (96, 96)


def lesion_like(n: int, seed: int) -> list[np.ndarray]:
    """Dermoscopy-like pictures: pinkish skin, a dark brown blob in the middle, dark lens corners."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[-1 : 1 : SIZE[0] * 1j, -1 : 1 : SIZE[1] * 1j]
    images = []
    for _ in range(n):
        skin = rng.uniform([200, 140, 130], [240, 180, 170])
        lesion = rng.uniform([90, 50, 30], [150, 100, 80])
        radius = rng.uniform(0.25, 0.5)
        blob = np.exp(-((xx - rng.normal(0, 0.05)) ** 2 + (yy - rng.normal(0, 0.05)) ** 2) / radius**2)[
            ..., None
        ]
        vignette = np.clip(1.25 - 0.45 * np.hypot(xx, yy), 0.3, 1)[..., None]
        image = (skin * (1 - blob) + lesion * blob) * vignette + rng.normal(0, 3, (*SIZE, 3))
        images.append(np.clip(image, 0, 255).astype(np.uint8))
    return images


@pytest.fixture(scope="module")
def lesions() -> dict[str, list[np.ndarray]]:
    return {"train": lesion_like(120, 0), "val": lesion_like(60, 1), "test": lesion_like(60, 2)}


def test_pixel_check_answers_lesions_and_refuses_noise_and_flat(lesions):
    # Without validation probabilities the rule is the pixel check alone.
    rule = fit_abstain_rule(lesions["train"], lesions["val"], None, accept_rate=0.95, pixel_quantile=0.95)
    assert rule["min_confidence"] is None
    assert acceptance_rate(rule, lesions["test"]) >= 0.85
    synthetic = synthetic_images(10, SIZE, seed=3)
    for kind, images in synthetic.items():
        assert acceptance_rate(rule, images) == 0.0, kind
    reason = abstain_reason(np.array([0.9, 0.1]), synthetic["noise"][0], rule)
    assert reason is not None and "dermoscopy" in reason


def test_rule_keeps_accept_rate_on_validation_and_sets_confidence(lesions):
    rng = np.random.default_rng(4)
    val_probs = rng.dirichlet([2, 1, 1], size=len(lesions["val"]))
    rule = fit_abstain_rule(lesions["train"], lesions["val"], val_probs, accept_rate=0.9, pixel_quantile=0.95)
    assert rule["val_accepted"] >= 0.9
    assert acceptance_rate(rule, lesions["val"], val_probs) == pytest.approx(rule["val_accepted"])
    assert 1 / 3 < rule["min_confidence"] < 1
    # On an image the pixel check accepts, a sure answer passes and a coin toss is refused as unsure.
    accepted = [img for img in lesions["val"] if abstain_reason(np.array([1.0, 0, 0]), img, rule) is None]
    assert len(accepted) >= 0.9 * len(lesions["val"])
    assert "unsure" in abstain_reason(np.array([0.34, 0.33, 0.33]), accepted[0], rule)


def test_rule_is_plain_json_and_edge_reads_it_back(lesions):
    rule = fit_abstain_rule(lesions["train"], lesions["val"], None)
    restored = json.loads(json.dumps(rule))
    assert restored["min_confidence"] is None
    image = lesions["test"][0]
    probs = np.array([0.6, 0.4])
    assert abstain_reason(probs, image, restored) == abstain_reason(probs, image, rule)
    renamed = {**restored, "pixel_check": {**restored["pixel_check"], "features": ["mean_r"]}}
    with pytest.raises(ValueError, match="refit"):
        abstain_reason(probs, image, renamed)


def test_empty_rule_never_abstains():
    assert abstain_reason(np.array([0.2, 0.2, 0.6]), synthetic_images(1, SIZE)["noise"][0], {}) is None


def test_features_do_not_depend_much_on_input_size(lesions):
    from PIL import Image

    image = lesions["test"][0]
    bigger = np.asarray(Image.fromarray(image).resize((224, 224), Image.Resampling.BILINEAR))
    small, large = image_features(image), image_features(bigger)
    assert small.shape == (len(FEATURE_NAMES),) and np.isfinite(small).all()
    colour = slice(0, 2)  # mean red and green agree across sizes
    np.testing.assert_allclose(small[colour], large[colour], atol=0.02)


def test_too_few_training_images_is_a_clear_error(lesions):
    with pytest.raises(ValueError, match="too few"):
        fit_abstain_rule(lesions["train"][:10], lesions["val"], None)


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_dermoscopy_accepted_and_clinical_photos_refused():
    if not (SHARED / "data" / "ham10000").is_dir() or not (SHARED / "data" / "msid").is_dir():
        pytest.skip(f"shared data not found at {SHARED}; this test needs ../shared/data/ham10000 and msid")
    from build.make.datasets import load_dataset, split_by_group
    from build.stage_configs import SplitConfig
    from edge.preprocess import InputSpec, load_image

    spec = InputSpec(224, 224)
    ham = split_by_group(load_dataset(SHARED / "data" / "ham10000"), SplitConfig(seed=42))
    msid = load_dataset(SHARED / "data" / "msid")

    def pixels(split: str, n: int) -> list[np.ndarray]:
        paths = ham.loc[ham["split"] == split, "path"].sample(n, random_state=0)
        return [load_image(p, spec) for p in paths]

    rule = fit_abstain_rule(pixels("train", 500), pixels("val", 200), None)
    report = measure_abstain(
        rule,
        pixels("test", 200),
        {"msid": [load_image(p, spec) for p in msid["path"].iloc[::4]], **synthetic_images(5, spec.size)},
    )
    assert report.accepted_in_distribution >= 0.9
    # 191 of the 763 photos (binomial standard error ~2.6 pt): 0.843 with today's sample of training
    # images, >= 0.85 with the one before the duplicate-lesion merge moved 9 images between splits.
    # `python -m benchmarks.trust` measures a bundle's rule on all of them.
    assert report.rejected["msid"] >= 0.8
    # The same lesions at the original 600x450 must pass too: the rule may not fingerprint a resize pipeline.
    originals = sorted((SHARED / "data" / "ham10000-fullres-sample" / "images").glob("*.jpg"))[:40]
    assert acceptance_rate(rule, [load_image(p, spec) for p in originals]) >= 0.9
    assert all(report.rejected[kind] == 1.0 for kind in ("noise", "flat", "gradient", "blocks"))
