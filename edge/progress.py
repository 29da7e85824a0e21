"""Progress of long work with rate and ETA: a line redrawn in place on a terminal, plain log lines
(every tenth of the way) anywhere else, so ``tail -f`` of a log shows where a step is::

    progress = Progress("float epoch 3/61", total=250, unit="steps", per_unit=32)
    for step in range(250):
        ...
        progress.update(step + 1, loss=0.91)
    progress.close()

In the edge runtime (no TensorFlow) so that every layer above can use it.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import IO

log = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    """``45 s``, ``2m 30s`` or ``2h 13m``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


class Progress:
    """Progress of one long step, with its rate and the time left.

    Args:
        label: What is being done, e.g. ``"float epoch 3/61"``.
        total: How many units the step has.
        unit: Their name, e.g. ``"steps"``.
        per_unit: Images per unit, to show images/s (1 = the units are images).
        stream: Where a terminal's line is drawn (default stderr); a stream that is not a terminal gets
            log lines instead.
        every: Share of the way between two plain lines.
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        unit: str = "images",
        per_unit: int = 1,
        stream: IO[str] | None = None,
        every: float = 0.1,
    ):
        self.label, self.total, self.unit, self.per_unit = label, max(1, total), unit, per_unit
        self.stream = stream or sys.stderr
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = every
        self.started = time.perf_counter()
        self.next_line = every
        self.last_draw = 0.0
        self.line = ""

    def update(self, done: int, **fields: float) -> None:
        """Reports ``done`` units finished so far, with optional numbers to show (e.g. ``loss``)."""
        fraction = min(1.0, done / self.total)
        if self.interactive:
            now = time.perf_counter()
            if now - self.last_draw >= 0.2 or done >= self.total:
                self.last_draw = now
                self.line = self._text(done, fields)
                self.stream.write("\r" + self.line.ljust(100)[:160])
                self.stream.flush()
        elif fraction + 1e-9 >= self.next_line:
            while self.next_line <= fraction + 1e-9:
                self.next_line += self.every
            log.info("%s", self._text(done, fields))

    def close(self) -> None:
        """Ends a terminal's redrawn line."""
        if self.interactive and self.line:
            self.stream.write("\n")
            self.stream.flush()

    def _text(self, done: int, fields: dict[str, float]) -> str:
        elapsed = time.perf_counter() - self.started
        rate = done * self.per_unit / elapsed if elapsed > 0 else 0.0
        left = elapsed / done * (self.total - done) if done else 0.0
        extra = "".join(f"  {name} {value:.4f}" for name, value in fields.items())
        return (
            f"{self.label}  {done}/{self.total} {self.unit} {100 * done / self.total:3.0f}%  "
            f"{rate:.1f} images/s{extra}  ETA {format_duration(left)}"
        )
