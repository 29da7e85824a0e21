"""Data sets as one table: readers for every layout we meet, label maps, merging, lesion-grouped splits.

Every reader returns a pandas DataFrame with one row per image and these columns:

    path      absolute image path
    image_id  file stem (ISIC_0024306), the key for de-duplication across sources
    label     class code (after any label map)
    group     images that must stay in one split: lesion_id where known, else image_id
    source    where the row came from (for summaries and merging reports)
    age, sex, localization, dx_type   metadata where the source has it (else missing)

    >>> frame = load_dataset("../shared/data/ham10000")
    >>> frame = split_by_group(frame, SplitConfig(seed=42))
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from build.stage_configs import LABEL_MAPS, SplitConfig

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".heic")
DUPLICATE_LESIONS = "duplicate_lesions.csv"  # beside HAM10000_metadata.csv: pairs of ids of one lesion
# ``group`` is what the split keeps together; ``lesion_id`` the source's own id (``group`` unless merged).
COLUMNS = [
    "path",
    "image_id",
    "label",
    "group",
    "lesion_id",
    "source",
    "age",
    "sex",
    "localization",
    "dx_type",
]
METADATA = ("age", "sex", "localization", "dx_type")
SPLITS = ("train", "val", "test")

ISIC2018_COLUMNS = {
    "MEL": "mel",
    "NV": "nv",
    "BCC": "bcc",
    "AKIEC": "akiec",
    "BKL": "bkl",
    "DF": "df",
    "VASC": "vasc",
}


@dataclass(frozen=True)
class MergeReport:
    """What merging sources kept and dropped."""

    kept: dict[str, int]
    dropped_duplicates: dict[str, int]
    dropped_unmapped: dict[str, int]
    dropped_conflicting: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        out = [f"kept {n:,} images from {source}" for source, n in self.kept.items()]
        out += [
            f"dropped {n:,} images from {source}: it lists each of them under two or more classes"
            for source, n in self.dropped_conflicting.items()
            if n
        ]
        out += [
            f"dropped {n:,} images from {source}: their image_id is listed before (here or in an earlier source)"
            for source, n in self.dropped_duplicates.items()
            if n
        ]
        out += [
            f"dropped {n:,} images labelled {label!r}: no mapping to a target class"
            for label, n in self.dropped_unmapped.items()
            if n
        ]
        return out


def load_dataset(
    root: str | Path,
    *,
    label_map: Mapping[str, str] | str | None = None,
    source: str | None = None,
    merge_duplicate_lesions: bool = True,
) -> pd.DataFrame:
    """Reads any supported layout under ``root`` into the common table.

    Layouts, tried in this order: a HAM10000 root (``HAM10000_metadata.csv`` anywhere below, images
    anywhere below), an ISIC 2018 Task 3 ground-truth CSV (one-hot columns MEL, NV, ...) or a folder
    holding one, a ``labels.csv`` with ``image_id`` or ``path`` and ``dx`` or ``label``, and a folder
    per class.

    Args:
        root: A folder, or a CSV file (ISIC one-hot ground truth or labels.csv).
        label_map: Maps source labels to target labels, or the name of a built-in map
            (``"isic-archive"``). A label missing from the map raises; to drop a class, map it to
            a name outside the target classes and let :func:`merge_datasets` drop and count it.
        source: Name recorded in the ``source`` column (default: the folder name).
        merge_duplicate_lesions: Group the lesion ids a HAM10000 root's ``duplicate_lesions.csv`` names as
            one lesion (False re-derives the splits of bundles built before the merge).

    Raises:
        FileNotFoundError: ``root`` is missing, or images named by the labels are missing (all listed).
        ValueError: No known layout under ``root``, or labels outside ``label_map``.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data set not found: {root}")
    name = source or (root.stem if root.is_file() else root.name)
    frame = _read_layout(root, name, merge_duplicate_lesions)
    if label_map is not None:
        mapping = resolve_label_map(label_map)
        unmapped = sorted(set(frame["label"]) - set(mapping))
        if unmapped:
            raise ValueError(
                f"{root}: labels {unmapped} have no entry in the label map; add them to the map "
                f"(known targets: {sorted(set(mapping.values()))})"
            )
        frame["label"] = frame["label"].map(mapping)
    return frame[COLUMNS].reset_index(drop=True)


def resolve_label_map(label_map: Mapping[str, str] | str) -> dict[str, str]:
    if isinstance(label_map, str):
        if label_map not in LABEL_MAPS:
            raise ValueError(f"unknown label map {label_map!r}; built-in maps: {sorted(LABEL_MAPS)}")
        return dict(LABEL_MAPS[label_map])
    return dict(label_map)


