"""Latency, throughput and memory of a model on this machine, in the spirit of TFLite's benchmark_model.

Three timings per (variant, threads): ``invoke`` alone (the model), ``preprocess`` = decode a JPEG from
bytes + the one preprocessing (the input path), and ``pipeline`` = decode + preprocess + invoke +
calibrate + abstain, which is what a user waits for. Timings come from
one process, one model at a time, after warm-up runs.

    >>> results = benchmark(DEFAULT_BUNDLE, variants=("int8", "float32"), threads=(1, 4), runs=50)
    >>> print(format_table(results))
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edge.bundle import load_bundle
from edge.classifier import Classifier
from edge.errors import SkinlesionError
from edge.interpreter import TFLiteModel

SYNTHETIC_SIZE = (600, 450)  # (w, h): HAM10000's original camera resolution
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class Latency:
    """Latency percentiles and mean in milliseconds over ``runs`` timed runs."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float

    @classmethod
    def from_seconds(cls, seconds: Sequence[float]) -> Latency:
        ms = np.asarray(seconds, dtype=np.float64) * 1000.0
        p50, p90, p99 = np.percentile(ms, PERCENTILES)
        return cls(float(p50), float(p90), float(p99), float(ms.mean()))


@dataclass(frozen=True)
class BenchResult:
    """One (model file, thread count) measurement.

    Attributes:
        variant: Bundle variant, or the file name for a bare ``.tflite``.
        model_path: The file benchmarked.
        model_bytes: Its size on disk.
        interpreter: The runtime that ran it (``ai_edge_litert``, ...).
        threads: Interpreter threads.
        runs: Timed runs per measurement (after ``warmup`` untimed runs).
        warmup: Untimed runs before timing.
        load_ms: Time to open the model: bundle checksums, interpreter creation, tensor allocation.
        invoke: Latency of ``invoke`` alone.
        preprocess: Latency of JPEG decode + preprocess alone (what the model's input costs).
        input_overhead: (decode + preprocess + invoke) / invoke, from the mean latencies: how much the
            input path adds to the model (1.3 = 30 %).
        pipeline: Latency of JPEG decode + preprocess + invoke + post-processing.
        throughput_ips: Images per second through the pipeline, one stream (1000 / pipeline mean).
        peak_rss_mb: Highest resident memory of this process seen while measuring.
        rss_source: ``psutil`` (sampled after every run) or ``getrusage`` (the process's lifetime peak).
        image: What was decoded: a path or ``synthetic 600x450 JPEG``.
    """

    variant: str
    model_path: str
    model_bytes: int
    interpreter: str
    threads: int
    runs: int
    warmup: int
    load_ms: float
    invoke: Latency
    preprocess: Latency
    input_overhead: float
    pipeline: Latency
    throughput_ips: float
    peak_rss_mb: float
    rss_source: str
    image: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def synthetic_jpeg(size: tuple[int, int] = SYNTHETIC_SIZE, quality: int = 90) -> bytes:
    """A deterministic skin-toned JPEG with a dark blob in the middle, at camera resolution."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    skin = np.array([224, 172, 150], dtype=np.float32)
    radius = np.hypot((x - width / 2) / (width / 5), (y - height / 2) / (height / 4))
    lesion = np.clip(1.2 - radius, 0, 1)[..., None]
    texture = 12 * np.sin(x / 7.0)[..., None] * np.cos(y / 11.0)[..., None]
    pixels = skin * (1 - 0.7 * lesion) + texture
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def peak_rss() -> tuple[Callable[[], float], str]:
    """A function returning resident memory in MB, and its source name."""
    try:
        import psutil  # noqa: PLC0415 - optional: not part of the base install
    except ImportError:
        import resource  # noqa: PLC0415 - POSIX only

        # ru_maxrss is KiB on Linux and bytes on macOS.
        unit = 1 if sys.platform == "darwin" else 1024
        return (lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit / 2**20), "getrusage"
    process = psutil.Process(os.getpid())
    return (lambda: process.memory_info().rss / 2**20), "psutil"


def model_variants(model: str | os.PathLike, variants: Sequence[str] | None) -> list[str | None]:
    """The variants to benchmark: all in the bundle (None), the named ones, or [None] for a bare file."""
    path = Path(model)
    if not path.exists():
        raise SkinlesionError(f"{path} not found: pass a bundle folder or a .tflite file")
    if not path.is_dir():
        if variants:
            raise ValueError(f"--variant selects files inside a bundle, but {path} is a single model file")
        return [None]
    available = load_bundle(path).variants
    if not variants:
        return list(available)
    missing = [v for v in variants if v not in available]
    if missing:
        raise ValueError(f"bundle {path} has no {', '.join(missing)} model; it has: {', '.join(available)}")
    return list(variants)


def benchmark(
    model: str | os.PathLike,
    *,
    variants: Sequence[str] | None = None,
    threads: Sequence[int] = (1,),
    runs: int = 50,
    warmup: int = 5,
    image: bytes | str | os.PathLike | None = None,
    delegate: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Benchmarks every (variant, threads) pair of a bundle or ``.tflite`` file.

    Args:
        model: A bundle folder or a ``.tflite`` file.
        variants: Bundle variants to measure (None: all present).
        threads: Interpreter thread counts to measure.
        runs: Timed runs per measurement.
        warmup: Untimed runs first (caches, lazy kernel set-up).
        image: A JPEG (bytes or path) decoded on every pipeline run; None: :func:`synthetic_jpeg`.
        delegate: Optional delegate, as for :class:`Classifier`.
        progress: Called with a line per finished measurement.
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got runs={runs} warmup={warmup}")
    if not threads or min(threads) < 1:
        raise ValueError(f"threads must be positive integers, got {list(threads)}")
    if image is None:
        data, image_name = synthetic_jpeg(), f"synthetic {SYNTHETIC_SIZE[0]}x{SYNTHETIC_SIZE[1]} JPEG"
    elif isinstance(image, bytes):
        data, image_name = image, f"<bytes: {len(image)} bytes>"
    else:
        data, image_name = Path(image).read_bytes(), str(image)
    rss, rss_source = peak_rss()
    results = []
    for variant in model_variants(model, variants):
        for count in threads:
            start = time.perf_counter()
            classifier = _open_classifier(model, variant, count, delegate)
            load_ms = (time.perf_counter() - start) * 1000.0
            peak = rss()
            invoke_s, peak = _time_invoke(classifier, data, runs, warmup, rss, peak)
            preprocess_s, peak = _time_calls(
                functools.partial(classifier.preprocess, data), runs, warmup, rss, peak
            )
            invoke, preprocess = Latency.from_seconds(invoke_s), Latency.from_seconds(preprocess_s)
            pipeline_s, peak = _time_pipeline(classifier, data, runs, warmup, rss, peak)
            pipeline = Latency.from_seconds(pipeline_s)
            result = BenchResult(
                variant=variant or classifier.model_path.name,
                model_path=str(classifier.model_path),
                model_bytes=classifier.model_path.stat().st_size,
                interpreter=classifier.interpreter_name,
                threads=count,
                runs=runs,
                warmup=warmup,
                load_ms=load_ms,
                invoke=invoke,
                preprocess=preprocess,
                input_overhead=(preprocess.mean_ms + invoke.mean_ms) / invoke.mean_ms,
                pipeline=pipeline,
                throughput_ips=1000.0 / pipeline.mean_ms,
                peak_rss_mb=peak,
                rss_source=rss_source,
                image=image_name,
            )
            results.append(result)
            if progress:
                progress(
                    f"{result.variant} threads={count}: invoke p50 {result.invoke.p50_ms:.2f} ms, "
                    f"pipeline p50 {pipeline.p50_ms:.2f} ms"
                )
            del classifier
    return results


def format_table(results: Sequence[BenchResult]) -> str:
    """A fixed-width table of results, one row per (variant, threads)."""
    header = (
        "variant",
        "threads",
        "MB",
        "invoke p50",
        "p90",
        "p99",
        "decode+prep p50",
        "input/invoke",
        "pipeline p50",
        "p90",
        "p99",
        "img/s",
        "peak RSS MB",
    )
    rows = [header] + [
        (
            r.variant,
            str(r.threads),
            f"{r.model_bytes / 2**20:.2f}",
            f"{r.invoke.p50_ms:.2f}",
            f"{r.invoke.p90_ms:.2f}",
            f"{r.invoke.p99_ms:.2f}",
            f"{r.preprocess.p50_ms:.2f}",
            f"{r.input_overhead:.2f}x",
            f"{r.pipeline.p50_ms:.2f}",
            f"{r.pipeline.p90_ms:.2f}",
            f"{r.pipeline.p99_ms:.2f}",
            f"{r.throughput_ips:.1f}",
            f"{r.peak_rss_mb:.0f}",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    if results:
        first = results[0]
        lines.append(
            f"(ms; interpreter {first.interpreter}; {first.runs} runs after {first.warmup} warm-up; "
            f"input/invoke = (decode + preprocess + invoke) / invoke; pipeline = decode "
            f"{first.image} + preprocess + invoke + calibration + abstain check)"
        )
    return "\n".join(lines)


def _open_classifier(
    model: str | os.PathLike, variant: str | None, threads: int, delegate: str | None
) -> Classifier:
    if Path(model).is_dir():
        return Classifier(model, variant=variant, num_threads=threads, delegate=delegate)
    # Timing needs no class names, so a bare file without a labels.txt can be measured too.
    num_outputs = int(np.prod(TFLiteModel(model).output.shape[1:]))
    return Classifier(
        model, labels=[f"output_{i}" for i in range(num_outputs)], num_threads=threads, delegate=delegate
    )


def _time_invoke(
    classifier: Classifier, data: bytes, runs: int, warmup: int, rss: Callable[[], float], peak: float
) -> tuple[list[float], float]:
    model = classifier.model
    if not hasattr(model, "invoke"):
        raise ValueError("benchmarks time TFLite models; the Keras backend has no invoke")
    model.set_input(classifier.input_tensor(classifier.preprocess(data)))
    for _ in range(warmup):
        model.invoke()
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        model.invoke()
        seconds.append(time.perf_counter() - start)
        peak = max(peak, rss())
    return seconds, peak


def _time_pipeline(
    classifier: Classifier, data: bytes, runs: int, warmup: int, rss: Callable[[], float], peak: float
) -> tuple[list[float], float]:
    return _time_calls(lambda: classifier.classify(data), runs, warmup, rss, peak)


def _time_calls(
    call: Callable[[], object], runs: int, warmup: int, rss: Callable[[], float], peak: float
) -> tuple[list[float], float]:
    for _ in range(warmup):
        call()
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
        peak = max(peak, rss())
    return seconds, peak
