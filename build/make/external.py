"""The build's external tests: data sets beyond the split (``export.external_data``), each without the
images the run's own sources hold, so what is left is data the model never saw in any split.

The ISIC archive beside HAM10000 is the case it was made for: 1,362 of its 2,049 images (each counted
once) are HAM10000's own; the 687 left come from other clinics and cameras (mostly melanomas and moles),
closer to the external test set the maintainers score releases on than anything in the split::

    >>> for name, images in external_test_sets(config.export, ctx.frame, ctx.classes):
    ...     evaluate_model(bundle, images, out / f"report-external-{name}")
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from build.config import ExportConfig
from build.make.datasets import merge_datasets
from build.make.run import load_sources

log = logging.getLogger(__name__)


def external_test_sets(
    export: ExportConfig, frame: pd.DataFrame, classes: Sequence[str]
) -> Iterator[tuple[str, pd.DataFrame]]:
    """``(name, images)`` per external data set: its images of ``classes``, each once (as training merges
    a source), without those whose ``image_id`` is in ``frame`` (the run's data). A set left empty is
    skipped with a warning (e.g. one the run also trained on).

    Raises:
        FileNotFoundError: An external data set is missing.
    """
    sources = load_sources(export.external_data, export.external_label_maps)
    for source, loaded in zip(export.external_data, sources):
        images, report = merge_datasets([loaded], labels=classes)
        for line in report.lines()[1:]:
            log.info("external %s: %s", source, line)
        unseen = images[~images["image_id"].isin(set(frame["image_id"]))].reset_index(drop=True)
        name = Path(source).stem
        if unseen.empty:
            log.warning("external %s: every image is in the run's data; no external test on it", source)
            continue
        log.info("external %s: %d of %d images are not in the run's data", source, len(unseen), len(images))
        yield name, unseen
