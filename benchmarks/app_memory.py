"""Memory of the web demo under large uploads: 8 patients sending a 40 MP photo at the same moment.

The demo runs in a child process (``python -m gradio_app`` on 127.0.0.1, a fresh one per case, so one
case's memory cannot hide another's). After one small warm-up request, N clients (threads here) each
upload the case's image through Gradio's HTTP API (``POST /gradio_api/upload``, then ``/classify``) at
once. A sampler reads the server's resident set size (psutil, the server and any children) every
50 ms while they run and for ``--after`` seconds after the last answer, and prints: the baseline
after the warm-up, the peak during the uploads, the peak and the last value in the time after.
The images are written once (a smooth gradient, so they stay far under the demo's 20 MB upload limit,
as real 40 MP phone photos are); each client's upload carries unique trailing bytes, because Gradio
stores uploads by content hash and would otherwise share one file among the clients.

    python -m benchmarks.app_memory                   # the default demo (every shipped bundle), 8 at once
    python -m benchmarks.app_memory --uploads 8 --after 30 --bundle ham10000 --json out.json

Bound: the demo's peak stays at or under ``--bound-mb`` (600 MB); the exit status is 1 when a case
exceeds it or a request fails. Bounded: one request per client, each with a timeout; loopback only.
Measured on the 2-core development machine, both shipped bundles, 8 uploads at once (baseline 225 MB;
"before" is the demo without ``gradio_app.app.configure_process``, whose decode budget and pinned mmap
threshold it adds):

    case              peak before / after       30 s later before / after    answered in before / after
    40 MP JPEG        245 MB / 248 MB           245 MB / 247 MB              1.3 s / 1.5 s
    40 MP PNG         620-809 MB / 541 MB       428-500 MB / 234 MB          5.6 s / 4.5 s
    40 MP RGBA PNG    1067 MB / 554 MB          882 MB / 235 MB              7.9 s / 9.7 s
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.app_load import _HttpUser, _synthetic_photo, _wait_until_serving
from benchmarks.decode_memory import Case, write_case
from edge.bundle import DEFAULT_BUNDLE

REPO = Path(__file__).resolve().parents[1]
CASES = (
    Case("40 MP JPEG", (7296, 5472), "JPEG", (("quality", 90),)),
    Case("40 MP PNG", (7296, 5472), "PNG"),
    Case("40 MP RGBA PNG", (7296, 5472), "PNG", (("mode", "RGBA"),)),  # the largest decode the demo admits
)
SAMPLE_EVERY_S = 0.05
BOUND_MB = 600.0


@dataclass(frozen=True)
class MemoryResult:
    """One case's numbers, in MB (10^6 bytes) of resident memory of the demo's process tree."""

    case: str
    file_mb: float
    uploads: int
    errors: int
    first_errors: tuple[str, ...]
    baseline_mb: float
    peak_mb: float
    peak_after_mb: float
    end_mb: float
    after_s: float
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


class _RssSampler:
    """Samples a process tree's RSS in a thread; ``mark()`` starts a new phase, each with its own peak."""

    def __init__(self, pid: int, every_s: float = SAMPLE_EVERY_S) -> None:
        import psutil

        self._process = psutil.Process(pid)
        self._every_s = every_s
        self._peaks: list[float] = [0.0]
        self.last = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def rss_mb(self) -> float:
        import psutil

        total = 0
        for process in [self._process, *self._process.children(recursive=True)]:
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total / 1e6

    def mark(self) -> float:
        """Ends the current phase and returns its peak (a fresh sample included)."""
        self._sample()
        peak = self._peaks[-1]
        self._peaks.append(self.last)
        return peak

    def _sample(self) -> None:
        self.last = self.rss_mb()
        self._peaks[-1] = max(self._peaks[-1], self.last)

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            self._sample()