def merge_datasets(
    frames: Iterable[pd.DataFrame], *, labels: Iterable[str] | None = None
) -> tuple[pd.DataFrame, MergeReport]:
    """Concatenates sources, keeping the first copy of each image_id and only rows with a known label;
    an image that a source lists under two classes is dropped from that source.

    Args:
        frames: Tables from :func:`load_dataset`, in priority order (earlier sources win duplicates).
        labels: Target classes; rows with any other label are dropped (and counted). None keeps all.
    """
    frames = list(frames)
    if not frames:
        raise ValueError("merge_datasets needs at least one data set")
    merged = pd.concat(frames, ignore_index=True)
    unmapped: dict[str, int] = {}
    if labels is not None:
        allowed = set(labels)
        outside = ~merged["label"].isin(allowed)
        unmapped = merged.loc[outside, "label"].value_counts().to_dict()
        merged = merged[~outside]
    # An image that one source lists under two classes has no label to trust: every copy of it in that
    # source goes (an earlier source's copy, if any, stays).
    conflicting = merged.groupby(["source", "image_id"])["label"].transform("nunique") > 1
    conflicts = merged.loc[conflicting, "source"].value_counts().to_dict()
    merged = merged[~conflicting]
    duplicated = merged["image_id"].duplicated(keep="first")
    dropped = merged.loc[duplicated, "source"].value_counts().to_dict()
    merged = merged[~duplicated].reset_index(drop=True)
    kept = merged["source"].value_counts(sort=False).to_dict()
    report = MergeReport(
        kept={str(k): int(v) for k, v in kept.items()},
        dropped_duplicates={str(k): int(v) for k, v in dropped.items()},
        dropped_unmapped={str(k): int(v) for k, v in unmapped.items()},
        dropped_conflicting={str(k): int(v) for k, v in conflicts.items()},
    )
    return merged, report


def split_by_group(frame: pd.DataFrame, config: SplitConfig = SplitConfig()) -> pd.DataFrame:
    """Adds a ``split`` column (train/val/test), stratified by label and grouped by ``group``.

    Groups are dealt out per class in a seeded random order, each to the split furthest below its
    share of that class's images, so class ratios match across splits and no group straddles two.
    Lesions merged into one group (HAM10000's duplicates) are dealt out under their own ids, as without
    the merge, and then join the split of the id that names their group: the merge moves only the
    images it merges, and every other image keeps the split it had before.
    """
    rng = np.random.default_rng(config.seed)
    dealt = frame["lesion_id"].fillna(frame["group"]) if "lesion_id" in frame else frame["group"]
    group_label = frame.groupby(dealt)["label"].agg(lambda s: s.mode().iloc[0])
    group_size = frame.groupby(dealt).size()
    assignment: dict[str, str] = {}
    for label in sorted(group_label.unique()):
        groups = np.array(sorted(group_label.index[group_label == label]))
        rng.shuffle(groups)
        total = group_size[groups].sum()
        filled = np.zeros(3)
        for group in groups:
            deficit = np.array(config.fractions) * total - filled
            index = int(np.argmax(deficit))
            assignment[group] = SPLITS[index]
            filled[index] += group_size[group]
    result = frame.copy()
    # A merged group goes where the lesion that names it went (the others of the group as a fallback).
    result["split"] = result["group"].map(assignment).fillna(dealt.map(assignment))
    check_groups_within_splits(result)
    return result


def add_to_training(
    frame: pd.DataFrame, extras: Iterable[pd.DataFrame], *, labels: Iterable[str] | None = None
) -> tuple[pd.DataFrame, MergeReport]:
    """Adds more sources' images to the training split of an already split ``frame``.

    Validation and test keep exactly ``frame``'s images. Copies of ``frame``'s images (same ``image_id``,
    whatever their split) are dropped, so a source that repeats validation or test images cannot leak
    them into training. The added rows are marked ``train_only``.

    Raises:
        ValueError: An added image belongs to a lesion group held out in validation or test.
    """
    merged, report = merge_datasets([frame, *extras], labels=labels)
    # The report speaks of the added sources alone: the split's own images are all kept, as they were.
    own = set(frame["source"])
    report = replace(report, kept={source: n for source, n in report.kept.items() if source not in own})
    merged["train_only"] = merged["split"].isna()
    merged["split"] = merged["split"].fillna("train")
    check_groups_within_splits(merged)
    return merged, report


