"""Training input throughput: our cache + tf.data pipeline against a seed-style ImageDataGenerator.

Both sides read the same HAM10000 images, at the same size and batch, with the same geometric and
brightness augmentation (rotation, shift, zoom, flips, brightness from ``AugmentConfig``; ours adds its
colour jitter and noise on top), and are timed in the same process, one after the other:

    python -m benchmarks.pipeline                       # 2,000 images, 40 batches of 32 at 192x192
    python -m benchmarks.pipeline --images 10015 --batches 100 --json runs/bench/pipeline.json

The one-off decode into the uint8 cache is timed and reported separately; the steady-state numbers
exclude it (a training run builds the cache once and reads it every epoch).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from build.make.datasets import load_dataset
from build.make.pipeline import training_dataset
from build.stage_configs import AugmentConfig, BalanceConfig
from build.make.cache import CachedImages, build_cache
from edge.preprocess import InputSpec

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "ham10000"


@dataclass(frozen=True)
class BenchConfig:
    """What the benchmark reads and how long it measures.

    Attributes:
        data: A data set root (any layout ``build.make.datasets.load_dataset`` reads).
        images: Images drawn (seeded) from the data set; 0 = all.
        size: Square input size in pixels.
        batch_size: Images per batch.
        batches: Timed batches per pipeline, after the warm-up.
        warmup: Untimed batches first (graph tracing, worker start-up, first reads).
        cache_dir: Where the uint8 cache goes; "" = a temporary folder (so the build is measured).
        seed: Seed of the image draw, the shuffles and the augmentation.
    """

    data: str = str(DEFAULT_DATA)
    images: int = 2000
    size: int = 192
    batch_size: int = 32
    batches: int = 40
    warmup: int = 5
    cache_dir: str = ""
    seed: int = 0


@dataclass(frozen=True)
class Throughput:
    """One pipeline's steady-state speed."""

    name: str
    images_per_second: float
    seconds: float
    batches: int


@dataclass(frozen=True)
class PipelineBenchmark:
    """The result: throughputs, ratios, the one-off cache build and the machine's load.

    ``speedup`` compares ours with all default augmentations (more work than the seed's) against the
    seed-style loader; ``speedup_same_augmentations`` restricts ours to the seed's five.
    """

    config: BenchConfig
    ours: Throughput
    ours_seed_augmentations: Throughput
    seed_style: Throughput
    speedup: float
    speedup_same_augmentations: float
    cache_build_seconds: float
    cache_reused: bool
    cpu_count: int
    load_average_at_start: tuple[float, float, float]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"


def run_benchmark(config: BenchConfig) -> PipelineBenchmark:
    """Times both pipelines on the same images; see the module docstring."""
    load = os.getloadavg()
    frame = load_dataset(config.data)
    if config.images and config.images < len(frame):
        frame = frame.sample(n=config.images, random_state=config.seed).sort_index()
    classes = sorted(frame["label"].unique())
    labels = np.array([classes.index(label) for label in frame["label"]], dtype=np.int32)
    spec = InputSpec(height=config.size, width=config.size)
    augment = AugmentConfig()
    # The seed's five: rotation, shift, zoom, flips, brightness; no quarter turns, colour or noise.
    seed_five = dataclasses.replace(
        augment, rotate_90=False, contrast=0.0, saturation=0.0, hue=0.0, noise=0.0
    )

    with tempfile.TemporaryDirectory(prefix="bench-cache-") as scratch:
        cache_dir = Path(config.cache_dir or scratch)
        existed = set(cache_dir.glob("*.npy")) if cache_dir.is_dir() else set()
        started = time.perf_counter()
        pixels = build_cache(list(frame["path"]), spec, cache_dir)
        cache_seconds = time.perf_counter() - started
        reused = Path(pixels.filename) in existed
        print(
            f"cache: {len(frame):,} images at {config.size}x{config.size} "
            f"{'reused' if reused else 'built'} in {cache_seconds:.1f} s",
            flush=True,
        )

        cached = CachedImages(pixels=pixels, labels=labels)
        timings = []
        for augmentation in (augment, seed_five):
            dataset = training_dataset(
                cached,
                spec,
                num_classes=len(classes),
                batch_size=config.batch_size,
                augment=augmentation,
                balance=BalanceConfig(),
                seed=config.seed,
            )
            timings.append(_time_batches(iter(dataset), config, lambda batch: batch[0].numpy()))
        ours, ours_five = timings
        # Timed one after the other, not in turns: a live tf.data iterator keeps working ahead in the
        # background, which would steal CPU from the other side and hand ours batches made off the
        # clock. Each iterator ends with its _time_batches call; this releases the memory map too.
        del dataset, cached, pixels

    seed = _time_batches(_seed_style_batches(frame, config, augment), config, lambda batch: batch[0])
    images = config.batches * config.batch_size
    ours_result = Throughput(
        "ours: cache + tf.data, default augmentations", images / ours, ours, config.batches
    )
    five_result = Throughput(
        "ours: cache + tf.data, the seed's 5 augmentations", images / ours_five, ours_five, config.batches
    )
    seed_result = Throughput("seed-style ImageDataGenerator", images / seed, seed, config.batches)
    for result in (ours_result, five_result, seed_result):
        print(
            f"{result.name}: {result.images_per_second:,.0f} images/s "
            f"({config.batches} batches of {config.batch_size} in {result.seconds:.1f} s)",
            flush=True,
        )
    return PipelineBenchmark(
        config=config,
        ours=ours_result,
        ours_seed_augmentations=five_result,
        seed_style=seed_result,
        speedup=ours_result.images_per_second / seed_result.images_per_second,
        speedup_same_augmentations=five_result.images_per_second / seed_result.images_per_second,
        cache_build_seconds=cache_seconds,
        cache_reused=reused,
        cpu_count=os.cpu_count() or 1,
        load_average_at_start=tuple(round(x, 2) for x in load),
    )


