"""Reading and checking a model bundle: the folder with model_card.json, labels.txt and the model files.

A bundle is refused, with a message naming the file and what to do, when its card is missing or
invalid, its labels disagree with the card, or a model file is missing or differs (bytes, sha256) from
what the card recorded. That the model's output size matches the classes is checked by whoever opens
the model (``edge.classifier.Classifier``), via :meth:`Bundle.check_output_size`.

    >>> bundle = load_bundle(DEFAULT_BUNDLE)
    >>> bundle.path()            # the preferred variant present, e.g. .../model_int8.tflite
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from edge import variants as variant_table
from edge.card import CARD_FILE, LABELS_FILE, ModelCard
from edge.errors import BundleError, LabelsError
from edge.labels import read_labels

# A path, not an import: the released bundle is a folder of committed artifacts.
DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "models" / "pretrained" / "ham10000"
PRETRAINED = DEFAULT_BUNDLE.parent  # the released bundles, one folder each, named by task
REFERENCE = "reference"  # card.files key of the float Keras model
HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class Bundle:
    """A checked bundle.

    Attributes:
        folder: The bundle folder (absolute).
        card: Its model card.
        labels: Class codes in output order (labels.txt, equal to ``card.labels``).
    """

    folder: Path
    card: ModelCard
    labels: tuple[str, ...]

    @property
    def variants(self) -> tuple[str, ...]:
        """TFLite variants the bundle holds, in :data:`edge.variants.VARIANTS` preference order."""
        return tuple(v for v in variant_table.names() if v in self.card.files)

    def path(self, variant: str | None = None) -> Path:
        """The file of ``variant``, or of the most preferred TFLite variant present when None.

        Raises:
            BundleError: The variant is not in this bundle (the message lists those that are).
        """
        if variant is None:
            if not self.variants:
                raise BundleError(
                    f"{self.folder / CARD_FILE} lists no TFLite model (expected one of "
                    f"{', '.join(variant_table.names())}); re-export the bundle"
                )
            variant = self.variants[0]
        if variant not in self.card.files:
            raise BundleError(
                f"bundle {self.folder} has no {variant!r} model; it has: "
                f"{', '.join(self.card.files) or 'none'}"
            )
        return self.folder / self.card.files[variant].path

    def check_output_size(self, variant: str, num_outputs: int) -> None:
        """Raises BundleError when a model's output size differs from the number of classes."""
        if num_outputs != len(self.labels):
            raise BundleError(
                f"{self.path(variant)} outputs {num_outputs} scores but "
                f"{self.folder / CARD_FILE} lists {len(self.labels)} classes; the model and "
                "the card do not belong together — re-export the bundle"
            )


def load_bundle(folder: str | os.PathLike, *, verify: bool = True) -> Bundle:
    """Reads a bundle and checks it against its card.

    Args:
        folder: The bundle folder.
        verify: Check every model file's size and sha256 against the card (hashing costs ~10 ms per MB on
            a Raspberry Pi 4; leave it on unless the files were just checked).

    Raises:
        BundleError: The folder, card, labels or a model file is missing or inconsistent.
    """
    folder = resolve_bundle(folder).resolve()
    if not folder.is_dir():
        shipped = ", ".join(shipped_bundles()) or "none in this install"
        raise BundleError(
            f"model bundle {folder} not found (expected a folder with {CARD_FILE}); pass "
            f"--bundle DIR or the name of a shipped bundle ({shipped}), or build one with "
            "`skinlesion build`"
        )
    card = read_card(folder / CARD_FILE)
    labels = _read_bundle_labels(folder / LABELS_FILE)
    if labels != tuple(card.labels):
        raise BundleError(
            f"{folder / LABELS_FILE} lists {list(labels)} but {folder / CARD_FILE} lists "
            f"classes {card.labels}; they must match line by line — re-export the bundle"
        )
    if verify:
        for variant, entry in card.files.items():
            check_file(folder, variant, entry.path, entry.bytes, entry.sha256)
    return Bundle(folder=folder, card=card, labels=labels)


def shipped_bundles() -> dict[str, Path]:
    """The bundles released with the code (``models/pretrained/<name>``), by name."""
    if not PRETRAINED.is_dir():
        return {}
    return {p.name: p for p in sorted(PRETRAINED.iterdir()) if (p / CARD_FILE).is_file()}


def resolve_bundle(folder: str | os.PathLike) -> Path:
    """``folder`` as given when it exists; otherwise a shipped bundle's name resolves to its folder.

    >>> resolve_bundle("msid")      # no ./msid here: .../models/pretrained/msid
    """
    path = Path(folder).expanduser()
    if path.exists() or len(path.parts) != 1:
        return path
    return shipped_bundles().get(path.name, path)


def read_card(path: Path) -> ModelCard:
    """Parses model_card.json; raises BundleError naming the file when it is missing or invalid."""
    if not path.is_file():
        raise BundleError(
            f"{path} not found: a bundle folder needs its model card; pass the bundle folder "
            "itself (the one holding model_card.json)"
        )
    try:
        return ModelCard.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as error:
        raise BundleError(f"{path} is not valid JSON ({error}); restore it from the release") from error
    except (KeyError, TypeError, ValueError) as error:
        raise BundleError(
            f"{path} is not a valid model card ({type(error).__name__}: {error}); restore it "
            "from the release or upgrade skinlesion"
        ) from error


def _read_bundle_labels(path: Path) -> tuple[str, ...]:
    """A bundle's labels.txt (:func:`edge.labels.read_labels`); raises BundleError naming the file."""
    if not path.is_file():
        raise BundleError(f"{path} not found: a bundle needs its labels file; restore it from the release")
    try:
        return read_labels(path)
    except LabelsError as error:
        raise BundleError(f"{error}; restore it from the release or re-export the bundle") from error


def check_file(folder: Path, variant: str, relative: str, size: int, sha256: str) -> None:
    """Raises BundleError when a bundle file is missing, outside the folder, or differs from the card."""
    path = (folder / relative).resolve()
    if folder not in path.parents:
        raise BundleError(
            f"{folder / CARD_FILE}: the {variant} file path {relative!r} points outside the "
            "bundle; the card is corrupt"
        )
    if not path.is_file():
        raise BundleError(
            f"{path} ({variant} model) is missing from the bundle; restore it from the release "
            "or re-export the bundle"
        )
    actual_size = path.stat().st_size
    if actual_size != size:
        raise BundleError(
            f"{path} is {actual_size:,} bytes but the card says {size:,}: the file is "
            "truncated or replaced; restore it from the release"
        )
    actual_sha = file_sha256(path)
    if actual_sha != sha256:
        raise BundleError(
            f"{path} has sha256 {actual_sha} but the card says {sha256}: the file is corrupt "
            "or replaced; restore it from the release"
        )


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
