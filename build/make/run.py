"""The run folder: where a build keeps its config, split, cache, checkpoints and outputs.

runs/<name>/
  config.json        the resolved BuildConfig; --resume refuses changed data/model/train settings
  split.csv          image_id, path, label, group, split (+ metadata): the exact images of each split
  float/             checkpoints/<phase>/, best.weights.npz, last.weights.npz, log.csv, state.json,
                     model.keras (the float reference), summary.json, result.json (build.make.results)
  fixres/            with [fixres]: the same files, for the float model's last epochs at the release's
                     input size (build.make.fixres); then it is the float reference of QAT and export
  qat/               checkpoints/, best.weights.npz, log.csv, state.json, model.h5 (quantization-aware),
                     summary.json, result.json
  export/            model_<variant>.tflite, qat/ and ptq/ int8 candidates, parity.json, report/, result.json
  bundle/            the model bundle (see converters.bundle and edge.card)
  cache/             decoded uint8 images (~1.3 GB for HAM10000 at 160 px); `--cache-dir DIR` puts them
                     elsewhere, e.g. one folder that runs with the same data and input size share
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from build.atomic import write_text_atomic, write_with
from build.config import BuildConfig
from build.make.datasets import add_to_training, fingerprint, load_dataset, merge_datasets, split_by_group
from edge.preprocess import InputSpec
from edge.tasks import task as task_row
from models.backbones import BACKBONES

log = logging.getLogger(__name__)


# Export settings only shape the last stage, which always runs again: changing them is safe on resume
# (and so are QAT settings before QAT has started).
RESUMABLE_CHANGES = {"export"}
# Train settings that act only once the last epoch is done, so they may change until the float model exists.
AFTER_TRAINING_KEYS = ("fit_class_bias",)


@dataclass(frozen=True)
class Run:
    """Paths of one run folder; ``cache`` is where decoded images go (default: the run's ``cache/``)."""

    root: Path
    cache: Path | None = None

    @property
    def config_file(self) -> Path:
        return self.root / "config.json"

    @property
    def split_file(self) -> Path:
        return self.root / "split.csv"

    @property
    def cache_dir(self) -> Path:
        return self.cache if self.cache is not None else self.root / "cache"

    def stage(self, name: str) -> Path:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def load_config(self) -> BuildConfig:
        from build.config import from_dict

        if not self.config_file.is_file():
            raise FileNotFoundError(f"{self.root} is not a run folder: {self.config_file.name} is missing")
        return from_dict(BuildConfig, json.loads(self.config_file.read_text()), where=str(self.config_file))


def start_run(
    root: str | Path, config: BuildConfig, *, resume: bool, cache_dir: str | Path | None = None
) -> Run:
    """Creates a run folder, or reopens one for ``resume`` after checking the config is unchanged.

    Raises:
        FileExistsError: The folder holds a run and ``resume`` is False.
        ValueError: ``resume`` with a config that differs from the saved one.
    """
    run = Run(Path(root), Path(cache_dir) if cache_dir is not None else None)
    if run.config_file.exists():
        if not resume:
            raise FileExistsError(
                f"{run.root} already holds a run; pass --resume to continue it, or choose "
                "another --run folder"
            )
        # Through the dataclasses: a key added to the code since the run started reads as its default.
        saved, wanted = json.loads(run.load_config().to_json()), json.loads(config.to_json())
        changed = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
        # A later stage's settings may change as long as that stage has not started (FixRes comes before
        # QAT: a QAT model trained at the old size must not be reused at a new one).
        # Started: an epoch done, or its model made (FixRes with no epoch writes no state.json).
        outputs = {"fixres": ("state.json", "model.keras"), "qat": ("state.json", "model.h5")}
        started = {
            name: any((run.root / name / f).exists() for f in files) for name, files in outputs.items()
        }
        allowed = RESUMABLE_CHANGES | ({"qat"} if not started["qat"] else set())
        allowed |= {"fixres"} if not (started["fixres"] or started["qat"]) else set()
        train_changes = {k for k in saved["train"] if saved["train"][k] != wanted["train"].get(k)}
        if train_changes <= set(AFTER_TRAINING_KEYS) and not (run.root / "float" / "model.keras").exists():
            allowed |= {"train"}
        if set(changed) - allowed:
            raise ValueError(
                f"cannot resume {run.root}: the config differs from the saved one in {changed}. "
                "Resume with the same config, or start a new run folder."
            )
        if changed:
            log.info("resume: %s changed; the stages still to run use the new values", changed)
            write_text_atomic(run.config_file, config.to_json())
        return run
    run.root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run.config_file, config.to_json())
    return run


