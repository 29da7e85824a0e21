"""``skinlesion data summary``: counts, merge report, plots and rules written for a user to read."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from build.stage_configs import SplitConfig
from build.analysis.summary import format_summary, summarize

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
PLOT_FILES = ("age_by_diagnosis.png", "sex_by_diagnosis.png", "localization_by_diagnosis.png")


def write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (20, 20), (150, 100, 80)).save(path)


@pytest.fixture
def two_sources(tmp_path) -> tuple[Path, Path]:
    """A HAM-style root (60 images, 40 lesions, metadata with a face -> bkl pattern) and an archive
    source with ISIC names: 3 copies of HAM images (one with a different diagnosis) and 4 new ones."""
    rng = np.random.default_rng(0)
    ham, rows = tmp_path / "ham", []
    for i in range(60):
        lesion = i if i < 20 else 20 + (i - 20) // 2  # 20 single-image lesions, 20 lesions of two
        face = lesion % 4 == 0
        rows.append(
            {
                "lesion_id": f"HAM_{lesion:04d}",
                "image_id": f"ISIC_{i:04d}",
                "dx": "bkl" if face else ("nv" if lesion % 4 != 1 else "mel"),
                "dx_type": "histo",
                "age": float(rng.choice([25, 40, 55, 70, 80])),
                "sex": ("male", "female")[i % 2],
                "localization": "face" if face else "back",
            }
        )
        write_image(ham / "images" / f"ISIC_{i:04d}.jpg")
    pd.DataFrame(rows).to_csv(ham / "HAM10000_metadata.csv", index=False)

    archive = tmp_path / "archive"
    # ISIC_0001 is mel in HAM: the one duplicate whose diagnosis disagrees.
    entries = [
        ("ISIC_0001", "nevus"),
        ("ISIC_0002", "nevus"),
        ("ISIC_0003", "nevus"),
        ("ISIC_9001", "melanoma"),
        ("ISIC_9002", "melanoma"),
        ("ISIC_9003", "dermatofibroma"),
        ("ISIC_9004", "squamous cell carcinoma"),
    ]
    for image_id, label in entries:
        write_image(archive / "images" / f"{image_id}.jpg")
    pd.DataFrame(entries, columns=["image_id", "label"]).to_csv(archive / "labels.csv", index=False)
    return ham, archive


def test_merged_summary_counts_and_files(tmp_path, two_sources):
    ham, archive = two_sources
    out = tmp_path / "summary"

    summary = summarize(
        [str(ham), str(archive)],
        [None, "isic-archive"],
        out,
        split=SplitConfig(seed=1),
        min_support=0.05,
        min_confidence=0.3,
    )

    assert summary.images == 64 and summary.lesions == 44
    assert summary.kept == {"ham": 60, "archive": 4}
    assert summary.dropped_duplicates == {"archive": 3}
    assert summary.duplicate_labels == {"nv -> mel": 1, "nv -> nv": 2}
    assert summary.by_source["archive"] == {"akiec": 1, "df": 1, "mel": 2}
    assert summary.images_per_lesion == {1: 24, 2: 20}
    assert sum(sum(c.values()) for c in summary.splits.values()) == 64
    assert sum(summary.split_lesions.values()) == 44
    assert summary.rule_images == 60  # the archive images have no metadata
    assert summary.metadata == {"age": 60, "sex": 60, "localization": 60, "dx_type": 60}

    for name in PLOT_FILES:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.width > 200
    saved = json.loads((out / "summary.json").read_text())
    assert saved["images"] == 64 and saved["images_per_lesion"] == {"1": 24, "2": 20}
    assert (out / "summary.txt").read_text().strip() == format_summary(summary)
    assert not list(out.glob(".*tmp*"))


def test_rules_are_printed_and_saved(tmp_path, two_sources):
    ham, archive = two_sources
    out = tmp_path / "summary"

    summary = summarize(
        [str(ham), str(archive)],
        [None, "isic-archive"],
        out,
        split=SplitConfig(),
        min_support=0.05,
        min_confidence=0.3,
        top_rules=2,
    )

    # Every face image is bkl: 15 of 60 images with metadata.
    table = pd.read_csv(out / "rules.csv")
    face = table[table["rule"] == "{localization=face} -> dx=bkl"].iloc[0]
    assert (face["support"], face["confidence"], face["lift"]) == (0.25, 1.0, 4.0)
    assert len(table) == summary.rules_found > 2 and len(summary.rules) == 2
    assert table["lift"].is_monotonic_decreasing
    assert [r["rule"] for r in json.loads((out / "rules.json").read_text())] == table["rule"].tolist()
    text = format_summary(summary)
    assert all(str(rule) in text for rule in summary.rules)
    assert f"{summary.rules_found} found" in text


def test_terminal_text_shows_what_a_user_asks_first(tmp_path, two_sources):
    ham, archive = two_sources

    text = format_summary(
        summarize([str(ham), str(archive)], [None, "isic-archive"], tmp_path / "s", split=SplitConfig())
    )

    assert "64 images of 44 lesions from 2 data set(s)" in text
    assert "dropped 3 images from archive" in text
    assert "nv -> mel: 1" in text  # the duplicate whose diagnosis disagrees
    class_rows = {line.split()[0]: line.split() for line in text.splitlines() if line.startswith("  ")}
    assert class_rows["mel"][1:2] == [str(summary_count(ham, "mel") + 2)]
    assert "Images per lesion (lesions with k images): 1: 24, 2: 20" in text


def summary_count(ham: Path, label: str) -> int:
    return int((pd.read_csv(ham / "HAM10000_metadata.csv")["dx"] == label).sum())


def test_source_without_metadata_skips_plots_and_rules(tmp_path):
    root = tmp_path / "msid"
    for label, n in (("Monkeypox", 6), ("Normal", 4)):
        for i in range(n):
            write_image(root / label / f"{i}.png")
    out = tmp_path / "out"
    out.mkdir()
    for stale in ("age_by_diagnosis.png", "rules.csv"):  # left by an earlier summary of other data
        (out / stale).write_text("old")

    summary = summarize([str(root)], [""], out, split=SplitConfig())

    assert summary.classes == {"Monkeypox": 6, "Normal": 4}
    assert summary.rules == () and summary.rules_found == 0
    assert set(summary.skipped) == {
        "age_by_diagnosis",
        "sex_by_diagnosis",
        "localization_by_diagnosis",
        "rules",
    }
    assert not any((out / name).exists() for name in (*PLOT_FILES, "rules.csv", "rules.json"))
    assert "not written: rules (no images with metadata)" in format_summary(summary)


def test_label_maps_must_match_sources(tmp_path, two_sources):
    ham, archive = two_sources
    with pytest.raises(ValueError, match="1 label maps for 2 data sets"):
        summarize([str(ham), str(archive)], [None], tmp_path / "s", split=SplitConfig())


@pytest.mark.shared_data
def test_real_ham_plus_isic_archive(tmp_path):
    ham, archive = SHARED_DATA / "ham10000", SHARED_DATA / "isic-archive-9class"
    if not (ham.is_dir() and archive.is_dir()):
        pytest.skip(f"needs the shared data under {SHARED_DATA} (absent in a fresh clone)")

    summary = summarize([str(ham), str(archive)], [None, "isic-archive"], tmp_path, split=SplitConfig())

    assert summary.kept["ham10000"] == 10015
    # ~1,500 archive images are HAM's; 155 of its images are listed under two classes (both copies go).
    assert summary.dropped_conflicting == {"isic-archive-9class": 2 * 155}
    assert summary.dropped_duplicates["isic-archive-9class"] > 1300
    assert summary.images == 10015 + summary.kept["isic-archive-9class"]
    assert set(summary.classes) == {"akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"}
    assert summary.rules and all(r.consequent[0].startswith("dx=") for r in summary.rules)
    assert all((tmp_path / name).is_file() for name in PLOT_FILES)
    # HAM10000 files 18 lesions under two ids: merged before the split, and said so.
    assert summary.merged_lesions == {str(ham): 18}
    assert summary.lesions == 7470 - 18 + summary.kept["isic-archive-9class"]
    assert "merged 18 pairs of lesion ids" in format_summary(summary)
