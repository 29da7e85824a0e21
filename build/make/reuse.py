"""What an export already did, so that ``--resume`` (or ``skinlesion export`` again) skips it.

Each exported file is recorded in ``export/exports.json`` with a key: the bytes of the model it came
from, the variant, the export settings, the validation images and the code version (and, for the
calibrated files under ``export/final/``, the temperature and the abstain head's training images). A file
whose key is unchanged is reused with its parity report (and its abstain head's card fields) instead of
being converted and validated again (the exports and their checks take minutes); any change (a retrained
model, another temperature, other settings, other code, a dirty work tree's code version) exports it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from build.atomic import write_text_atomic

log = logging.getLogger(__name__)
RECORD = "exports.json"


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_key(**parts: Any) -> str:
    """A short hash of everything that shapes one exported file and its report."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Stored:
    """One recorded export.

    Attributes:
        path: The exported file.
        report: Its parity report (``ParityReport.to_dict()``), as measured when it was exported.
        head: The card fields of the abstain head inside it (``AbstainHead.to_card()``); None without one.
    """

    path: Path
    report: dict
    head: dict | None = None


class ExportRecord:
    """The exports of one run's ``export/`` folder, keyed by what made them."""

    def __init__(self, folder: Path):
        self.path = folder / RECORD
        self.entries: dict[str, dict] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def reusable(self, variant: str, key: str) -> Stored | None:
        """What was stored of ``variant`` if it was made under ``key`` and its file is there, unchanged."""
        entry = self.entries.get(variant)
        if not entry or entry.get("key") != key or not Path(entry["path"]).is_file():
            return None
        if file_digest(Path(entry["path"])) != entry.get("sha256"):
            return None  # changed on disk since: export again
        log.info(
            "export: %s unchanged since the last export (%s), reused with its parity report",
            variant,
            entry["path"],
        )
        return Stored(Path(entry["path"]), entry["report"], entry.get("head"))

    def record(self, variant: str, key: str, path: Path, report: dict, *, head: dict | None = None) -> None:
        """Stores ``variant``'s file (by its bytes' digest), parity report and abstain head under ``key``."""
        entry = {"key": key, "path": str(path), "sha256": file_digest(path), "report": report}
        self.entries[variant] = {**entry, **({"head": head} if head is not None else {})}
        write_text_atomic(self.path, json.dumps(self.entries, indent=2) + "\n")
