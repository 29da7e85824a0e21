"""One context per run: the split, classes, input spec and decoded images, built once and handed to every stage.

    >>> ctx = prepare(start_run("runs/tiny", config, resume=False), config)
    >>> floated = train_float(ctx)
    >>> quantized = apply_qat(ctx, floated)

No stage derives these again from ``(run, config)`` on its own; the images are decoded (or their cache
opened) the first time a stage asks for them, and shared by every later stage of the same process.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from build.config import BuildConfig
from build.make.cache import CachedImages, build_cache, build_source_cache
from build.make.run import Run, class_names, input_spec, prepare_split, split_summary
from edge.preprocess import InputSpec


# eq=False: a context is compared by identity (its frame is a DataFrame, which has no truth value).
@dataclass(frozen=True, eq=False)
class RunContext:
    """What every stage of one run reads.

    Attributes:
        run: The run folder.
        config: The resolved build config.
        frame: The split (``split.csv``): one row per image, with its ``split``.
        classes: Class codes in output order.
        spec: The input spec every stage and the bundle share.
        float_stage: The run's folder holding the float model QAT and the export start from: ``float``, or
            ``fixres`` for the context of the stages after FixRes (``build.make.fixres``).
        recipe: The run's own config when ``config`` is derived from it for the stages after FixRes
            (the card records the recipe); None when ``config`` is the run's config.
    """

    run: Run
    config: BuildConfig
    frame: pd.DataFrame = field(repr=False)
    classes: tuple[str, ...]
    spec: InputSpec
    float_stage: str = "float"
    recipe: BuildConfig | None = None

    @cached_property
    def train(self) -> CachedImages:
        """The training split as the training stages read it: at its source aspect when training frames it."""
        return self.images("train", source_aspect=self.config.train.augment.frames)

    @cached_property
    def val(self) -> CachedImages:
        """The validation split at the model's input, as the runtime frames it."""
        return self.images("val")

    def part(self, split: str) -> pd.DataFrame:
        """The rows of one split."""
        return self.frame[self.frame["split"] == split].reset_index(drop=True)

    def images(self, split: str, *, source_aspect: bool = False) -> CachedImages:
        """The decoded images of one split: at the model's input as the runtime frames them, or with
        ``source_aspect`` at their own aspect for training crops (``build.make.framing``)."""
        part = self.part(split)
        index = {c: i for i, c in enumerate(self.classes)}
        labels = np.array([index[label] for label in part["label"]], dtype=np.int32)
        if source_aspect:
            pixels, sizes = build_source_cache(list(part["path"]), self.spec, self.run.cache_dir)
            return CachedImages(pixels=pixels, labels=labels, sizes=sizes)
        return CachedImages(
            pixels=build_cache(list(part["path"]), self.spec, self.run.cache_dir), labels=labels
        )

    def split_summary(self) -> dict:
        """What the card records of the split (see ``build.make.run.split_summary``)."""
        return split_summary(self.frame, self.config)

    def with_config(self, config: BuildConfig) -> RunContext:
        """The same run under ``config``, which may change later stages' settings (qat, export) but not
        the data, classes or input size; the decoded images are opened again when asked for.

        Raises:
            ValueError: ``config`` changes the classes or the input spec.
        """
        if input_spec(config) != self.spec or tuple(class_names(config, self.frame)) != self.classes:
            raise ValueError(
                "with_config keeps the split, classes and input spec; prepare() a new context "
                "for a config that changes data or model settings"
            )
        return dataclasses.replace(self, config=config)


def prepare(run: Run, config: BuildConfig) -> RunContext:
    """Builds the context of ``run``: loads or makes the split (``split.csv``), names the classes and
    the input spec. The images are decoded later, when a stage first reads them.

    Raises:
        FileNotFoundError: An external test set (``export.external_data``) is missing: said before hours of
            training, not after them.
    """
    missing = [data for data in config.export.external_data if not Path(data).exists()]
    if missing:
        raise FileNotFoundError(
            f"export.external_data: {', '.join(missing)} not found; fix the path or drop it from the config"
        )
    frame = prepare_split(run, config)
    return RunContext(
        run=run,
        config=config,
        frame=frame,
        classes=tuple(class_names(config, frame)),
        spec=input_spec(config),
    )
