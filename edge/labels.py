"""Class labels: ``labels.txt`` and the label files a TFLite model carries in its metadata.

``labels.txt`` holds one class code per line, and the line number is the output index, so a blank or
repeated line would silently give some output the wrong name: :func:`read_labels` refuses both.

    >>> read_labels("models/pretrained/ham10000/labels.txt")
    ('akiec', 'bcc', 'bkl', 'df', 'mel', 'nv', 'vasc')
    >>> labels_for_model(Path("model_int8.tflite"), None, num_outputs=7)   # labels.txt beside, or metadata
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

from edge.card import LABELS_FILE
from edge.errors import LabelsError

# The files the TFLite metadata writer (converters.metadata) packs into a model: codes and display names.
METADATA_LABELS_FILE = LABELS_FILE
METADATA_DISPLAY_NAMES_FILE = "labels_en.txt"
METADATA_ABSTAIN_LABELS_FILE = "abstain_labels.txt"


def read_labels(path: str | os.PathLike) -> tuple[str, ...]:
    """Reads a labels file: class codes in output order, one per line.

    Raises:
        LabelsError: The file is missing, empty, has a blank line among the labels or a repeated label;
            the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelsError(
            f"{path} not found: pass the labels file that belongs to the model (one class "
            "per line, in output order)"
        )
    # utf-8-sig: a file saved by Windows Notepad starts with a byte-order mark that is not part of a label.
    return parse_labels(path.read_text(encoding="utf-8-sig"), str(path))


def parse_labels(text: str, origin: str) -> tuple[str, ...]:
    """Class codes from a labels file's text; ``origin`` names the file in errors.

    Surrounding spaces and trailing empty lines are ignored.

    Raises:
        LabelsError: No label, a blank line among the labels, or a label listed twice.
    """
    lines = _lines(text)
    if not lines:
        raise LabelsError(f"{origin} is empty: write one class code per line, in output order")
    if "" in lines:
        raise LabelsError(
            f"{origin}: line {lines.index('') + 1} is blank, so every label after it would "
            "name the wrong output; remove the blank line (one class code per line, in output "
            "order)"
        )
    repeated = sorted({label for label in lines if lines.count(label) > 1})
    if repeated:
        raise LabelsError(
            f"{origin} lists {', '.join(repeated)} more than once; each class has one line, in output order"
        )
    return tuple(lines)


def labels_for_model(path: Path, labels: Sequence[str] | None, num_outputs: int) -> tuple[str, ...]:
    """The class codes of a bare model file: ``labels`` when given, else the ``labels.txt`` beside the
    file, else the label file packed in its TFLite metadata.

    Raises:
        SkinlesionError: No labels are found, or their number differs from the model's outputs.
    """
    if labels is not None:
        resolved, origin = tuple(str(label) for label in labels), "labels="
    elif (path.parent / LABELS_FILE).is_file():
        origin = str(path.parent / LABELS_FILE)
        resolved = read_labels(path.parent / LABELS_FILE)
    else:
        resolved, origin = tuple(read_metadata_labels(path, num_outputs) or ()), f"{path} metadata"
        if not resolved:
            raise LabelsError(
                f"no labels for {path}: pass labels= (--labels FILE), put a {LABELS_FILE} "
                "beside the model, or use a bundle folder"
            )
    if len(resolved) != num_outputs:
        raise LabelsError(
            f"{origin} gives {len(resolved)} labels but {path} outputs {num_outputs} "
            "scores; pass the labels file that belongs to this model"
        )
    return resolved


def read_metadata_labels(path: Path, num_classes: int) -> list[str] | None:
    """Labels from the label file packed in a ``.tflite``'s metadata (a zip appended to the model), if any.

    The metadata writer stores associated files as zip members; a ``.txt`` member (names containing
    ``label`` first) with one line per output is taken as the label file.
    """
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        names = sorted(
            (
                n
                for n in archive.namelist()
                if n.lower().endswith(".txt") and n != METADATA_ABSTAIN_LABELS_FILE
            ),
            key=lambda n: (n != METADATA_LABELS_FILE, "label" not in n.lower()),
        )
        for name in names:
            lines = _packed_lines(archive, name)
            if len(lines) == num_classes:
                return lines
    return None


def read_metadata_display_names(path: Path, labels: Sequence[str]) -> dict[str, str]:
    """``{code: display name}`` from a ``.tflite``'s packed metadata files; empty when it has none.

    The names count only when the packed label file lists exactly ``labels``, so a labels file passed
    by hand that reorders the classes never gets the wrong names.
    """
    if not zipfile.is_zipfile(path):
        return {}
    with zipfile.ZipFile(path) as archive:
        members = set(archive.namelist())
        if not {METADATA_LABELS_FILE, METADATA_DISPLAY_NAMES_FILE} <= members:
            return {}
        codes, names = (
            _packed_lines(archive, member) for member in (METADATA_LABELS_FILE, METADATA_DISPLAY_NAMES_FILE)
        )
    if codes != list(labels) or len(names) != len(codes):
        return {}
    return dict(zip(codes, names))


def _lines(text: str) -> list[str]:
    """Stripped lines without the trailing empty ones."""
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _packed_lines(archive: zipfile.ZipFile, member: str) -> list[str]:
    """The non-empty stripped lines of a text file packed in a model's metadata."""
    return [line for line in _lines(archive.read(member).decode("utf-8", errors="replace")) if line]
