"""Load on the web demo: many users calling ``/classify`` at once, over loopback.

Each simulated user sends its requests one after the other, as a patient would; all users start
together. A request's round trip is upload + queue + decode + inference + the JSON answer, measured in
the client. Two kinds of client:

* ``--transport client`` (default): one ``gradio_client.Client`` per user, what a Python caller uses.
  Its message loop polls every 50 ms, so expect a floor of a few hundred ms per call on top of the
  server's work.
* ``--transport http``: Gradio's documented HTTP API (``POST /gradio_api/upload``, ``POST
  /gradio_api/call/classify``, ``GET`` its event stream) with one ``httpx`` client per user: the
  server's own latency, as a browser or ``curl`` sees it.

The demo runs in a child process (``python -m gradio_app``) so that the clients' threads do not share
its interpreter lock; ``--url`` loads a demo that is already running instead.

    python -m benchmarks.app_load                                   # 50 users x 10 requests, default bundle
    python -m benchmarks.app_load --bundle runs/b1/bundle --transport http
    python -m benchmarks.app_load --url http://127.0.0.1:7860/     # a demo that is already running

Target on the 2-core development machine: p50 <= 100 ms. Bounded: users x requests calls, each with
a timeout; only loopback addresses are accepted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from edge.bundle import DEFAULT_BUNDLE

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
REQUEST_TIMEOUT_S = 60.0
STARTUP_TIMEOUT_S = 180.0
TRANSPORTS = ("client", "http")
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class LoadConfig:
    """What the benchmark sends.

    Attributes:
        users: Concurrent clients.
        requests: Requests per client, sent back to back.
        image: The photo every request uploads; None writes a 600x450 JPEG like a HAM10000 original.
        concurrency: The demo's concurrency limit, when this script launches it (None: AppConfig's).
        transport: ``"client"`` (gradio_client) or ``"http"`` (Gradio's HTTP API through httpx).
    """

    users: int = 50
    requests: int = 10
    image: Path | None = None
    concurrency: int | None = None
    transport: str = "client"

    def __post_init__(self) -> None:
        if self.users < 1 or self.requests < 1:
            raise ValueError(f"users and requests must be >= 1, got {self.users} and {self.requests}")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {self.transport!r}")


@dataclass(frozen=True)
class LoadResult:
    """Round trips of one run, in milliseconds; ``errors`` counts failed requests."""

    transport: str
    users: int
    requests: int
    errors: int
    first_errors: tuple[str, ...]
    wall_s: float
    throughput_rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def run_load(url: str, config: LoadConfig, image: Path) -> LoadResult:
    """Sends ``config.users`` x ``config.requests`` ``/classify`` calls to ``url`` and times each."""
    _check_loopback(url)
    opener = _GradioClientUser if config.transport == "client" else _HttpUser
    with ThreadPoolExecutor(max_workers=min(config.users, 16)) as pool:
        users = list(pool.map(lambda _: opener(url), range(config.users)))
    start_line = threading.Barrier(config.users)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def run_user(user) -> None:
        start_line.wait()
        for _ in range(config.requests):
            started = time.perf_counter()
            try:
                result = user.classify(image)
                if "top" not in result:
                    raise RuntimeError(f"unexpected answer: {str(result)[:200]}")
            except Exception as error:  # noqa: BLE001 - every failure is counted and reported
                with lock:
                    errors.append(f"{type(error).__name__}: {error}"[:300])
                continue
            with lock:
                latencies.append(1000 * (time.perf_counter() - started))

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=config.users) as pool:
        list(pool.map(run_user, users))
    wall = time.perf_counter() - began
    for user in users:
        user.close()
    return _summarise(config, latencies, errors, wall)


class _GradioClientUser:
    """One patient using ``gradio_client``."""

    def __init__(self, url: str) -> None:
        from gradio_client import Client

        self.client = Client(url, verbose=False, download_files=False, analytics_enabled=False)

    def classify(self, image: Path) -> dict:
        from gradio_client import handle_file

        return self.client.submit(handle_file(str(image)), api_name="/classify").result(
            timeout=REQUEST_TIMEOUT_S
        )

    def close(self) -> None:
        self.client.close()


class _HttpUser:
    """One patient using Gradio's HTTP API: upload, call, read the event stream."""

    def __init__(self, url: str) -> None:
        import httpx

        self.http = httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S)

    def classify(self, image: Path) -> dict:
        with open(image, "rb") as file:
            uploaded = self.http.post("gradio_api/upload", files={"files": (image.name, file, "image/jpeg")})
        uploaded.raise_for_status()
        payload = {"path": uploaded.json()[0], "orig_name": image.name, "meta": {"_type": "gradio.FileData"}}
        call = self.http.post(
            "gradio_api/call/classify", json={"data": [payload, None]}
        )  # None: default model
        call.raise_for_status()
        stream = self.http.get(f"gradio_api/call/classify/{call.json()['event_id']}")
        stream.raise_for_status()
        event, data = None, None
        for line in stream.text.splitlines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                data = line.split(":", 1)[1].strip()
        if event != "complete" or data is None:
            raise RuntimeError(f"the demo answered {event}: {data}")
        return json.loads(data)[0]

    def close(self) -> None:
        self.http.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--bundle", type=Path, default=DEFAULT_BUNDLE, help="bundle to serve (default: %(default)s)"
    )
    parser.add_argument("--url", default=None, help="load an already running demo instead (loopback only)")
    parser.add_argument("--users", type=int, default=LoadConfig.users)
    parser.add_argument("--requests", type=int, default=LoadConfig.requests)
    parser.add_argument(
        "--image", type=Path, default=None, help="photo to upload (default: a synthetic 600x450 JPEG)"
    )
    parser.add_argument("--concurrency", type=int, default=None, help="the launched demo's concurrency limit")
    parser.add_argument(
        "--transport",
        choices=TRANSPORTS,
        default="client",
        help="gradio_client, or Gradio's HTTP API through httpx (default: %(default)s)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    config = LoadConfig(
        users=args.users,
        requests=args.requests,
        image=args.image,
        concurrency=args.concurrency,
        transport=args.transport,
    )

    with tempfile.TemporaryDirectory() as scratch:
        image = config.image or _synthetic_photo(Path(scratch) / "spot.jpg")
        if args.url:
            result = run_load(args.url, config, image)
        else:
            result = _run_against_launched_demo(args.bundle, config, image)

    print(
        f"{result.transport}: {result.users} users x {result.requests} requests: {result.errors} errors, "
        f"p50 {result.p50_ms:.1f} ms, p95 {result.p95_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
        f"max {result.max_ms:.1f} ms, {result.throughput_rps:.1f} requests/s over {result.wall_s:.1f} s"
    )
    for message in result.first_errors:
        print(f"  error: {message}")
    print(json.dumps(result.to_dict()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        temporary = args.json.with_suffix(".tmp")
        temporary.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
        temporary.replace(args.json)
    return 1 if result.errors else 0


def _run_against_launched_demo(bundle: Path, config: LoadConfig, image: Path) -> LoadResult:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "gradio_app",
        "--bundle",
        str(bundle),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-explain",
    ]
    if config.concurrency is not None:
        command += ["--concurrency", str(config.concurrency)]
    url = f"http://127.0.0.1:{port}/"
    # A file, not a pipe: a pipe nobody reads would block the server once its buffer fills.
    log = tempfile.TemporaryFile(mode="w+")
    server = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
    )
    try:
        _wait_until_serving(url, server, log)
        run_load(url, dataclasses.replace(config, users=1, requests=2), image)  # warm-up, not reported
        return run_load(url, config, image)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _wait_until_serving(url: str, server: subprocess.Popen, log) -> None:
    import httpx

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"the demo exited with code {server.returncode}: {log.read()[-2000:]}")
        try:
            if httpx.get(url + "gradio_api/info", timeout=2).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the demo did not answer at {url} within {STARTUP_TIMEOUT_S:.0f} s")


