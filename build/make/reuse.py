"""What an export already did, so that ``--resume`` (or ``skinlesion export`` again) skips it.

Each exported file is recorded in ``export/exports.json`` with a key: the bytes of the model it came
from, the variant, the export settings, the validation images and the code version. A file whose key is
unchanged is reused with its parity report instead of being converted and validated again (the five
exports and their checks take minutes); any change (a retrained model, other settings, other code, a
dirty work tree's code version) exports it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
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


class ExportRecord:
    """The exports of one run's ``export/`` folder, keyed by what made them."""

    def __init__(self, folder: Path):
        self.path = folder / RECORD
        self.entries: dict[str, dict] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def reusable(self, variant: str, key: str) -> tuple[Path, dict] | None:
        """The file and parity report of ``variant`` if they were made under ``key`` and the file is there."""
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
        return Path(entry["path"]), entry["report"]

    def record(self, variant: str, key: str, path: Path, report: dict) -> None:
        self.entries[variant] = {"key": key, "path": str(path), "sha256": file_digest(path), "report": report}
        write_text_atomic(self.path, json.dumps(self.entries, indent=2) + "\n")