def check_groups_within_splits(frame: pd.DataFrame) -> None:
    """Raises if any group (lesion) has images in more than one split."""
    splits_per_group = frame.groupby("group")["split"].nunique()
    leaking = splits_per_group[splits_per_group > 1]
    if len(leaking):
        raise ValueError(
            f"{len(leaking)} lesion groups straddle splits (e.g. {list(leaking.index[:5])}); "
            "images of one lesion must stay in one split"
        )


def fingerprint(frame: pd.DataFrame) -> str:
    """A short hash of (image_id, label) pairs: equal fingerprints mean the same data set."""
    pairs = sorted(zip(frame["image_id"].astype(str), frame["label"].astype(str)))
    return hashlib.sha256("\n".join(f"{i},{l}" for i, l in pairs).encode()).hexdigest()[:16]


# --- layouts -----------------------------------------------------------------------------------------


def _read_layout(root: Path, source: str, merge_duplicate_lesions: bool = True) -> pd.DataFrame:
    if root.is_file():
        table = _read_csv(root)
        if _is_isic2018_onehot(table):
            return _from_isic2018(table, _isic2018_image_root(root), source)
        return _from_labels_csv(table, root.parent, source, csv_path=root)
    ham = sorted(root.rglob("HAM10000_metadata*.csv"))
    if ham:
        return _from_ham10000(ham[0], root, source, merge_duplicate_lesions)
    # ISIC ships the ground truth in its own folder beside the image folder, so look one level down too.
    for csv_path in sorted(root.glob("*.csv")) + sorted(root.glob("*/*.csv")):
        if _is_isic2018_onehot(pd.read_csv(csv_path, nrows=0)):
            return _from_isic2018(_read_csv(csv_path), root, source)
    if (root / "labels.csv").exists():
        return _from_labels_csv(_read_csv(root / "labels.csv"), root, source, csv_path=root / "labels.csv")
    class_dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and _images_under(d, recursive=False)]
    if class_dirs:
        return _from_class_folders(class_dirs, source)
    raise ValueError(
        f"{root}: no known data layout (expected HAM10000_metadata.csv, an ISIC 2018 one-hot CSV, "
        "labels.csv beside images/, or one folder of images per class)"
    )


def _read_csv(path: Path) -> pd.DataFrame:
    # Ids and labels stay text: "0012" must still find 0012.jpg, and label maps are keyed by strings.
    text_columns = ("image_id", "image", "lesion_id", "path", "dx", "label")
    return pd.read_csv(path, dtype={c: str for c in text_columns})


def _images_under(folder: Path, recursive: bool = True) -> list[Path]:
    pattern = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in pattern if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _index_images(root: Path) -> dict[str, Path]:
    """image_id -> path for every image below root (Kaggle ships HAM10000 in two part folders)."""
    return {p.stem: p.resolve() for p in _images_under(root)}


def _require_images(ids: Iterable[str], index: Mapping[str, Path], where: Path) -> list[Path]:
    ids = list(ids)
    missing = [i for i in ids if i not in index]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise FileNotFoundError(
            f"{len(missing)} images named in the labels are missing under {where}: {shown}. "
            "Add the image files, or remove their rows from the labels."
        )
    return [index[i] for i in ids]


def _from_ham10000(
    csv_path: Path, root: Path, source: str, merge_duplicate_lesions: bool = True
) -> pd.DataFrame:
    table = _read_csv(csv_path)
    needed = {"lesion_id", "image_id", "dx"}
    if not needed <= set(table.columns):
        raise ValueError(
            f"{csv_path}: HAM10000 metadata needs columns {sorted(needed)}, has {list(table.columns)}"
        )
    paths = _require_images(table["image_id"], _index_images(root), root)
    return pd.DataFrame(
        {
            "path": [str(p) for p in paths],
            "image_id": table["image_id"],
            "label": table["dx"],
            "group": (
                merge_lesion_ids(table["lesion_id"], csv_path.parent / DUPLICATE_LESIONS)
                if merge_duplicate_lesions
                else table["lesion_id"]
            ),
            "lesion_id": table["lesion_id"].astype(str),
            "source": source,
            "age": table.get("age"),
            "sex": table.get("sex"),
            "localization": table.get("localization"),
            "dx_type": table.get("dx_type"),
        }
    )


