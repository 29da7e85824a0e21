"""A demo server on 127.0.0.1 serving two copies of the tiny bundle, shared by the client and browser tests.

``tiny`` is the tiny bundle as built; ``tiny-unsure`` is the same model with an abstain rule that refuses
every answer (``min_confidence`` 1.0), so tests can see what a patient sees when the model abstains.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio", reason="the web demo needs the [app] extra (gradio)")

from edge.card import CARD_FILE  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
# Small limits so tests can exceed them with small files.
TEST_MAX_PIXELS = 1_000_000
TEST_MAX_FILE_SIZE = "1mb"


@dataclass(frozen=True)
class Served:
    """A running demo: its URL, its Blocks, the models it serves and the config it runs under."""

    url: str
    demo: object
    models: dict
    config: object


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def unsure_bundle(tiny_bundle, tmp_path_factory) -> Path:
    """A copy of the tiny bundle whose card abstains on every image."""
    folder = tmp_path_factory.mktemp("bundles_unsure") / "tiny-unsure"
    shutil.copytree(tiny_bundle, folder)
    card = json.loads((folder / CARD_FILE).read_text())
    card["abstain"] = {"min_confidence": 1.0}
    (folder / CARD_FILE).write_text(json.dumps(card, indent=2))
    return folder


@pytest.fixture(scope="session")
def served(tiny_bundle, unsure_bundle):
    """The demo launched on a free loopback port with test-sized limits; closed after the session."""
    from gradio_app.app import AppConfig, build_demo, launch_options, load_models

    config = AppConfig(max_pixels=TEST_MAX_PIXELS, max_file_size=TEST_MAX_FILE_SIZE)
    models = load_models([tiny_bundle, unsure_bundle])
    demo = build_demo(models, config)
    _, url, _ = demo.launch(
        server_name="127.0.0.1",
        server_port=free_port(),
        prevent_thread_lock=True,
        quiet=True,
        **launch_options(config),
    )
    yield Served(url=url, demo=demo, models=models, config=config)
    demo.close()


@pytest.fixture(scope="session")
def client(served):
    from gradio_client import Client

    return Client(served.url, verbose=False, download_files=False, analytics_enabled=False)


@pytest.fixture(scope="session")
def photos(tiny_images, tmp_path_factory) -> dict[str, Path]:
    """The tiny images as files a patient would upload (JPEG for the colours, as phones save them)."""
    folder = tmp_path_factory.mktemp("photos")
    paths = {}
    for name, pixels in tiny_images.items():
        suffix = "jpg" if name in ("red", "green", "blue") else "png"
        # Upscaled so the photo is bigger than the model input, as a real upload is.
        image = Image.fromarray(pixels).resize((pixels.shape[1] * 4, pixels.shape[0] * 4), Image.NEAREST)
        path = folder / f"{name}_spot.{suffix}"
        image.save(path, quality=95) if suffix == "jpg" else image.save(path)
        paths[name] = path
    return paths


@pytest.fixture(scope="session")
def bad_uploads(tmp_path_factory, photos) -> dict[str, Path]:
    """Files a patient might upload by mistake, each of which the demo must refuse politely."""
    folder = tmp_path_factory.mktemp("bad_uploads")
    good = photos["red"].read_bytes()
    files = {
        "not_an_image": ("notes.jpg", b"Dear doctor, the spot on my arm has grown.\n" * 20),
        "corrupt_jpeg": ("corrupt.jpg", good[:200] + bytes(range(256)) * 4),
        "truncated_jpeg": ("truncated.jpg", good[: len(good) // 3]),
        "zero_bytes": ("empty.jpg", b""),
    }
    paths = {}
    for key, (name, data) in files.items():
        (folder / name).write_bytes(data)
        paths[key] = folder / name
    tiny = folder / "one_pixel.png"
    Image.new("RGB", (1, 1), (200, 40, 50)).save(tiny)
    paths["one_pixel"] = tiny
    # Over TEST_MAX_PIXELS but a small file: a flat PNG compresses to a few kB.
    huge = folder / "huge.png"
    Image.new("RGB", (1200, 1000), (200, 40, 50)).save(huge)
    paths["too_many_pixels"] = huge
    return paths


def photo_array(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


SHARED_DATA = REPO.parent / "shared" / "data"
PRETRAINED = REPO / "models" / "pretrained"
# A melanoma from the shipped model's test split (so not one it trained on), as the full-resolution
# HAM10000 original; the README's screenshots show it.
TEST_SPLIT_MELANOMA = SHARED_DATA / "ham10000-fullres-sample" / "images" / "ISIC_0024525.jpg"
RASH_PHOTO = SHARED_DATA / "msid" / "Monkeypox" / "monkeypox1.png"


def shared_photo(path: Path) -> Path:
    """``path`` under the shared data folder, or a skip when this checkout has none (a fresh clone)."""
    if not path.is_file():
        pytest.skip(f"shared data not found at {path} (a fresh clone has no ../shared)")
    return path


@pytest.fixture(scope="session")
def shipped_models():
    """The two shipped bundles (HAM10000 skin spots, MSID rashes) as the demo serves them."""
    from gradio_app.app import load_models

    return load_models([PRETRAINED / "ham10000", PRETRAINED / "msid"])


@pytest.fixture(scope="session")
def shipped_served(shipped_models):
    """The demo on the shipped bundles, as `skinlesion app` serves it; closed after the session."""
    from gradio_app.app import AppConfig, build_demo, launch_options

    config = AppConfig()
    demo = build_demo(shipped_models, config)
    _, url, _ = demo.launch(
        server_name="127.0.0.1",
        server_port=free_port(),
        prevent_thread_lock=True,
        quiet=True,
        **launch_options(config),
    )
    yield Served(url=url, demo=demo, models=shipped_models, config=config)
    demo.close()


CHROMIUM = Path(os.environ.get("SKINLESION_CHROMIUM", "/usr/bin/chromium"))
TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright (the tests skip when either is missing)."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()
