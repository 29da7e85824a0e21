"""What each stage of a build hands to the next: one small record per stage, saved in the run folder.

    float/result.json    FloatResult: the float model, its decision shift, best epoch, timings, schedule
    qat/result.json      QatResult: the quantization-aware model, best epoch, timings
    export/result.json   ExportResult: whether the parity gates passed, the bundle, where it was published

The next stage and the card read these records, never the stages' own logs. A run folder written before
the records existed holds a ``summary.json`` per stage instead: :func:`read_float` and :func:`read_qat`
derive the record from it, so such a run still resumes and exports.

    >>> floated = read_float(run.root, needed_by="qat")
    >>> floated.logit_shift, floated.best_epoch
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from build.atomic import write_text_atomic
from build.stage_configs import SplitConfig

RESULT_FILE = "result.json"
SUMMARY_FILE = "summary.json"  # what a stage wrote before RESULT_FILE existed; still written, for people
# What the card's training.float and training.qat record of each stage (the card's layout, unchanged).
CARD_FLOAT_KEYS = (
    "best",
    "best_epoch",
    "epoch",
    "seconds",
    "steps_per_epoch",
    "logit_shift",
    "deterministic",
    "schedule",
    "seconds_per_epoch",
)
CARD_QAT_KEYS = ("best", "best_epoch", "epoch", "seconds", "steps_per_epoch")


@dataclass(frozen=True)
class FloatResult:
    """What float training made.

    Attributes:
        path: The float reference model (``float/model.keras``), its decision shift folded into the head.
        classes: Class codes in output order.
        logit_shift: The per-class shift folded into the head (QAT takes it out and puts it back; a release
            records it so it can be quantized again). None for runs saved before it was recorded: theirs
            is the prior correction's.
        best: Best validation balanced accuracy (with the shift), None where unknown.
        best_epoch: The epoch kept.
        epoch: Epochs completed.
        seconds: Training time summed over epochs (all processes of a resumed run).
        steps_per_epoch: Steps per epoch.
        seconds_per_epoch: ``seconds`` over ``epoch``.
        deterministic: Whether TensorFlow's deterministic kernels were on.
        schedule: Epochs, learning rate, optimizer and batch size as trained.
        finished_early: Ended at its best epoch on request (``--finish-training``).
    """

    path: Path
    classes: tuple[str, ...] = ()
    logit_shift: tuple[float, ...] | None = None
    best: float | None = None
    best_epoch: int | None = None
    epoch: int | None = None
    seconds: float | None = None
    steps_per_epoch: int | None = None
    seconds_per_epoch: float | None = None
    deterministic: bool | None = None
    schedule: dict[str, Any] | None = None
    finished_early: bool = False

    def save(self) -> Path:
        """Writes the record beside the model (``result.json``); returns its path."""
        return _save(self)

    def card_record(self) -> dict[str, Any]:
        """The card's ``training.float``."""
        return _card_record(self, CARD_FLOAT_KEYS)

    @classmethod
    def from_card(cls, card: dict[str, Any], path: Path) -> FloatResult | None:
        """The float record a bundle's ``model_card.json`` holds for its file ``path``, or None."""
        record = card.get("training", {}).get("float")
        return None if record is None else _from_dict(cls, {"path": path, **record})


@dataclass(frozen=True)
class QatResult:
    """What quantization-aware training made.

    Attributes:
        path: The QAT model (``qat/model.h5``), the float model's decision shift folded back in.
        best: Best validation balanced accuracy under fake quantization (epoch 0 = before fine-tuning).
        best_epoch: The epoch kept (0 = the float weights were not beaten).
        epoch: Epochs completed.
        seconds: Training time summed over epochs.
        steps_per_epoch: Steps per epoch.
        finished_early: Ended at its best epoch on request.
    """

    path: Path
    best: float | None = None
    best_epoch: int | None = None
    epoch: int | None = None
    seconds: float | None = None
    steps_per_epoch: int | None = None
    finished_early: bool = False

    def save(self) -> Path:
        """Writes the record beside the model (``result.json``); returns its path."""
        return _save(self)

    def card_record(self) -> dict[str, Any]:
        """The card's ``training.qat``."""
        return _card_record(self, CARD_QAT_KEYS)


