"""The images the abstain head learns to refuse: other kinds of photos, and images no camera would take.

``export.abstain_negatives`` names data sets that are not the training data's kind (for the HAM10000
model, the MSID clinical photos). Only their *fit half* is used — the images whose file name hashes
even (:func:`in_fit_half`) — so a benchmark can measure the head on the other half, which it never saw
(``benchmarks.trust``). Synthetic noise, flat, gradient and block images are always added, drawn with
another seed than the benchmark's::

    >>> pixels = negative_images(config.export.abstain_negatives, spec)
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge.preprocess import InputSpec, load_image

PER_SOURCE = 1000  # negative images per source, at most (a seeded sample of its fit half)
SYNTHETIC_PER_KIND = 20
# benchmarks.trust draws its synthetic images with seed 0; the head learns from another draw.
SYNTHETIC_SEED = 1


def in_fit_half(path: str | Path) -> bool:
    """Whether the head may learn from this negative image: its file name's CRC-32 is even."""
    return zlib.crc32(Path(path).name.encode()) % 2 == 0


def negative_paths(
    sources: Sequence[str | Path], *, per_source: int = PER_SOURCE, seed: int = 0
) -> list[str]:
    """The fit half of each negative source (any layout ``load_dataset`` reads), at most ``per_source``
    of each, in a seeded order.

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
        found = sorted(p for p in load_dataset(source)["path"] if in_fit_half(p))
        rng = np.random.default_rng(seed)
        paths += [found[i] for i in np.sort(rng.permutation(len(found))[:per_source])]
    return paths


def negative_images(sources: Sequence[str | Path], spec: InputSpec, *, seed: int = 0) -> list[np.ndarray]:
    """The negative images framed as the runtime frames them: the sources' fit halves and synthetic images."""
    from build.analysis.trust import synthetic_images

    synthetic = synthetic_images(SYNTHETIC_PER_KIND, (spec.height, spec.width), seed=SYNTHETIC_SEED)
    return [load_image(path, spec) for path in negative_paths(sources, seed=seed)] + [
        image for images in synthetic.values() for image in images
    ]
