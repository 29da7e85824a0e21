"""The image cache: decode every image once, through the runtime's preprocessing, into a uint8 memory map.

The cache is a memory-mapped ``.npy`` file of shape (N, H, W, 3) written by :func:`build_cache` through
``edge.preprocess.load_image`` — the same function the phone, the Pi and the demo call — keyed by the
image list and the input spec, so a changed data set or size rebuilds it. Training, int8 calibration
and validation all read from it (``build.make.pipeline``)::

    >>> pixels = build_cache(paths, spec, run / "cache")
    >>> data = CachedImages(pixels, labels)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from build.atomic import write_with
from build.console import Progress
from edge.preprocess import InputSpec, load_image, open_rgb

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CachedImages:
    """Decoded images (memory-mapped) and their integer labels.

    ``sizes`` is set for a source-aspect cache (:func:`build_source_cache`): each image's (height,
    width) at the top left of its canvas.
    """

    pixels: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int32
    sizes: np.ndarray | None = None  # (N, 2) int32

    def source(self, index: int) -> np.ndarray:
        """Image ``index`` without its canvas margin."""
        if self.sizes is None:
            return self.pixels[index]
        height, width = self.sizes[index]
        return self.pixels[index, :height, :width]


def build_cache(
    paths: Sequence[str], spec: InputSpec, cache_dir: str | Path, *, workers: int = 0
) -> np.ndarray:
    """Decodes ``paths`` once through ``edge.preprocess`` into a memory-mapped uint8 array.

    The file name hashes the paths, their sizes and modification times, and the spec, so the cache is
    rebuilt when any of them changes and reused otherwise. Writing goes to a temporary file that is
    renamed into place, so a crash never leaves half a cache.
    """
    target = Path(cache_dir) / f"pixels-{spec.height}x{spec.width}-{_cache_key(paths, spec)}.npy"
    if not target.exists():
        _write_cache(target, paths, (spec.height, spec.width), lambda path: load_image(path, spec), workers)
    return np.load(target, mmap_mode="r")


def build_source_cache(
    paths: Sequence[str], spec: InputSpec, cache_dir: str | Path, *, workers: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Decodes ``paths`` at their own aspect onto a square canvas (``build.make.framing.canvas_side``), for
    training crops; returns the memory-mapped pixels and each image's (height, width) on its canvas.

    Decoding goes through ``edge.preprocess.open_rgb`` (orientation, colour mode, size limits), then the
    runtime's filter scales the image to the canvas. Cached like :func:`build_cache`.
    """
    from build.make.framing import canvas_side, fit_on_canvas

    side = canvas_side(spec)
    target = Path(cache_dir) / f"sources-{side}-{_cache_key(paths, spec)}.npy"
    sizes_file = target.with_name(target.stem + "-sizes.npy")
    if not target.exists():
        sizes = np.zeros((len(paths), 2), dtype=np.int32)

        def decode(path_index: tuple[str, int]) -> np.ndarray:
            path, index = path_index
            canvas, sizes[index] = fit_on_canvas(open_rgb(path, max_pixels=spec.max_pixels), side)
            return canvas

        _write_cache(
            target,
            list(zip(paths, range(len(paths)))),
            (side, side),
            decode,
            workers,
            before_rename=lambda: write_with(sizes_file, lambda tmp: np.save(tmp, sizes)),
        )
    return np.load(target, mmap_mode="r"), np.load(sizes_file)


def _write_cache(
    target: Path, items: Sequence, shape: tuple[int, int], decode, workers: int, before_rename=None
) -> None:
    """Decodes every item into a temporary (N, *shape, 3) memory map renamed to ``target`` when complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = target.with_suffix(f".tmp{os.getpid()}.npy")
    pixels = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(items), *shape, 3))

    def fill(i: int) -> None:
        pixels[i] = decode(items[i])

    progress = Progress(f"cache: decoding into {target}", len(items))
    try:
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            for done, _ in enumerate(pool.map(fill, range(len(items))), start=1):
                progress.update(done)
        progress.close()
        pixels.flush()
        if before_rename is not None:
            before_rename()
    except BaseException:
        # A corrupt image (ImageError names it) or Ctrl-C: leave no multi-GB partial file behind.
        tmp.unlink(missing_ok=True)
        raise
    pixels = None  # close the memory map before the rename  # noqa: F841
    os.replace(tmp, target)
    log.info(
        "cache: %d images at %dx%d in %.1f s -> %s",
        len(items),
        shape[0],
        shape[1],
        time.perf_counter() - started,
        target,
    )


def _cache_key(paths: Sequence[str], spec: InputSpec) -> str:
    digest = hashlib.sha256(json.dumps(asdict(spec), sort_keys=True).encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
