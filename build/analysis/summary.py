"""``skinlesion data summary``: what is in the data before anything is trained on it.

Loads and merges the sources exactly as a build does (``build.make.datasets``), splits them by lesion, and
reports counts per class, split and source, lesions and images per lesion, what merging dropped
(and where duplicates disagreed on the label), metadata plots and association rules:

    >>> summary = summarize(["../shared/data/ham10000", "../shared/data/isic-archive-9class"],
    ...                     [None, "isic-archive"], Path("runs/summary"), split=SplitConfig())
    >>> print(format_summary(summary))

Files written to ``out_dir``: ``summary.json``, ``summary.txt``, ``rules.csv``, ``rules.json`` and the
plots ``age_by_diagnosis.png``, ``sex_by_diagnosis.png``, ``localization_by_diagnosis.png`` (a plot is
left out, and the reason recorded, when no image has that metadata).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from build.atomic import write_with
from build.make.datasets import (
    METADATA,
    MergeReport,
    SPLITS,
    SplitConfig,
    duplicate_lesion_pairs,
    load_dataset,
    merge_datasets,
    split_by_group,
)
from build.analysis.rules import (
    DIAGNOSIS_PREFIX,
    MIN_CONFIDENCE,
    MIN_SUPPORT,
    Rule,
    encode_items,
    mine_rules,
    rules_table,
)

log = logging.getLogger(__name__)

AGE_BIN_YEARS = 5  # HAM10000 records age rounded to 5 years, so finer bins would show empty gaps.
PLOT_DPI = 120


@dataclass(frozen=True)
class Summary:
    """Everything ``skinlesion data summary`` reports; ``to_json`` is what ``summary.json`` holds.

    Attributes:
        sources: The data set paths, in merge priority order.
        label_maps: The label map per source ("" for none).
        images: Images after merging and de-duplication.
        lesions: Distinct lesion groups (lesion_id, else the image itself).
        classes: Images per class, all splits together.
        splits: Images per split and class (``splits["val"]["mel"]``).
        split_lesions: Lesion groups per split.
        by_source: Images kept per source and class.
        images_per_lesion: Number of lesions having k images, keyed by k.
        kept: Images kept per source.
        dropped_duplicates: Images dropped per source because an earlier source had the same image_id.
        dropped_unmapped: Images dropped per label because the label is not a target class.
        dropped_conflicting: Images dropped per source because it lists them under two or more classes.
        duplicate_labels: For dropped duplicates, ``"<dropped label> -> <kept label>"`` -> count;
            a pair of different labels means the sources disagree about that image.
        metadata: Images with a value, per metadata column.
        rule_images: Images with any metadata: the transactions the rules are mined over.
        min_support: Support threshold of the rules.
        min_confidence: Confidence threshold of the rules.
        rules_found: How many rules passed the thresholds (all of them are in rules.csv / rules.json).
        rules: The top rules by lift.
        split: The split configuration used.
        files: Written files, by name (``"age_plot"`` -> path).
        skipped: Outputs not written, with the reason.
        merged_lesions: Per source, pairs of lesion ids filed for one lesion that were merged before the
            split (HAM10000's ``duplicate_lesions.csv``).
    """

    sources: tuple[str, ...]
    label_maps: tuple[str, ...]
    images: int
    lesions: int
    classes: dict[str, int]
    splits: dict[str, dict[str, int]]
    split_lesions: dict[str, int]
    by_source: dict[str, dict[str, int]]
    images_per_lesion: dict[int, int]
    kept: dict[str, int]
    dropped_duplicates: dict[str, int]
    dropped_unmapped: dict[str, int]
    dropped_conflicting: dict[str, int]
    duplicate_labels: dict[str, int]
    metadata: dict[str, int]
    rule_images: int
    min_support: float
    min_confidence: float
    rules_found: int
    rules: tuple[Rule, ...]
    split: SplitConfig
    files: dict[str, str]
    skipped: dict[str, str]
    merged_lesions: dict[str, int] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["rules"] = [rule.to_dict() for rule in self.rules]
        data["images_per_lesion"] = {str(k): v for k, v in self.images_per_lesion.items()}
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def summarize(
    sources: Sequence[str],
    label_maps: Sequence[str | None],
    out_dir: str | Path,
    *,
    split: SplitConfig,
    top_rules: int = 15,
    labels: Sequence[str] | None = None,
    min_support: float = MIN_SUPPORT,
    min_confidence: float = MIN_CONFIDENCE,
) -> Summary:
    """Loads, merges and splits ``sources``; writes the summary, rules and plots to ``out_dir``.

    Args:
        sources: Data set roots or CSVs (any layout ``build.make.datasets.load_dataset`` reads), in
            priority order: an image_id seen in an earlier source wins.
        label_maps: One per source: a built-in map name (``"isic-archive"``), or None / "" for none.
        out_dir: Folder for the outputs (created if needed).
        split: Fractions and seed of the lesion-grouped split.
        top_rules: How many rules the summary (and the terminal) shows; the files hold all.
        labels: Target classes; images with other labels are dropped and counted. None keeps all.
        min_support: Smallest share of images with metadata a rule must cover.
        min_confidence: Smallest confidence of a rule.

    Raises:
        ValueError: ``label_maps`` does not have one entry per source, or a source is unreadable.
        FileNotFoundError: A source, or an image its labels name, is missing.
    """
    if not sources:
        raise ValueError("data summary needs at least one data set")
    if len(label_maps) != len(sources):
        raise ValueError(
            f"got {len(label_maps)} label maps for {len(sources)} data sets; give one per data "
            "set (None or '' for no map)"
        )
    if top_rules < 0:
        raise ValueError(f"top_rules must be >= 0, got {top_rules}")
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    maps = tuple(m or "" for m in label_maps)
    frames = [load_dataset(source, label_map=m or None) for source, m in zip(sources, maps)]
    frame, report = merge_datasets(frames, labels=labels)
    frame = split_by_group(frame, split)
    log.info(
        "summary: %d images loaded, merged and split in %.1f s", len(frame), time.perf_counter() - started
    )

    items = encode_items(frame)
    has_metadata = items.loc[:, [c for c in items.columns if not c.startswith(DIAGNOSIS_PREFIX)]].any(axis=1)
    rules = (
        mine_rules(items[has_metadata], min_support=min_support, min_confidence=min_confidence)
        if has_metadata.any()
        else []
    )

    files: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for name, plot in PLOTS.items():
        path = out_dir / f"{name}.png"
        reason = plot(frame, path)
        if reason:
            skipped[name] = reason
            path.unlink(missing_ok=True)  # a plot from an earlier summary in this folder would mislead
        else:
            files[name] = str(path)
    if rules:
        table = rules_table(rules)
        write_with(out_dir / "rules.csv", lambda tmp: table.to_csv(tmp, index=False))
        write_with(
            out_dir / "rules.json",
            lambda tmp: tmp.write_text(json.dumps([r.to_dict() for r in rules], indent=2) + "\n"),
        )
        files["rules_csv"], files["rules_json"] = str(out_dir / "rules.csv"), str(out_dir / "rules.json")
    else:
        skipped["rules"] = (
            "no images with metadata"
            if not has_metadata.any()
            else f"no rule reached support {min_support:g} and confidence {min_confidence:g}"
        )
        for stale in ("rules.csv", "rules.json"):
            (out_dir / stale).unlink(missing_ok=True)
    files["summary_json"], files["summary_txt"] = str(out_dir / "summary.json"), str(out_dir / "summary.txt")

    group_sizes = frame.groupby("group").size()
    summary = Summary(
        sources=tuple(str(s) for s in sources),
        label_maps=maps,
        images=len(frame),
        lesions=int(frame["group"].nunique()),
        classes=_counts(frame["label"]),
        splits={s: _counts(frame.loc[frame["split"] == s, "label"]) for s in SPLITS},
        split_lesions={s: int(frame.loc[frame["split"] == s, "group"].nunique()) for s in SPLITS},
        by_source={str(s): _counts(part["label"]) for s, part in frame.groupby("source", sort=False)},
        images_per_lesion={int(k): int(v) for k, v in sorted(group_sizes.value_counts().items())},
        kept=report.kept,
        dropped_duplicates=report.dropped_duplicates,
        dropped_unmapped=report.dropped_unmapped,
        dropped_conflicting=report.dropped_conflicting,
        duplicate_labels=duplicate_labels(frames, labels=labels),
        metadata={c: int(frame[c].map(_present).sum()) for c in METADATA if c in frame.columns},
        rule_images=int(has_metadata.sum()),
        min_support=min_support,
        min_confidence=min_confidence,
        rules_found=len(rules),
        rules=tuple(rules[:top_rules]),
        split=split,
        files=files,
        skipped=skipped,
        merged_lesions={str(s): n for s in sources if (n := duplicate_lesion_pairs(s))},
    )
    write_with(out_dir / "summary.json", lambda tmp: tmp.write_text(summary.to_json()))
    write_with(out_dir / "summary.txt", lambda tmp: tmp.write_text(format_summary(summary) + "\n"))
    log.info("summary: done in %.1f s -> %s", time.perf_counter() - started, out_dir)
    return summary


def duplicate_labels(
    frames: Sequence[pd.DataFrame], *, labels: Sequence[str] | None = None
) -> dict[str, int]:
    """For each image dropped as a duplicate, its label against the kept copy's: ``"nv -> akiec"`` -> count.

    Follows ``merge_datasets``: earlier frames win, rows outside ``labels`` are ignored.
    """
    kept: dict[str, str] = {}
    pairs: Counter[str] = Counter()
    allowed = None if labels is None else set(labels)
    for frame in frames:
        for image_id, label in zip(frame["image_id"], frame["label"]):
            if allowed is not None and label not in allowed:
                continue
            if image_id in kept:
                pairs[f"{label} -> {kept[image_id]}"] += 1
            else:
                kept[image_id] = label
    return dict(sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0])))


def format_summary(summary: Summary) -> str:
    """The summary as terminal text: counts table, merge report, lesions, metadata, top rules, files."""
    out = [
        f"{summary.images:,} images of {summary.lesions:,} lesions from {len(summary.sources)} data set(s)"
    ]
    out += [
        f"  {source}" + (f"  (label map: {m})" if m else "")
        for source, m in zip(summary.sources, summary.label_maps)
    ]
    out += ["", "Merge"] + [f"  {line}" for line in _merge_lines(summary)]

    sources = list(summary.by_source)
    header = ["class", "images", *SPLITS, *sources] if len(sources) > 1 else ["class", "images", *SPLITS]
    rows = []
    for label in [*summary.classes, "all"]:
        tables = [summary.classes, *(summary.splits[s] for s in SPLITS)]
        tables += [summary.by_source[s] for s in sources] if len(sources) > 1 else []
        rows.append([label, *(sum(t.values()) if label == "all" else t.get(label, 0) for t in tables)])
    rows.append(["lesions", summary.lesions, *(summary.split_lesions[s] for s in SPLITS)])
    fractions = "/".join(f"{f:.0%}" for f in summary.split.fractions)
    out += ["", f"Images per class and split (split {fractions} by lesion, seed {summary.split.seed})"]
    out += _table(header, rows)

    sizes = ", ".join(f"{k}: {v:,}" for k, v in summary.images_per_lesion.items())
    out += ["", f"Images per lesion (lesions with k images): {sizes}"]
    if summary.metadata:
        known = ", ".join(f"{c} {n:,}" for c, n in summary.metadata.items())
        out += [f"Metadata present (images): {known}"]

    out += [
        "",
        f"Association rules -> diagnosis over {summary.rule_images:,} images with metadata "
        f"(support >= {summary.min_support:.1%}, confidence >= {summary.min_confidence:.0%}, "
        f"sorted by lift): {summary.rules_found} found",
    ]
    if summary.rules:
        out += _table(
            ["lift", "confidence", "support", "rule"],
            [[f"{r.lift:.2f}", f"{r.confidence:.0%}", f"{r.support:.1%}", str(r)] for r in summary.rules],
            left_last=True,
        )
    out += ["", "Files"] + [f"  {path}" for path in summary.files.values()]
    out += [f"  not written: {name} ({reason})" for name, reason in summary.skipped.items()]
    return "\n".join(out)


# --- plots ------------------------------------------------------------------------------------------
# Each returns None once the PNG is written, or the reason it was not.


def plot_age_by_diagnosis(frame: pd.DataFrame, path: Path) -> str | None:
    """One age histogram per diagnosis (small multiples share the x axis)."""
    ages = pd.to_numeric(frame.get("age"), errors="coerce") if "age" in frame else None
    if ages is None or ages.notna().sum() == 0:
        return "no image has an age"
    data = frame.assign(age=ages).dropna(subset=["age"])
    labels = sorted(data["label"].unique())
    bins = np.arange(0, max(90.0, data["age"].max() + AGE_BIN_YEARS) + 1, AGE_BIN_YEARS)
    columns = min(4, len(labels))
    rows = -(-len(labels) // columns)
    figure, axes = _figure(rows, columns, (3.2 * columns, 2.4 * rows), sharex=True)
    for axis, label in zip(axes.flat, labels):
        values = data.loc[data["label"] == label, "age"]
        axis.hist(values, bins=bins, color="tab:blue")
        axis.set_title(f"{label} (n={len(values):,}, median {values.median():.0f})", fontsize=9)
    for axis in list(axes.flat)[len(labels) :]:
        axis.set_visible(False)
    for axis in axes[-1]:
        axis.set_xlabel("age (years)")
    figure.suptitle("Age by diagnosis")
    _save(figure, path)
    return None


def plot_sex_by_diagnosis(frame: pd.DataFrame, path: Path) -> str | None:
    """Share of each sex within each diagnosis (stacked bars, counts in the labels)."""
    table = _crosstab(frame, "sex")
    if table is None:
        return "no image has a sex"
    shares = table.div(table.sum(axis=1), axis=0)
    figure, axes = _figure(1, 1, (7, 0.45 * len(table) + 1.6))
    axis = axes[0, 0]
    left = np.zeros(len(table))
    for column in shares.columns:
        axis.barh(table.index, shares[column], left=left, label=column)
        left += shares[column].to_numpy()
    axis.set_yticks(range(len(table)), [f"{label} (n={n:,})" for label, n in table.sum(axis=1).items()])
    axis.invert_yaxis()
    axis.set_xlabel("share of images")
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # outside: never hides a bar
    figure.suptitle("Sex by diagnosis")
    _save(figure, path)
    return None


def plot_localization_by_diagnosis(frame: pd.DataFrame, path: Path) -> str | None:
    """Heat map: for each body site, the share of its images per diagnosis (annotated with counts)."""
    table = _crosstab(frame, "localization", by="localization")
    if table is None:
        return "no image has a localization"
    shares = table.div(table.sum(axis=1), axis=0)
    figure, axes = _figure(1, 1, (1.0 * len(table.columns) + 3.5, 0.38 * len(table) + 1.6))
    axis = axes[0, 0]
    image = axis.imshow(shares.to_numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
    axis.set_xticks(range(len(table.columns)), table.columns)
    axis.set_yticks(range(len(table)), [f"{site} (n={n:,})" for site, n in table.sum(axis=1).items()])
    for (row, column), count in np.ndenumerate(table.to_numpy()):
        if count:
            axis.text(
                column,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=7,
                color="black" if shares.iat[row, column] > 0.6 else "white",
            )
    figure.colorbar(image, ax=axis, label="share of the site's images")
    figure.suptitle("Diagnosis by localization")
    _save(figure, path)
    return None


PLOTS: dict[str, Callable[[pd.DataFrame, Path], str | None]] = {
    "age_by_diagnosis": plot_age_by_diagnosis,
    "sex_by_diagnosis": plot_sex_by_diagnosis,
    "localization_by_diagnosis": plot_localization_by_diagnosis,
}


# --- helpers ----------------------------------------------------------------------------------------


def _merge_lines(summary: Summary) -> list[str]:
    lines = MergeReport(
        kept=summary.kept,
        dropped_duplicates=summary.dropped_duplicates,
        dropped_unmapped=summary.dropped_unmapped,
        dropped_conflicting=summary.dropped_conflicting,
    ).lines()
    disagree = {pair: n for pair, n in summary.duplicate_labels.items() if len(set(pair.split(" -> "))) > 1}
    if summary.duplicate_labels:
        same = sum(summary.duplicate_labels.values()) - sum(disagree.values())
        lines.append(
            f"duplicates with the same label as the kept copy: {same:,}; with a different label: "
            f"{sum(disagree.values()):,} (the kept copy's label is used)"
        )
        lines += [f"  dropped label -> kept label  {pair}: {n:,}" for pair, n in disagree.items()]
    lines += [
        f"merged {n} pairs of lesion ids that name one lesion in {source} (duplicate_lesions.csv), so "
        "each pair stays in one split"
        for source, n in summary.merged_lesions.items()
    ]
    return lines or ["nothing dropped"]


def _counts(values: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(values.value_counts().items())}


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value)) and str(value) != ""


def _crosstab(frame: pd.DataFrame, column: str, by: str = "label") -> pd.DataFrame | None:
    if column not in frame or not frame[column].map(_present).any():
        return None
    data = frame[frame[column].map(_present)]
    if by == "label":
        return pd.crosstab(data["label"], data[column].astype(str))
    table = pd.crosstab(data[column].astype(str), data["label"])
    return table.loc[table.sum(axis=1).sort_values(ascending=False).index]


def _table(header: list[str], rows: list[list], *, left_last: bool = False) -> list[str]:
    cells = [
        [f"{c:,}" if isinstance(c, (int, np.integer)) else str(c) for c in row] for row in [header, *rows]
    ]
    widths = [max(len(row[i]) for row in cells if i < len(row)) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        parts = []
        for i, cell in enumerate(row):
            left = i == 0 or (left_last and i == len(header) - 1)
            parts.append(cell.ljust(widths[i]) if left else cell.rjust(widths[i]))
        return "  " + "  ".join(parts).rstrip()

    return [fmt(row) for row in cells]


def _figure(rows: int, columns: int, size: tuple[float, float], sharex: bool = False):
    # The object API with an Agg canvas: no pyplot global state, no display needed (servers, CI).
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, sharex=sharex, squeeze=False)
    return figure, axes


def _save(figure, path: Path) -> None:
    write_with(path, lambda tmp: figure.savefig(tmp, format="png", dpi=PLOT_DPI))
