"""The image cache: decoded once through the runtime's preprocessing, reused, rebuilt when anything changes."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import build.make.cache as cache
from build.make.cache import build_cache
from edge.errors import ImageError
from edge.preprocess import InputSpec, load_image

SPEC = InputSpec(height=16, width=16)


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

    monkeypatch.setattr(cache, "load_image", counting)
    return calls


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
