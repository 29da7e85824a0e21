"""How much memory decoding images may take at once, so a burst of huge uploads takes turns.

>>> budget = DecodeBudget(512 * 2**20)
>>> with budget.reserve(decode_bytes("RGB", (8000, 6000)), "photo.png"):
...     ...  # decode, convert, resize
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from edge.errors import ImageError

# At most this much memory goes to decoding at once in one process (a 64 MP RGB PNG needs ~245 MiB):
# what a Raspberry Pi with 1 GB can spare next to the model. Larger decodes are refused up front.
DEFAULT_MAX_DECODE_BYTES = 512 * 2**20
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}  # else 4
_CONVERT_BYTES_PER_PIXEL = {
    "RGB": 0,
    "RGBA": 5,
    "LA": 5,
    "PA": 9,
    "P": 9,
    "La": 5,
    "RGBa": 5,
    "I;16": 14,
    "I;16L": 14,
    "I;16B": 14,
    "I;16N": 14,
    "I": 14,
    "F": 14,
}  # else 4


class DecodeBudget:
    """The memory one process may spend on decoding images at once, shared by all threads.

    A decode reserves its estimate (see :func:`decode_bytes`) before Pillow allocates anything and
    releases it when its pixels are resized; a decode that would need more than the whole budget is
    refused, one that fits waits until concurrent decodes leave room. So eight simultaneous 40 MP
    uploads to the demo take turns instead of adding up.
    """

    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes < 1:
            raise ValueError(f"limit_bytes must be positive, got {limit_bytes}")
        self.limit_bytes = limit_bytes
        self._in_use = 0
        self._condition = threading.Condition()

    @contextlib.contextmanager
    def reserve(self, nbytes: int, name: str) -> Iterator[None]:
        """Holds ``nbytes`` of the budget for the duration of the ``with`` block."""
        if nbytes > self.limit_bytes:
            raise ImageError(
                f"{name}: decoding it needs about {nbytes / 2**20:,.0f} MiB, over the limit of "
                f"{self.limit_bytes / 2**20:,.0f} MiB for decoding (edge.preprocess.DECODE_BUDGET); "
                "downscale the image or save it as JPEG"
            )
        with self._condition:
            self._condition.wait_for(lambda: self._in_use + nbytes <= self.limit_bytes)
            self._in_use += nbytes
        try:
            yield
        finally:
            with self._condition:
                self._in_use -= nbytes
                self._condition.notify_all()


def decode_bytes(mode: str, size: tuple[int, int], *, reduced: bool = False) -> int:
    """Estimated peak memory for decoding an image of ``mode`` and ``size`` (w, h) and turning it into RGB.

    Pillow stores most modes in 4 bytes per pixel (RGB too); converting to RGB adds a copy, alpha adds a
    white background and a mask, 16-bit and float data go through numpy. ``reduced`` images are shrunk
    right after decoding, so only the decoded buffer (and Pillow's premultiplied copy for alpha) counts.
    """
    pixels = size[0] * size[1]
    decoded = pixels * _BYTES_PER_PIXEL.get(mode, 4)
    if reduced:
        return decoded + (pixels * 4 if mode in ("RGBA", "LA") else 0)
    return decoded + pixels * _CONVERT_BYTES_PER_PIXEL.get(mode, 4)