def input_spec(config: BuildConfig) -> InputSpec:
    """The input spec every stage and the bundle share: the config's size and framing, the backbone's
    normalization (``models.backbones.Backbone``)."""
    backbone = BACKBONES[config.model.backbone]
    return InputSpec(
        height=config.model.image_size,
        width=config.model.image_size,
        resize=config.resize,
        mean=backbone.mean,
        std=backbone.std,
    )


def class_names(config: BuildConfig, frame: pd.DataFrame | None = None) -> list[str]:
    """The output classes, in order: ``data.classes``, else the task's fixed classes, else the sorted labels
    found in ``frame``."""
    fixed = _fixed_classes(config)
    if fixed:
        return list(fixed)
    if frame is None:
        raise ValueError("class names come from the data: pass the frame or set data.classes")
    return sorted(frame["label"].unique())


def prepare_split(run: Run, config: BuildConfig) -> pd.DataFrame:
    """Loads and merges the sources, splits by lesion, adds the training-only sources, and saves
    ``split.csv`` (reused on resume)."""
    if run.split_file.exists():
        return pd.read_csv(run.split_file)
    labels = _fixed_classes(config)
    sources = load_sources(
        config.data.sources,
        config.data.label_maps,
        merge_duplicate_lesions=config.data.merge_duplicate_lesions,
    )
    frame, report = merge_datasets(sources, labels=labels)
    for line in report.lines():
        log.info("data: %s", line)
    frame = split_by_group(frame, config.data.split)
    if config.data.train_only_sources:
        extras = load_sources(
            config.data.train_only_sources,
            config.data.train_only_label_maps,
            merge_duplicate_lesions=config.data.merge_duplicate_lesions,
        )
        frame, report = add_to_training(frame, extras, labels=labels)
        for line in report.lines():
            log.info("data (training only): %s", line)
    write_csv_atomic(run.split_file, frame)
    return frame


def _fixed_classes(config: BuildConfig) -> tuple[str, ...] | None:
    """The classes the config fixes (``data.classes``, else the task's fixed ones), or None: the data decide."""
    task = task_row(config.data.task)
    return config.data.classes or (task.codes if task.fixed_classes else None)


def load_sources(
    sources: tuple[str, ...], label_maps: tuple[str, ...], *, merge_duplicate_lesions: bool = True
) -> list[pd.DataFrame]:
    """Each source's table (``load_dataset``) with its label map; ``label_maps`` may stop early."""
    maps = list(label_maps) + [""] * (len(sources) - len(label_maps))
    return [
        load_dataset(source, label_map=label_map or None, merge_duplicate_lesions=merge_duplicate_lesions)
        for source, label_map in zip(sources, maps)
    ]


def split_summary(frame: pd.DataFrame, config: BuildConfig) -> dict:
    """What the card records so ``--split val`` re-derives exactly the same images later: the fingerprint
    covers the split's own sources, not the images added to training alone."""
    train_only = frame.get("train_only", pd.Series(False, index=frame.index)).astype(bool)
    summary = {
        "seed": config.data.split.seed,
        "fractions": list(config.data.split.fractions),
        "grouped_by": "lesion_id",
        "duplicate_lesions_merged": config.data.merge_duplicate_lesions,
        "lesion_groups": int(frame.loc[~train_only, "group"].nunique()),
        "data_fingerprint": fingerprint(frame[~train_only]),
        "counts": {s: int((frame["split"] == s).sum()) for s in ("train", "val", "test")},
    }
    if train_only.any():
        summary["training_only"] = {
            "sources": list(config.data.train_only_sources),
            "images": int(train_only.sum()),
        }
    return summary


def write_csv_atomic(path: Path, frame: pd.DataFrame) -> None:
    write_with(path, lambda tmp: frame.to_csv(tmp, index=False))