def _summarise(config: LoadConfig, latencies: list[float], errors: list[str], wall: float) -> LoadResult:
    ordered = sorted(latencies) or [float("nan")]

    def percentile(q: float) -> float:
        return float(np.percentile(ordered, q))

    return LoadResult(
        transport=config.transport,
        users=config.users,
        requests=config.requests,
        errors=len(errors),
        first_errors=tuple(dict.fromkeys(errors))[:5],
        wall_s=wall,
        throughput_rps=len(latencies) / wall if wall > 0 else 0.0,
        p50_ms=percentile(50),
        p95_ms=percentile(95),
        p99_ms=percentile(99),
        max_ms=ordered[-1],
        mean_ms=statistics.fmean(ordered),
    )


def _synthetic_photo(path: Path) -> Path:
    """A 600x450 JPEG with a dark blob on skin tones: the size and weight of a HAM10000 original."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:450, 0:600]
    blob = np.exp(-(((xx - 300) / 120.0) ** 2 + ((yy - 225) / 90.0) ** 2))
    skin = np.array([215, 160, 140], dtype=np.float32)
    lesion = np.array([110, 70, 55], dtype=np.float32)
    pixels = skin * (1 - blob[..., None]) + lesion * blob[..., None] + rng.normal(0, 6, (450, 600, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def _check_loopback(url: str) -> None:
    host = urlparse(url).hostname
    if host not in LOOPBACK:
        raise ValueError(f"this benchmark only loads loopback servers (127.0.0.1, localhost), got {url}")


if __name__ == "__main__":
    sys.exit(main())
