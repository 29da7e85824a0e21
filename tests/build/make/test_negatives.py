"""The abstain head's negative images: only the fit half of each source, so a benchmark can use the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from build.make.negatives import in_fit_half, negative_paths, negative_sources
from build.make.framing import canvas_side
from edge.preprocess import InputSpec

SPEC = InputSpec(height=24, width=24, resize="stretch")


def _folder_per_class(root: Path, n: int = 40) -> Path:
    for index in range(n):
        folder = root / ("Rash" if index % 2 else "Normal")
        folder.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (30, 20), (index * 5, 100, 50)).save(folder / f"photo{index}.png")
    return root


def test_the_fit_half_is_about_half_and_follows_the_file_name_not_its_folder():
    names = [f"photo{i}.png" for i in range(1000)]
    share = np.mean([in_fit_half(name) for name in names])
    assert 0.45 < share < 0.55
    assert all(in_fit_half(Path("a") / n) == in_fit_half(Path("/b/c") / n) for n in names[:50])


def test_the_head_learns_only_from_the_fit_half_at_most_per_source_images(tmp_path):
    root = _folder_per_class(tmp_path / "clinical")
    paths = negative_paths([root])
    assert paths and all(in_fit_half(p) for p in paths)
    everything = {str(p) for p in root.rglob("*.png")}
    assert {p for p in everything if in_fit_half(p)} == set(paths)
    assert len(negative_paths([root], per_source=3)) == 3
    unseen = negative_paths([root], fit_half=False)  # what the head gate measures it on
    assert unseen and not set(unseen) & set(paths) and set(unseen) | set(paths) == everything


def test_negative_sources_are_decoded_at_their_own_aspect_like_training_sources(tmp_path):
    root = _folder_per_class(tmp_path / "clinical", n=10)
    sources = negative_sources([root], SPEC)
    assert len(sources) == len(negative_paths([root]))
    side = canvas_side(SPEC)
    assert all(s.shape == (round(side * 20 / 30), side, 3) and s.dtype == np.uint8 for s in sources)
    assert negative_sources([], SPEC) == []


def test_a_missing_source_names_itself_and_the_config_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere.*export\.abstain_negatives"):
        negative_paths([tmp_path / "nowhere"])
