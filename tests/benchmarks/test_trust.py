"""The trust benchmark counts what a user sees as a refusal, per class, and reads natural photos."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks.trust import STRIPS, natural_photos, refusals, refused_by_class
from edge.errors import ImageError


def test_an_abstention_and_an_image_the_runtime_declines_both_count_as_refused():
    def classify(image):
        if image == "strip":
            raise ImageError("strip.png: a strip 200 times longer than wide; crop the photo")
        return SimpleNamespace(abstained=image == "cat")

    assert refusals(classify, ["mole", "cat", "strip", "mole"]) == [False, True, True, False]


def test_an_unreadable_file_is_not_counted_as_a_refusal_but_fails_loudly():
    def classify(image):
        raise OSError("disk gone")

    with pytest.raises(OSError):
        refusals(classify, ["mole"])


def test_refusals_per_class_show_a_class_refused_more_than_the_rest():
    table = refused_by_class(["mel", "nv", "nv", "mel", "nv", "mel"], [True, False, False, True, True, False])
    assert table == {
        "mel": {"n": 3, "refused": pytest.approx(2 / 3)},
        "nv": {"n": 3, "refused": pytest.approx(1 / 3)},
    }


def test_the_strips_are_past_the_runtime_s_aspect_limit():
    from edge.preprocess import MAX_ASPECT

    assert all(max(shape) / min(shape) > MAX_ASPECT for shape in STRIPS.values())


def test_natural_photos_are_rgb_arrays_when_scikit_image_is_installed():
    photos = natural_photos()
    if photos is None:
        pytest.skip("scikit-image is not installed (the [dev] extra installs it)")
    assert len(photos) >= 10
    assert all(photo.ndim == 3 and photo.shape[2] == 3 and photo.dtype == np.uint8 for photo in photos)


def test_msid_counts_as_seen_only_when_the_head_learned_from_that_folder(tmp_path):
    from benchmarks.trust import learned_from

    (tmp_path / "msid").mkdir()

    def classifier(abstain):
        return SimpleNamespace(card=SimpleNamespace(abstain=abstain))

    relative = tmp_path / "data" / ".." / "msid"  # the card may name it by another path
    assert learned_from(classifier({"head": {"negatives": [str(relative)]}}), tmp_path / "msid")
    assert not learned_from(classifier({"head": {"negatives": []}}), tmp_path / "msid")
    assert not learned_from(classifier({"pixel_check": {}}), tmp_path / "msid")