@dataclass(frozen=True)
class ExportResult:
    """What the export stage made.

    Attributes:
        passed: Every shipped variant passed its parity gate (else nothing was bundled or published).
        parity: The parity reports (``export/parity.json``).
        bundle: The run's bundle, None when a gate failed.
        published: Where the bundle was released, None when it was not.
        variants: The variants shipped.
        seconds: Wall time of the stage.
    """

    passed: bool
    parity: Path
    bundle: Path | None = None
    published: Path | None = None
    variants: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def path(self) -> Path:
        """What the stage made: the bundle, or the parity reports when a gate failed."""
        return self.bundle if self.passed and self.bundle is not None else self.parity

    @property
    def status(self) -> int:
        """The command's exit status: 0, or 1 when a parity gate failed."""
        return 0 if self.passed else 1

    def save(self, folder: Path) -> Path:
        """Writes the record into the export folder; returns its path."""
        data = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}
        path = folder / RESULT_FILE
        write_text_atomic(path, json.dumps(data, indent=2) + "\n")
        return path


@dataclass(frozen=True)
class SplitRecord:
    """The split a bundle was built on, as its card records it (``training.split``, written from
    ``build.make.run.split_summary``), so ``skinlesion evaluate --split val`` re-derives its images.

    Attributes:
        seed: Seed of the split.
        fractions: Train, val and test shares.
        data_fingerprint: Fingerprint of the images split (None on early cards).
        duplicate_lesions_merged: Whether HAM10000's duplicate lesions were merged before splitting
            (cards written before the merge lack the key: False).
    """

    seed: int
    fractions: tuple[float, ...]
    data_fingerprint: str | None = None
    duplicate_lesions_merged: bool = False

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> SplitRecord | None:
        """The record in a bundle's ``model_card.json``, or None when it holds no split."""
        split = card.get("training", {}).get("split")
        if not split:
            return None
        return cls(
            seed=split["seed"],
            fractions=tuple(split["fractions"]),
            data_fingerprint=split.get("data_fingerprint"),
            duplicate_lesions_merged=split.get("duplicate_lesions_merged", False),
        )

    def split_config(self) -> SplitConfig:
        """The split config that re-derives the bundle's split."""
        return SplitConfig(seed=self.seed, fractions=self.fractions)


def read_float(root: Path, *, needed_by: str, stage: str = "float") -> FloatResult:
    """The float stage's record of the run in ``root`` (``stage="fixres"``: the FixRes stage's).

    Raises:
        FileNotFoundError: No float model yet; the message says what to run.
    """
    folder = root / stage
    path = folder / "model.keras"
    if not path.exists():
        raise FileNotFoundError(
            f"{needed_by} needs the float model {path}; run `skinlesion train {root}` first"
        )
    return _read(FloatResult, folder, path)


def read_qat(root: Path, *, needed_by: str) -> QatResult:
    """The QAT stage's record of the run in ``root``.

    Raises:
        FileNotFoundError: No QAT model yet; the message says what to run.
    """
    folder = root / "qat"
    path = folder / "model.h5"
    if not path.exists():
        raise FileNotFoundError(
            f"{needed_by} needs the QAT model {path}; run `skinlesion qat {root}` "
            "(or set qat.enabled = false)"
        )
    return _read(QatResult, folder, path)


def _read(cls, folder: Path, path: Path):
    """The record in ``folder``: its ``result.json``, else derived from the ``summary.json`` that runs made
    before the records existed (every field of the record is a key of that summary), else the bare path."""
    for name in (RESULT_FILE, SUMMARY_FILE):
        if (folder / name).is_file():
            return _from_dict(cls, {**json.loads((folder / name).read_text()), "path": path})
    return cls(path=path)


def _from_dict(cls, data: dict[str, Any]):
    """``cls`` from a saved record, a summary or a card section: unknown keys (a summary's prior, a state's
    counters) are left out, lists become tuples."""
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name in data:
            value = data[field.name]
            kwargs[field.name] = tuple(value) if isinstance(value, list) else value
    kwargs["path"] = Path(kwargs["path"])
    return cls(**kwargs)


def _save(result: FloatResult | QatResult) -> Path:
    data = dataclasses.asdict(result)
    data["path"] = result.path.name  # relative, so a run folder can move
    path = result.path.parent / RESULT_FILE
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
    return path


def _card_record(result: FloatResult | QatResult, keys: tuple[str, ...]) -> dict[str, Any]:
    record = {key: getattr(result, key) for key in keys}
    return {key: list(value) if isinstance(value, tuple) else value for key, value in record.items()}