def merge_lesion_ids(lesion_ids: pd.Series, duplicates_csv: Path) -> pd.Series:
    """Lesion ids with every pair ``duplicates_csv`` lists as one lesion mapped to one id (the smaller).

    HAM10000 files some lesions under two ``lesion_id``s (Abhishek et al. 2024, arXiv 2401.14497); a
    lesion-grouped split must keep both in one split. Without the file the ids are returned as they are.
    """
    if not duplicates_csv.is_file():
        return lesion_ids
    pairs = _read_csv(duplicates_csv)
    needed = {"lesion_id_a", "lesion_id_b"}
    if not needed <= set(pairs.columns):
        raise ValueError(f"{duplicates_csv}: needs columns {sorted(needed)}, has {list(pairs.columns)}")
    parent: dict[str, str] = {}

    def root(lesion: str) -> str:
        while parent.get(lesion, lesion) != lesion:
            lesion = parent[lesion]
        return lesion

    for a, b in zip(pairs["lesion_id_a"].astype(str), pairs["lesion_id_b"].astype(str)):
        first, second = sorted((root(a), root(b)))
        if first != second:
            parent[second] = first
    return lesion_ids.astype(str).map(root)


def duplicate_lesion_pairs(root: str | Path) -> int:
    """How many pairs of lesion ids a HAM10000 root's ``duplicate_lesions.csv`` merges into one lesion
    (0 for other layouts or without the file)."""
    root = Path(root).expanduser()
    found = sorted(root.rglob("HAM10000_metadata*.csv")) if root.is_dir() else []
    if not found or not (found[0].parent / DUPLICATE_LESIONS).is_file():
        return 0
    return len(_read_csv(found[0].parent / DUPLICATE_LESIONS))


def _is_isic2018_onehot(table: pd.DataFrame) -> bool:
    return "image" in table.columns and set(ISIC2018_COLUMNS) <= set(table.columns)


def _isic2018_image_root(csv_path: Path) -> Path:
    """Images beside the CSV, or (ISIC's own layout: GroundTruth/ and Input/ side by side) one level up."""
    here = csv_path.parent
    return here if _images_under(here) else here.parent


def _from_isic2018(table: pd.DataFrame, root: Path, source: str) -> pd.DataFrame:
    onehot = table[list(ISIC2018_COLUMNS)].to_numpy()
    bad = np.flatnonzero(onehot.sum(axis=1) != 1)
    if len(bad):
        raise ValueError(
            f"{root}: {len(bad)} rows of the ISIC one-hot CSV do not have exactly one class set "
            f"(e.g. {list(table['image'].iloc[bad[:5]])})"
        )
    labels = np.array(list(ISIC2018_COLUMNS.values()))[onehot.argmax(axis=1)]
    paths = _require_images(table["image"], _index_images(root), root)
    return _table(paths, table["image"], labels, groups=table["image"], source=source)


def _from_labels_csv(table: pd.DataFrame, root: Path, source: str, *, csv_path: Path) -> pd.DataFrame:
    label_column = next((c for c in ("dx", "label") if c in table.columns), None)
    if label_column is None or not ({"image_id", "path"} & set(table.columns)):
        raise ValueError(
            f"{csv_path}: labels.csv needs an 'image_id' or 'path' column and a 'dx' or 'label' "
            f"column; found {list(table.columns)}"
        )
    if "path" in table.columns:
        paths = [(root / p).resolve() for p in table["path"]]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} images listed in {csv_path} are missing: "
                f"{', '.join(missing[:10])}. Add them, or remove their rows."
            )
        ids = table["image_id"] if "image_id" in table.columns else [p.stem for p in paths]
    else:
        image_dir = root / "images" if (root / "images").is_dir() else root
        paths = _require_images(table["image_id"], _index_images(image_dir), image_dir)
        ids = table["image_id"]
    groups = table["lesion_id"] if "lesion_id" in table.columns else ids
    frame = _table(paths, ids, table[label_column], groups=groups, source=source)
    for column in METADATA:
        if column in table.columns:
            frame[column] = table[column].to_numpy()
    return frame


def _from_class_folders(class_dirs: list[Path], source: str) -> pd.DataFrame:
    rows = [(p, d.name) for d in class_dirs for p in _images_under(d)]
    paths = [p.resolve() for p, _ in rows]
    # Folder datasets can repeat file names across classes, so the id keeps the class.
    ids = [f"{label}/{p.stem}" for p, label in rows]
    return _table(paths, ids, [label for _, label in rows], groups=ids, source=source)


def _table(paths, ids, labels, *, groups, source: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": [str(p) for p in paths],
            "image_id": list(ids),
            "label": list(labels),
            "group": list(groups),
            "lesion_id": list(groups),
            "source": source,
            "age": np.nan,
            "sex": None,
            "localization": None,
            "dx_type": None,
        }
    )
