"""How the process serves the demo: its limits (:class:`AppConfig`), launch options and memory settings.

``python -m gradio_app`` (``skinlesion app``) calls these around :func:`gradio_app.app.build_demo`::

    >>> config = AppConfig(concurrency_limit=8)
    >>> configure_process(config)  # once per process, before launching
    >>> demo.launch(**launch_options(config))
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from dataclasses import dataclass
from typing import Any

from edge import preprocess
from gradio_app.style import CSS, THEME

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AppConfig:
    """Limits and switches of the demo server.

    Attributes:
        max_file_size: Largest upload Gradio accepts (Gradio's size syntax, e.g. ``"20mb"``).
        max_pixels: Largest decoded image (width*height); protects the server's memory against
            decompression bombs. Applied on top of the bundle's own limit.
        concurrency_limit: Requests processed at once; decoding runs in parallel, calls into one
            interpreter are serialised by the Classifier (a TFLite interpreter is not thread-safe).
        max_queue_size: Requests waiting beyond that; more are refused with "queue full".
        delete_cache: ``(every_seconds, older_than_seconds)``: how often Gradio sweeps its cache, and the
            age at which uploads, crop previews and overlays are deleted. Uploads are stored by content
            hash and shared by identical requests (and the page shows them), so they are not deleted
            inside a request.
        explain: Offer the Grad-CAM overlay when a bundle has a float reference.
        max_decode_bytes: Memory the server may spend decoding uploads at once, all requests together
            (see ``edge.preprocess.DecodeBudget``); None: what one ``max_pixels`` RGBA PNG needs (305 MiB
            for 40 MP), so the largest upload still decodes and 8 large uploads at once take turns
            instead of adding up. Applied by :func:`configure_process`.
    """

    max_file_size: str = "20mb"
    max_pixels: int = 40_000_000
    concurrency_limit: int = 4
    max_queue_size: int = 256
    delete_cache: tuple[int, int] = (60, 120)
    explain: bool = True
    max_decode_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.max_pixels < 1 or self.concurrency_limit < 1 or self.max_queue_size < 1:
            raise ValueError(f"max_pixels, concurrency_limit and max_queue_size must be positive, got {self}")
        if self.max_decode_bytes is not None and self.max_decode_bytes < 1:
            raise ValueError(f"max_decode_bytes must be positive or None, got {self.max_decode_bytes}")

    @property
    def decode_budget_bytes(self) -> int:
        """``max_decode_bytes``, or what decoding one ``max_pixels`` RGBA image needs."""
        if self.max_decode_bytes is not None:
            return self.max_decode_bytes
        return preprocess.decode_bytes("RGBA", (self.max_pixels, 1), reduced=True)


def launch_options(config: AppConfig = AppConfig()) -> dict[str, Any]:
    """Keyword arguments for ``demo.launch`` that belong to the demo rather than to the host."""
    return {
        "max_file_size": config.max_file_size,
        "theme": THEME,
        "css": CSS,
        "ssr_mode": False,  # server-side rendering starts a Node server; the page needs none
        "enable_monitoring": False,
        "footer_links": ["api"],
        "show_error": False,  # our own messages are friendlier than stack traces
    }


# glibc's mallopt parameter: allocations at least this large get their own mapping.
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 4 * 2**20


def configure_process(config: AppConfig = AppConfig()) -> None:
    """Process-wide memory limits for the process that serves the demo; call once, before launching.

    Sets ``edge.preprocess.DECODE_BUDGET`` to ``config.decode_budget_bytes``: the default budget (512
    MiB, sized for a Raspberry Pi decoding alone) let three 40 MP PNGs decode at once next to Gradio.
    And on glibc, pins the mmap threshold: glibc raises it after the first large free, so the next
    decoded images land in its heaps and their memory stays with the process after the answer
    (505 MB six minutes after 8 large uploads); mapped blocks go back to the system when freed.
    """
    preprocess.DECODE_BUDGET = preprocess.DecodeBudget(config.decode_budget_bytes)
    _pin_mmap_threshold()


def _pin_mmap_threshold() -> None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        mallopt = None
    if mallopt is None or not mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES):
        log.info(
            "could not pin the allocator's mmap threshold (not glibc); memory freed after large "
            "uploads may stay with the process"
        )


def enable_heic() -> bool:
    """Lets Pillow (and so ``load_image``) open iPhone HEIC/HEIF photos; False when pillow-heif is absent."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        log.info("pillow-heif is not installed; HEIC photos will be refused (pip install pillow-heif)")
        return False
    register_heif_opener()
    return True