def _seed_style_batches(frame, config: BenchConfig, augment: AugmentConfig):
    """The usual Keras-tutorial loader: decode, resize and augment every image on every epoch."""
    from models.keras import keras

    generator = keras.preprocessing.image.ImageDataGenerator(
        rotation_range=augment.rotation,
        width_shift_range=augment.shift,
        height_shift_range=augment.shift,
        zoom_range=augment.zoom,
        horizontal_flip=augment.flip,
        vertical_flip=augment.flip,
        brightness_range=(1 - augment.brightness, 1 + augment.brightness),
        fill_mode="reflect",
        preprocessing_function=lambda x: x / 127.5 - 1.0,
    )
    return generator.flow_from_dataframe(
        frame,
        x_col="path",
        y_col="label",
        target_size=(config.size, config.size),
        batch_size=config.batch_size,
        class_mode="categorical",
        shuffle=True,
        seed=config.seed,
        interpolation="bilinear",
        validate_filenames=False,
    )


def _time_batches(batches, config: BenchConfig, materialize) -> float:
    """Seconds to draw ``config.batches`` batches (each made concrete in memory) after the warm-up."""
    for _ in range(config.warmup):
        materialize(next(batches))
    started = time.perf_counter()
    for _ in range(config.batches):
        materialize(next(batches))
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    defaults = BenchConfig()
    parser = argparse.ArgumentParser(prog="python -m benchmarks.pipeline", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=defaults.data, help="data set root (default: the shared HAM10000)")
    for field in ("images", "size", "batch_size", "batches", "warmup", "seed"):
        parser.add_argument(f"--{field.replace('_', '-')}", type=int, default=getattr(defaults, field))
    parser.add_argument(
        "--cache-dir", default="", help="reuse a cache folder (default: a fresh temporary one)"
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    if not Path(args.data).exists():
        print(
            f"data set not found: {args.data}; pass --data ROOT (HAM10000 lives in ../shared/data/ham10000)",
            file=sys.stderr,
        )
        return 2
    config = BenchConfig(
        data=args.data,
        images=args.images,
        size=args.size,
        batch_size=args.batch_size,
        batches=args.batches,
        warmup=args.warmup,
        cache_dir=args.cache_dir,
        seed=args.seed,
    )
    result = run_benchmark(config)
    print(
        f"speed-up: {result.speedup:.1f}x with our default augmentations, "
        f"{result.speedup_same_augmentations:.1f}x with the same five as the seed "
        f"({result.cpu_count} CPUs, load average {result.load_average_at_start[0]:.1f} at start)"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(f".{args.json.name}.tmp{os.getpid()}")
        tmp.write_text(result.to_json())
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
