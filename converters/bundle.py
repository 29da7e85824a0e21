"""Writes a model bundle folder atomically: a crash mid-write leaves the previous bundle as it was.

    >>> write_bundle("models/pretrained/ham10000", card, {"int8": run / "model_int8.tflite"},
    ...              reference=run / "float.keras", report_dir=run / "report")

The bundle is assembled in a hidden sibling folder, then swapped in with two renames (old aside, new
in) and the old one deleted. ``edge.bundle.load_bundle`` reads and checks what this writes. One writer
per bundle at a time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Mapping

from edge import variants as variant_table
from edge.card import CARD_FILE, LABELS_FILE, ModelCard, ModelFile
from edge.errors import BundleError
from edge.interpreter import open_interpreter

log = logging.getLogger(__name__)

REFERENCE = "reference"  # card.files key of the float Keras model, as edge.bundle reads it
REPORT_DIR = "report"
COPY_CHUNK = 1 << 20
_PARTIAL = ".partial-"
_OLD = ".old-"


def write_bundle(
    folder: str | os.PathLike,
    card: ModelCard,
    model_files: Mapping[str, str | os.PathLike],
    *,
    reference: str | os.PathLike | None = None,
    report_dir: str | os.PathLike | None = None,
) -> Path:
    """Writes (or atomically replaces) a bundle folder.

    Args:
        folder: The bundle folder to create or replace.
        card: The model card; its ``files`` are filled in here from the copied files.
        model_files: Variant (a shipped row of ``edge.variants.VARIANTS``) -> .tflite file, copied in
            under the row's file name.
        reference: The float Keras model (``.keras`` or ``.h5``), copied in as ``reference.<suffix>``.
        report_dir: A folder of plots and reports, copied in as ``report/``.

    Returns:
        The bundle folder.

    Raises:
        BundleError: A variant is unknown, a file is missing, or a model's output size differs from the
            card's number of classes. Nothing is changed on disk in that case.
    """
    started = time.perf_counter()
    folder = Path(folder).expanduser().absolute()
    sources = _check_inputs(card, model_files, reference, report_dir)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(folder)

    staging = folder.parent / f".{folder.name}{_PARTIAL}{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        files = {}
        for key, (source, name) in sources.items():
            size, digest = _copy_file(source, staging / name)
            files[key] = ModelFile(path=name, bytes=size, sha256=digest)
        if report_dir is not None:
            shutil.copytree(report_dir, staging / REPORT_DIR)
        final = dataclasses.replace(card, files=files)
        _write_text(staging / LABELS_FILE, "\n".join(final.labels) + "\n")
        _write_text(staging / CARD_FILE, final.to_json())
        _fsync(staging)
        _swap_in(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    total = sum(f.bytes for f in files.values())
    log.info(
        "wrote bundle %s: %s, %.2f MB, %.1f s",
        folder,
        ", ".join(files),
        total / 1e6,
        time.perf_counter() - started,
    )
    return folder


def publish_bundle(bundle: str | os.PathLike, folder: str | os.PathLike) -> Path:
    """Releases a built bundle: its TFLite files, card and report go to ``folder`` (atomically), the float
    reference stays behind. The files were validated when the bundle was built; this checks they are still
    the ones the card lists and exports nothing again.

        >>> publish_bundle("runs/ham10000/bundle", "models/pretrained/ham10000")

    Raises:
        BundleError: ``bundle`` is missing, inconsistent, or holds no TFLite model; ``folder`` is unchanged.
    """
    from edge.bundle import load_bundle

    built = load_bundle(bundle)
    if Path(folder).expanduser().resolve() == built.folder:
        raise BundleError(
            f"{folder} is the bundle being published; pass another folder (e.g. models/pretrained/<name>)"
        )
    if not built.variants:
        raise BundleError(f"{built.folder} holds no TFLite model to publish; export the run first")
    report = built.folder / REPORT_DIR
    return write_bundle(
        folder,
        built.card,
        {variant: built.path(variant) for variant in built.variants},
        report_dir=report if report.is_dir() else None,
    )


def _check_inputs(
    card: ModelCard,
    model_files: Mapping[str, str | os.PathLike],
    reference: str | os.PathLike | None,
    report_dir: str | os.PathLike | None,
) -> dict[str, tuple[Path, str]]:
    if not model_files:
        raise BundleError(
            f"no model files given for bundle {card.name!r}; pass at least one of {variant_table.names()}"
        )
    sources = {}
    for variant, source in model_files.items():
        if variant not in variant_table.names():
            raise BundleError(
                f"unknown variant {variant!r} for {source}; expected one of {variant_table.names()}"
            )
        path = Path(source)
        if not path.is_file():
            raise BundleError(f"{variant} model {path} not found; export it before writing the bundle")
        outputs = _output_size(path)
        if outputs != len(card.classes):
            raise BundleError(
                f"{path} outputs {outputs} scores but the card lists {len(card.classes)} "
                f"classes ({', '.join(card.labels)}); export the model that belongs to this "
                "card"
            )
        sources[variant] = (path, variant_table.variant(variant).file)
    if reference is not None:
        path = Path(reference)
        if not path.is_file():
            raise BundleError(
                f"reference model {path} not found; pass the float .keras file or reference=None"
            )
        sources[REFERENCE] = (path, f"reference{path.suffix}")
    if report_dir is not None and not Path(report_dir).is_dir():
        raise BundleError(f"report folder {report_dir} not found; pass the run's report folder or None")
    return sources


def _output_size(path: Path) -> int:
    try:
        return int(open_interpreter(path).get_output_details()[0]["shape"][-1])
    except (ValueError, RuntimeError) as error:
        raise BundleError(f"{path} is not a TFLite model LiteRT can open ({error}); re-export it") from error


def _copy_file(source: Path, target: Path) -> tuple[int, str]:
    """Copies in chunks, hashing on the way; returns (bytes, sha256 hex)."""
    digest = hashlib.sha256()
    size = 0
    with open(source, "rb") as reader, open(target, "wb") as writer:
        for chunk in iter(lambda: reader.read(COPY_CHUNK), b""):
            writer.write(chunk)
            digest.update(chunk)
            size += len(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    return size, digest.hexdigest()


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


def _fsync(folder: Path) -> None:
    # Directory entries must be durable before the rename publishes them.
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _swap_in(staging: Path, folder: Path) -> None:
    if not folder.exists():
        os.rename(staging, folder)
    else:
        aside = folder.parent / f".{folder.name}{_OLD}{uuid.uuid4().hex[:8]}"
        os.rename(folder, aside)
        try:
            os.rename(staging, folder)
        except BaseException:
            os.rename(aside, folder)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    _fsync(folder.parent)


def _remove_leftovers(folder: Path) -> None:
    """Cleans up after a writer that was killed: half-written staging folders, and an old bundle that
    was moved aside but never deleted (restored when the new one never arrived)."""
    for leftover in sorted(folder.parent.glob(f".{folder.name}{_OLD}*")):
        if not folder.exists():
            log.warning("restoring bundle %s from %s left by an interrupted write", folder, leftover.name)
            os.rename(leftover, folder)
        else:
            shutil.rmtree(leftover, ignore_errors=True)
    for leftover in folder.parent.glob(f".{folder.name}{_PARTIAL}*"):
        log.warning("removing %s left by an interrupted bundle write", leftover)
        shutil.rmtree(leftover, ignore_errors=True)
