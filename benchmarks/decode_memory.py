"""Peak memory of THE preprocessing on very large images: what a 64 MP PNG or a 40 MP phone JPEG costs.

Each case runs :func:`edge.preprocess.load_image` in a fresh child process (so one case's high-water
mark cannot hide another's) and prints the child's peak resident set size before and after the decode.
The images are written once into a temporary folder; they compress well (a 64 MP PNG of a few tens of
kB), which is the point: a small upload that decodes into hundreds of MB.

    python -m benchmarks.decode_memory                  # the default cases, 224 x 224 target
    python -m benchmarks.decode_memory --size 160 --concurrent 8

``--concurrent N`` decodes N copies of each image in N threads of one process, as the web demo does with
N simultaneous uploads.

Bound: decoding adds at most :data:`edge.preprocess.DEFAULT_MAX_DECODE_BYTES` (512 MiB, plus Pillow's
working rows) to the process, whatever the file's size on disk and however many decode at once;
``max_decoded_mb`` in the JSON output is that bound. Measured on the 2-core development machine
(``added`` = peak minus the child's peak after its imports):

    case              before (one / 8 at once)    after (one / 8 at once)
    64 MP PNG         +490 MB / +3599 MB          +246 MB / +477 MB
    64 MP grey PNG    +307 MB / +2215 MB          +63 MB  / +492 MB
    40 MP RGBA PNG    +344 MB / +2554 MB          +307 MB / +309 MB
    40 MP JPEG        +7 MB   / +27 MB            +6 MB   / +23 MB   (decoded at 1/8 scale in the DCT)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, threading
import numpy as np
from edge.preprocess import DEFAULT_MAX_DECODE_BYTES, InputSpec, load_image
from edge.errors import ImageError

path, size, concurrent = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
spec = InputSpec(height=size, width=size)
def high_water_kb():
    # VmHWM is this process's own peak; getrusage's ru_maxrss would carry the parent's across exec.
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

before = high_water_kb()
results = []

def one():
    try:
        pixels = load_image(path, spec)
        results.append(f"ok {pixels.shape}")
    except ImageError as error:
        results.append(f"refused: {error}")

threads = [threading.Thread(target=one) for _ in range(concurrent)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
after = high_water_kb()
print(json.dumps({"baseline_mb": before / 1024, "peak_mb": after / 1024, "added_mb": (after - before) / 1024,
                  "max_decoded_mb": DEFAULT_MAX_DECODE_BYTES / 2**20, "result": sorted(set(results))}))
"""


@dataclass(frozen=True)
class Case:
    """One image to decode: a name, its pixel size (w, h), the format and Pillow save options."""

    name: str
    size: tuple[int, int]
    fmt: str
    options: tuple[tuple[str, object], ...] = ()


CASES = (
    Case("64 MP PNG", (8000, 8000), "PNG"),
    Case("64 MP grey PNG", (8000, 8000), "PNG", (("mode", "L"),)),
    Case("40 MP RGBA PNG", (7296, 5472), "PNG", (("mode", "RGBA"),)),
    Case("40 MP JPEG", (7296, 5472), "JPEG", (("quality", 90),)),
    Case("12 MP JPEG", (4000, 3000), "JPEG", (("quality", 90),)),
    Case("600x450 JPEG", (600, 450), "JPEG", (("quality", 90),)),
)


def write_case(case: Case, folder: Path) -> Path:
    """Writes a smooth gradient image (compresses well, like a flat background) of the case's size."""
    width, height = case.size
    x = np.linspace(0, 255, width, dtype=np.float32)
    path = folder / f"{case.name.replace(' ', '_')}.{case.fmt.lower()}"
    rows = []
    # Built in strips so the parent's own peak stays modest.
    for top in range(0, height, 1024):
        h = min(1024, height - top)
        y = np.linspace(top, top + h - 1, h, dtype=np.float32)[:, None] * (255 / max(height - 1, 1))
        strip = np.stack(
            [
                np.broadcast_to(x, (h, width)),
                np.broadcast_to(y, (h, width)),
                np.full((h, width), 128, np.float32),
            ],
            axis=-1,
        )
        rows.append(strip.astype(np.uint8))
    options = dict(case.options)
    image = Image.fromarray(np.concatenate(rows))
    del rows
    image.convert(options.pop("mode", "RGB")).save(path, format=case.fmt, **options)
    return path


def measure(path: Path, size: int, concurrent: int) -> dict:
    """Runs the decode in a child process and returns its JSON line."""
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(size), str(concurrent)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"child failed on {path}: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: python -m benchmarks.decode_memory --concurrent 8",
    )
    parser.add_argument("--size", type=int, default=224, help="target side in pixels (default: 224)")
    parser.add_argument(
        "--concurrent", type=int, default=1, help="decodes at once in one process (default: 1)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per case")
    args = parser.parse_args(argv)
    from edge.preprocess import DEFAULT_MAX_DECODE_BYTES  # noqa: PLC0415 - the parent needs only the bound

    print(
        f"bound: decoding adds at most {DEFAULT_MAX_DECODE_BYTES / 2**20:.0f} MiB "
        f"({DEFAULT_MAX_DECODE_BYTES / 1e6:.0f} MB) to a process, for any number of concurrent decodes"
    )
    with tempfile.TemporaryDirectory(prefix="decode-memory-") as tmp:
        for case in CASES:
            path = write_case(case, Path(tmp))
            row = {
                "case": case.name,
                "file_kb": round(path.stat().st_size / 1024, 1),
                **measure(path, args.size, args.concurrent),
            }
            if args.json:
                print(json.dumps(row))
            else:
                print(
                    f"{row['case']:>14}  file {row['file_kb']:>8.1f} kB  baseline {row['baseline_mb']:6.1f} MB  "
                    f"peak {row['peak_mb']:6.1f} MB  (+{row['added_mb']:6.1f} MB, x{args.concurrent})  "
                    f"{'; '.join(row['result'])}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