def measure_case(
    bundles: list[Path],
    image: Path,
    case: str,
    uploads: int,
    after_s: float,
    warm_up: Path,
    concurrency: int | None = None,
) -> MemoryResult:
    """Starts a demo on ``bundles`` (none: its default), sends ``uploads`` copies of ``image`` at once,
    and samples its memory."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "gradio_app", "--host", "127.0.0.1", "--port", str(port), "--no-explain"]
    for bundle in bundles:
        command += ["--bundle", str(bundle)]
    if concurrency is not None:
        command += ["--concurrency", str(concurrency)]
    url = f"http://127.0.0.1:{port}/"
    log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe nobody reads
    server = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
    )
    with tempfile.TemporaryDirectory(prefix="app-memory-") as scratch:
        copies = []
        for index in range(uploads):
            copy = Path(scratch) / f"{index}_{image.name}"
            copy.write_bytes(image.read_bytes() + index.to_bytes(4, "big"))  # unique content, same image
            copies.append(copy)
        try:
            _wait_until_serving(url, server, log)
            warm = _HttpUser(url)
            warm.classify(warm_up)  # the interpreter's and Gradio's first-call allocations: not counted
            warm.close()
            errors: list[str] = []

            def one(path: Path) -> None:
                user = _HttpUser(url)
                try:
                    user.classify(path)
                except Exception as error:  # noqa: BLE001 - counted and reported
                    errors.append(f"{type(error).__name__}: {error}"[:300])
                finally:
                    user.close()

            with _RssSampler(server.pid) as sampler:
                time.sleep(1.0)
                baseline = sampler.mark()
                began = time.perf_counter()
                with ThreadPoolExecutor(max_workers=uploads) as pool:
                    list(pool.map(one, copies))
                seconds = time.perf_counter() - began
                peak = sampler.mark()
                time.sleep(after_s)
                peak_after = sampler.mark()
                end = sampler.last
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
            log.close()
    return MemoryResult(
        case=case,
        file_mb=image.stat().st_size / 1e6,
        uploads=uploads,
        errors=len(errors),
        first_errors=tuple(dict.fromkeys(errors))[:3],
        baseline_mb=baseline,
        peak_mb=max(peak, peak_after),
        peak_after_mb=peak_after,
        end_mb=end,
        after_s=after_s,
        seconds=seconds,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: python -m benchmarks.app_memory --uploads 8 --after 30",
    )
    parser.add_argument(
        "--bundle",
        type=Path,
        action="append",
        default=[],
        help="bundle to serve, repeatable (default: the demo's own, every bundle under "
        f"{DEFAULT_BUNDLE.parent})",
    )
    parser.add_argument(
        "--uploads", type=int, default=8, help="clients uploading at once (default: %(default)s)"
    )
    parser.add_argument(
        "--after",
        type=float,
        default=30.0,
        help="seconds to keep sampling after the last answer (default: %(default)s)",
    )
    parser.add_argument("--concurrency", type=int, default=None, help="the demo's concurrency limit")
    parser.add_argument(
        "--bound-mb",
        type=float,
        default=BOUND_MB,
        help="peak the demo must stay under, in MB (default: %(default)s)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.uploads < 1 or args.after < 0:
        parser.error(f"--uploads must be >= 1 and --after >= 0, got {args.uploads} and {args.after}")

    results = []
    with tempfile.TemporaryDirectory(prefix="app-memory-images-") as scratch:
        warm_up = _synthetic_photo(Path(scratch) / "warm_up.jpg")
        for case in CASES:
            image = write_case(case, Path(scratch))
            result = measure_case(
                args.bundle, image, case.name, args.uploads, args.after, warm_up, args.concurrency
            )
            results.append(result)
            verdict = "ok" if result.peak_mb <= args.bound_mb else f"OVER the {args.bound_mb:.0f} MB bound"
            added = result.peak_mb - result.baseline_mb
            print(
                f"{result.case} ({result.file_mb:.1f} MB file) x {result.uploads} at once: baseline "
                f"{result.baseline_mb:.0f} MB, peak {result.peak_mb:.0f} MB (+{added:.0f}), "
                f"{result.after_s:.0f} s after: peak {result.peak_after_mb:.0f} MB, "
                f"end {result.end_mb:.0f} MB; {result.errors} errors, answered in {result.seconds:.1f} s; "
                f"{verdict}",
                flush=True,
            )
            for message in result.first_errors:
                print(f"  error: {message}")
    print(json.dumps([result.to_dict() for result in results]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        temporary = args.json.with_suffix(".tmp")
        temporary.write_text(json.dumps([result.to_dict() for result in results], indent=2) + "\n")
        temporary.replace(args.json)
    failed = any(result.errors or result.peak_mb > args.bound_mb for result in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
