"""Atomic file writes for the build: a temporary sibling, then a rename, so a crash never leaves half a file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from converters.export import write_atomic


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Writes ``data`` to ``path`` atomically, creating the folder."""
    path = Path(path)
    write_atomic(path, data)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Writes UTF-8 ``text`` to ``path`` atomically, creating the folder."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_with(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Atomically writes whatever ``write(temporary_path)`` writes (a CSV, a plot, a Keras model).

    The temporary name keeps ``path``'s suffix, since writers such as Keras pick the format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp{os.getpid()}.{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
