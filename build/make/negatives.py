"""The images the abstain head learns to refuse: other kinds of photos, and images no camera would take.

``export.abstain_negatives`` names data sets that are not the training data's kind (for the HAM10000
model, the MSID clinical photos). Only their *fit half* is used — the images whose file name hashes
even (:func:`in_fit_half`) — so a benchmark can measure the head on the other half, which it never saw
(``benchmarks.trust``). Synthetic noise, flat, gradient and block images (:func:`synthetic_images`) are
always added, drawn with another seed than the benchmark's, both at the model's input size and at a
photo's (:func:`photo_size`), which reach the model resized as a saved file would (a 300x300 noise PNG,
resized to 192 px, was answered "Measles 97 %" by a head that refused all noise drawn at 192 px).
``build.make.head_images`` frames the sources as it frames training images::

    >>> sources = negative_sources(config.export.abstain_negatives, spec)
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge.preprocess import InputSpec, open_rgb

SYNTHETIC_KINDS = ("noise", "flat", "coloured_noise", "gradient", "blocks")
PER_SOURCE = 1000  # negative images per source, at most (a seeded sample of its fit half)
SYNTHETIC_PER_KIND = 20
# benchmarks.trust draws its synthetic images with seed 0; the head learns from another draw.
SYNTHETIC_SEED = 1


def in_fit_half(path: str | Path) -> bool:
    """Whether the head may learn from this negative image: its file name's CRC-32 is even."""
    return zlib.crc32(Path(path).name.encode()) % 2 == 0


def negative_paths(
    sources: Sequence[str | Path], *, per_source: int = PER_SOURCE, seed: int = 0, fit_half: bool = True
) -> list[str]:
    """The fit half of each negative source (any layout ``load_dataset`` reads), at most ``per_source``
    of each, in a seeded order; with ``fit_half=False`` the other half, which the head never sees.

    Raises:
        FileNotFoundError: A source is missing (the message names it and the config key).
    """
    from build.make.datasets import load_dataset

    paths = []
    for source in sources:
        if not Path(source).exists():
            raise FileNotFoundError(
                f"abstain negative source {source} not found; fix or remove it in export.abstain_negatives"
            )
        found = sorted(p for p in load_dataset(source)["path"] if in_fit_half(p) == fit_half)
        rng = np.random.default_rng(seed)
        paths += [found[i] for i in np.sort(rng.permutation(len(found))[:per_source])]
    return paths


def negative_sources(sources: Sequence[str | Path], spec: InputSpec, *, seed: int = 0) -> list[np.ndarray]:
    """The sources' fit halves decoded as training images are cached: each at its own aspect, its long
    side the canvas side of a model of ``spec`` (``build.make.framing.canvas_side``), ready to be framed.

    Raises:
        FileNotFoundError: A source is missing.
        edge.preprocess.ImageError: An image cannot be read (the message names it).
    """
    from build.make.framing import canvas_side, fit_on_canvas

    side = canvas_side(spec)
    images = []
    for path in negative_paths(sources, seed=seed):
        canvas, (height, width) = fit_on_canvas(open_rgb(path, max_pixels=spec.max_pixels), side)
        images.append(canvas[:height, :width])
    return images


def photo_size(spec: InputSpec) -> tuple[int, int]:
    """(height, width) of a synthetic "photo": 4:3 and 1.5x the model's input, so the runtime resizes it
    and its resampling smooths noise into something softer than any image drawn at the input size."""
    return round(1.5 * spec.height), 2 * spec.width


def synthetic_images(
    n_per_kind: int, size: tuple[int, int] = (224, 224), seed: int = 0
) -> dict[str, list[np.ndarray]]:
    """Images no camera pointed at skin would produce: uniform noise, flat colours, coloured noise,
    colour gradients and large colour blocks; ``n_per_kind`` of each, keyed by SYNTHETIC_KINDS."""
    rng = np.random.default_rng(seed)
    height, width = size
    makers = {
        "noise": lambda: rng.integers(0, 256, (height, width, 3)),
        "flat": lambda: np.broadcast_to(rng.integers(0, 256, 3), (height, width, 3)),
        "coloured_noise": lambda: rng.normal(
            rng.uniform(60, 200, 3), rng.uniform(10, 40), (height, width, 3)
        ),
        "gradient": lambda: (
            (
                np.linspace(0, 1, height)[:, None, None] * rng.uniform(0, 255, 3)
                + np.linspace(1, 0, height)[:, None, None] * rng.uniform(0, 255, 3)
            )
            * np.ones((1, width, 1))
        ),
        "blocks": lambda: np.kron(
            rng.integers(0, 256, (8, 8, 3)), np.ones((-(-height // 8), -(-width // 8), 1))
        )[:height, :width],
    }
    return {
        kind: [np.clip(makers[kind](), 0, 255).astype(np.uint8) for _ in range(n_per_kind)]
        for kind in SYNTHETIC_KINDS
    }
