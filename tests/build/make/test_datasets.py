"""The data layer: every reader layout, label maps, merging, and lesion-grouped splits.

Synthetic data sets are written into tmp_path with Pillow (tiny solid-colour images); the last tests
read the shared HAM10000 copy and skip when ``../shared`` is absent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from build.make.datasets import (
    COLUMNS,
    SplitConfig,
    add_to_training,
    check_groups_within_splits,
    fingerprint,
    load_dataset,
    merge_datasets,
    split_by_group,
)

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
COLOURS = {"mel": (120, 60, 40), "nv": (180, 140, 110), "bkl": (150, 120, 80), "bcc": (200, 150, 150)}


def write_image(path: Path, colour=(128, 90, 70), size=(24, 20)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def write_ham_root(root: Path, n: int = 8) -> pd.DataFrame:
    """A HAM10000 root as Kaggle ships it: the metadata CSV and two image part folders."""
    rows = []
    for i in range(n):
        label = ("mel", "nv", "bkl", "nv")[i % 4]
        rows.append(
            {
                "lesion_id": f"HAM_{i // 2:07d}",
                "image_id": f"ISIC_{i:07d}",
                "dx": label,
                "dx_type": "histo",
                "age": 30.0 + 5 * i,
                "sex": ("male", "female")[i % 2],
                "localization": ("back", "face")[i % 2],
            }
        )
        folder = "HAM10000_images_part_1" if i < n // 2 else "HAM10000_images_part_2"
        write_image(root / folder / f"ISIC_{i:07d}.jpg", COLOURS[label])
    table = pd.DataFrame(rows)
    table.to_csv(root / "HAM10000_metadata.csv", index=False)
    return table


# --- readers -------------------------------------------------------------------------------------


def test_ham_root_with_two_part_folders(tmp_path):
    table = write_ham_root(tmp_path / "ham")

    frame = load_dataset(tmp_path / "ham")

    assert list(frame.columns) == COLUMNS
    assert frame["image_id"].tolist() == table["image_id"].tolist()
    assert frame["label"].tolist() == table["dx"].tolist()
    assert frame["group"].tolist() == table["lesion_id"].tolist()
    assert frame["source"].unique().tolist() == ["ham"]
    folders = {Path(p).parent.name for p in frame["path"]}
    assert folders == {"HAM10000_images_part_1", "HAM10000_images_part_2"}
    assert all(Path(p).is_absolute() and Path(p).stem == i for p, i in zip(frame["path"], frame["image_id"]))
    assert frame["age"].tolist() == table["age"].tolist()
    assert frame[["sex", "localization", "dx_type"]].notna().all().all()


def test_missing_images_are_all_named(tmp_path):
    write_ham_root(tmp_path / "ham")
    (tmp_path / "ham" / "HAM10000_images_part_1" / "ISIC_0000001.jpg").unlink()
    (tmp_path / "ham" / "HAM10000_images_part_2" / "ISIC_0000006.jpg").unlink()

    with pytest.raises(FileNotFoundError, match="2 images") as error:
        load_dataset(tmp_path / "ham")
    assert "ISIC_0000001" in str(error.value) and "ISIC_0000006" in str(error.value)


def write_isic2018(csv_path: Path, image_dir: Path, labels: list[str]) -> None:
    columns = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]
    rows = []
    for i, label in enumerate(labels):
        rows.append({"image": f"ISIC_{i:07d}", **{c: float(c == label.upper()) for c in columns}})
        write_image(image_dir / f"ISIC_{i:07d}.jpg")
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(csv_path, index=False)


def test_lesions_listed_as_duplicates_become_one_group(tmp_path):
    table = write_ham_root(tmp_path / "ham")
    first, second = table["lesion_id"].unique()[:2]
    pd.DataFrame(
        {
            "image_id_a": ["x"],
            "image_id_b": ["y"],
            "similarity": [0.99],
            "lesion_id_a": [second],
            "lesion_id_b": [first],
            "dx_a": ["nv"],
            "dx_b": ["nv"],
        }
    ).to_csv(tmp_path / "ham" / "duplicate_lesions.csv", index=False)

    frame = load_dataset(tmp_path / "ham")

    merged = frame[table["lesion_id"].isin([first, second])]
    assert merged["group"].nunique() == 1 and merged["group"].iloc[0] == min(first, second)
    assert frame["group"].nunique() == table["lesion_id"].nunique() - 1
    assert (split_by_group(frame).loc[merged.index, "split"].nunique()) == 1
    assert frame.loc[merged.index, "lesion_id"].tolist() == table.loc[merged.index, "lesion_id"].tolist()


def test_isic2018_onehot_csv_beside_images(tmp_path):
    write_isic2018(tmp_path / "isic" / "GroundTruth.csv", tmp_path / "isic", ["mel", "nv", "vasc"])

    for root in (tmp_path / "isic", tmp_path / "isic" / "GroundTruth.csv"):
        frame = load_dataset(root)
        assert frame["label"].tolist() == ["mel", "nv", "vasc"]
        assert frame["group"].tolist() == frame["image_id"].tolist()


def test_isic2018_official_layout_ground_truth_folder_beside_input_folder(tmp_path):
    root = tmp_path / "isic2018"
    write_isic2018(
        root / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv",
        root / "ISIC2018_Task3_Training_Input",
        ["bkl", "df", "akiec", "bcc"],
    )

    from_root = load_dataset(root)
    from_csv = load_dataset(
        root / "ISIC2018_Task3_Training_GroundTruth" / "ISIC2018_Task3_Training_GroundTruth.csv"
    )

    # Not mistaken for a folder-per-class data set with one class named after the image folder.
    assert from_root["label"].tolist() == ["bkl", "df", "akiec", "bcc"]
    assert from_csv["path"].tolist() == from_root["path"].tolist()


def test_isic2018_row_with_two_classes_is_refused(tmp_path):
    write_isic2018(tmp_path / "isic" / "gt.csv", tmp_path / "isic", ["mel", "nv"])
    table = pd.read_csv(tmp_path / "isic" / "gt.csv")
    table.loc[0, "NV"] = 1.0
    table.to_csv(tmp_path / "isic" / "gt.csv", index=False)

    with pytest.raises(ValueError, match="exactly one class"):
        load_dataset(tmp_path / "isic")


def test_labels_csv_with_image_id_beside_images_folder(tmp_path):
    root = tmp_path / "clinic"
    for i in range(3):
        write_image(root / "images" / f"img{i}.png")
    pd.DataFrame(
        {
            "image_id": ["img0", "img1", "img2"],
            "dx": ["mel", "nv", "nv"],
            "lesion_id": ["a", "a", "b"],
            "age": [40, 40, 70],
        }
    ).to_csv(root / "labels.csv", index=False)

    frame = load_dataset(root)

    assert frame["label"].tolist() == ["mel", "nv", "nv"]
    assert frame["group"].tolist() == ["a", "a", "b"]
    assert frame["age"].tolist() == [40, 40, 70]
    assert frame["source"].iloc[0] == "clinic"


def test_labels_csv_with_numeric_ids_keeps_leading_zeros(tmp_path):
    root = tmp_path / "clinic"
    write_image(root / "images" / "0012.jpg")
    write_image(root / "images" / "13.jpg")
    (root / "labels.csv").write_text("image_id,label\n0012,1\n13,0\n")

    frame = load_dataset(root)

    assert frame["image_id"].tolist() == ["0012", "13"]
    assert frame["label"].tolist() == ["1", "0"]


def test_labels_csv_with_relative_paths(tmp_path):
    root = tmp_path / "archive"
    write_image(root / "Train" / "melanoma" / "x1.jpg")
    write_image(root / "Test" / "nevus" / "x2.jpg")
    pd.DataFrame(
        {"path": ["Train/melanoma/x1.jpg", "Test/nevus/x2.jpg"], "label": ["melanoma", "nevus"]}
    ).to_csv(root / "labels.csv", index=False)

    frame = load_dataset(root / "labels.csv", source="archive")

    assert frame["image_id"].tolist() == ["x1", "x2"]
    assert frame["label"].tolist() == ["melanoma", "nevus"]
    assert all(Path(p).is_file() for p in frame["path"])


def test_labels_csv_missing_file_is_named(tmp_path):
    root = tmp_path / "archive"
    write_image(root / "a.jpg")
    pd.DataFrame({"path": ["a.jpg", "gone/b.jpg"], "label": ["nv", "mel"]}).to_csv(
        root / "labels.csv", index=False
    )

    with pytest.raises(FileNotFoundError, match="b.jpg"):
        load_dataset(root)


def test_labels_csv_without_label_column_is_refused(tmp_path):
    root = tmp_path / "bad"
    write_image(root / "images" / "a.jpg")
    pd.DataFrame({"image_id": ["a"], "class": ["nv"]}).to_csv(root / "labels.csv", index=False)

    with pytest.raises(ValueError, match="'dx' or 'label'"):
        load_dataset(root)


def test_folder_per_class(tmp_path):
    root = tmp_path / "msid"
    for label, n in (("Monkeypox", 3), ("Normal", 2)):
        for i in range(n):
            write_image(root / label / f"{i}.png")  # same file names in both classes

    frame = load_dataset(root)

    assert frame["label"].value_counts().to_dict() == {"Monkeypox": 3, "Normal": 2}
    assert frame["image_id"].is_unique  # the id keeps the class, so 0.png twice is two images
    assert frame["age"].isna().all()


def test_unknown_layout_and_missing_root(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no known data layout"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dataset(tmp_path / "nowhere")


# --- label maps and merging ----------------------------------------------------------------------


def write_archive(root: Path, rows: list[tuple[str, str]]) -> None:
    """A labels.csv + images/ source with ISIC-archive class names."""
    for image_id, _ in rows:
        write_image(root / "images" / f"{image_id}.jpg")
    pd.DataFrame(rows, columns=["image_id", "label"]).to_csv(root / "labels.csv", index=False)


def test_builtin_and_custom_label_maps(tmp_path):
    write_archive(
        tmp_path / "arch",
        [("a", "melanoma"), ("b", "squamous cell carcinoma"), ("c", "seborrheic keratosis")],
    )

    builtin = load_dataset(tmp_path / "arch", label_map="isic-archive")
    custom = load_dataset(
        tmp_path / "arch",
        label_map={
            "melanoma": "malignant",
            "squamous cell carcinoma": "malignant",
            "seborrheic keratosis": "benign",
        },
    )

    assert builtin["label"].tolist() == ["mel", "akiec", "bkl"]
    assert custom["label"].tolist() == ["malignant", "malignant", "benign"]


def test_label_outside_the_map_is_an_error(tmp_path):
    write_archive(tmp_path / "arch", [("a", "melanoma"), ("b", "lentigo")])

    with pytest.raises(ValueError, match="lentigo"):
        load_dataset(tmp_path / "arch", label_map="isic-archive")
    with pytest.raises(ValueError, match="unknown label map 'isic'"):
        load_dataset(tmp_path / "arch", label_map="isic")


def test_merge_keeps_first_copy_and_reports_duplicates(tmp_path):
    write_ham_root(tmp_path / "ham", n=4)  # ISIC_0000000..3
    write_archive(
        tmp_path / "arch",
        [
            ("ISIC_0000000", "nevus"),
            ("ISIC_0000001", "nevus"),
            ("ISIC_0009999", "melanoma"),
            ("ISIC_0008888", "dermatofibroma"),
        ],
    )
    ham = load_dataset(tmp_path / "ham")
    archive = load_dataset(tmp_path / "arch", label_map="isic-archive")

    merged, report = merge_datasets([ham, archive], labels=["mel", "nv", "bkl"])

    assert merged["image_id"].is_unique and len(merged) == 5
    assert merged.set_index("image_id").loc["ISIC_0000000", "label"] == "mel"  # HAM's label, HAM came first
    assert merged.set_index("image_id").loc["ISIC_0000000", "source"] == "ham"
    assert report.kept == {"ham": 4, "arch": 1}
    assert report.dropped_duplicates == {"arch": 2}
    assert report.dropped_unmapped == {"df": 1}
    lines = "\n".join(report.lines())
    assert "dropped 2 images from arch" in lines and "'df'" in lines


def test_training_only_images_join_training_and_leave_validation_and_test_as_they_were(tmp_path):
    write_ham_root(tmp_path / "ham", n=40)
    # Two copies of HAM images (one of them held out in val or test, whatever the split) and two new images.
    ham = split_by_group(load_dataset(tmp_path / "ham"), SplitConfig(seed=1))
    held_out = ham.loc[ham["split"] != "train", "image_id"].iloc[0]
    write_archive(
        tmp_path / "arch",
        [
            (held_out, "nevus"),
            ("ISIC_0000001", "nevus"),
            ("ISIC_0009999", "melanoma"),
            ("ISIC_0008888", "seborrheic keratosis"),
        ],
    )

    merged, report = add_to_training(ham, [load_dataset(tmp_path / "arch", label_map="isic-archive")])

    for split in ("val", "test"):
        assert (
            merged.loc[merged["split"] == split, "image_id"].tolist()
            == ham.loc[ham["split"] == split, "image_id"].tolist()
        )
    added = merged[merged["train_only"]]
    assert sorted(added["image_id"]) == ["ISIC_0008888", "ISIC_0009999"]
    assert set(added["split"]) == {"train"} and sorted(added["label"]) == ["bkl", "mel"]
    assert (
        merged.set_index("image_id").loc[held_out, "split"] != "train"
    )  # the copy did not leak into training
    assert report.kept == {"arch": 2} and report.dropped_duplicates == {"arch": 2}
    assert fingerprint(merged[~merged["train_only"]]) == fingerprint(ham)


def test_a_training_only_image_of_a_held_out_lesion_is_refused(tmp_path):
    write_ham_root(tmp_path / "ham", n=40)
    ham = split_by_group(load_dataset(tmp_path / "ham"), SplitConfig(seed=1))
    held_out_lesion = ham.loc[ham["split"] == "val", "group"].iloc[0]
    extra = ham.iloc[:1].assign(image_id="ISIC_0007777", group=held_out_lesion, source="other")

    with pytest.raises(ValueError, match="straddle splits"):
        add_to_training(ham, [extra.drop(columns="split")])


def test_an_image_a_source_lists_under_two_classes_is_dropped_from_it(tmp_path):
    write_ham_root(tmp_path / "ham", n=4)  # ISIC_0000000 is a melanoma in HAM
    write_archive(
        tmp_path / "arch",
        [
            ("ISIC_0000000", "nevus"),
            ("ISIC_0000000", "melanoma"),
            ("ISIC_0009999", "melanoma"),
            ("ISIC_0009999", "seborrheic keratosis"),
            ("ISIC_0008888", "nevus"),
            ("ISIC_0008888", "nevus"),
        ],
    )
    archive = load_dataset(tmp_path / "arch", label_map="isic-archive")

    merged, report = merge_datasets([load_dataset(tmp_path / "ham"), archive])

    assert "ISIC_0009999" not in set(merged["image_id"])  # melanoma or keratosis: nobody knows
    assert merged.set_index("image_id").loc["ISIC_0000000", "label"] == "mel"  # HAM's own copy stays
    assert merged.set_index("image_id").loc["ISIC_0008888", "label"] == "nv"  # listed twice, one class
    assert report.dropped_conflicting == {"arch": 4}
    assert "dropped 4 images from arch: it lists each of them under two or more classes" in report.lines()


def test_merge_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="at least one"):
        merge_datasets([])


# --- splits --------------------------------------------------------------------------------------


def synthetic_frame(seed: int = 0, n_groups: int = 900) -> pd.DataFrame:
    """Lesion groups of 1-4 images with imbalanced classes (no image files: splits only read the table)."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        label = rng.choice(["nv", "mel", "bkl"], p=[0.7, 0.2, 0.1])
        for k in range(rng.integers(1, 5)):
            rows.append({"image_id": f"img{g}_{k}", "label": label, "group": f"lesion{g}"})
    return pd.DataFrame(rows)


def test_split_is_grouped_stratified_and_respects_fractions():
    frame = synthetic_frame()

    split = split_by_group(frame, SplitConfig(fractions=(0.7, 0.2, 0.1), seed=1))

    assert split.groupby("group")["split"].nunique().max() == 1
    shares = split["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.7, abs=0.02)
    assert shares["val"] == pytest.approx(0.2, abs=0.02)
    assert shares["test"] == pytest.approx(0.1, abs=0.02)
    overall = split["label"].value_counts(normalize=True)
    for name, part in split.groupby("split"):
        per_class = part["label"].value_counts(normalize=True)
        for label in overall.index:
            assert per_class[label] == pytest.approx(overall[label], abs=0.03), (name, label)


def test_split_is_seeded():
    frame = synthetic_frame()

    first = split_by_group(frame, SplitConfig(seed=7))["split"]
    again = split_by_group(frame, SplitConfig(seed=7))["split"]
    other = split_by_group(frame, SplitConfig(seed=8))["split"]

    assert first.tolist() == again.tolist()
    assert (first != other).mean() > 0.1


def test_straddling_group_is_refused():
    frame = pd.DataFrame({"group": ["L1", "L1", "L2"], "split": ["train", "test", "val"]})

    with pytest.raises(ValueError, match="1 lesion groups straddle") as error:
        check_groups_within_splits(frame)
    assert "L1" in str(error.value)
    check_groups_within_splits(frame.iloc[1:])  # one image per lesion: fine


@pytest.mark.parametrize("fractions", [(0.8, 0.1), (0.8, 0.3, 0.1), (1.1, -0.05, -0.05)])
def test_bad_fractions_are_refused(fractions):
    with pytest.raises(ValueError, match="fractions"):
        SplitConfig(fractions=fractions)


def test_fingerprint_follows_images_and_labels_not_order():
    frame = pd.DataFrame({"image_id": ["a", "b"], "label": ["nv", "mel"]})

    assert fingerprint(frame) == fingerprint(frame.iloc[::-1])
    assert fingerprint(frame) != fingerprint(frame.assign(label=["nv", "nv"]))


# --- the real data -------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_real_ham10000_split_by_lesion():
    root = SHARED_DATA / "ham10000"
    if not (root / "HAM10000_metadata.csv").is_file():
        pytest.skip(f"needs the shared HAM10000 data at {root} (absent in a fresh clone)")

    frame = split_by_group(load_dataset(root), SplitConfig(seed=42))

    # 7,470 lesion ids, 18 pairs of which are one lesion filed twice (duplicate_lesions.csv).
    assert len(frame) == 10015 and frame["group"].nunique() == 7470 - 18
    assert frame.groupby("group")["split"].nunique().max() == 1
    pairs = pd.read_csv(root / "duplicate_lesions.csv")
    split_of = frame.set_index("image_id")["split"]
    assert (split_of[pairs["image_id_a"]].values == split_of[pairs["image_id_b"]].values).all()
    # The merge moves only the images of the lesions it merges: every other image keeps the split that
    # release 2 (split before the merge existed) was trained and tested on.
    unmerged = split_by_group(load_dataset(root, merge_duplicate_lesions=False), SplitConfig(seed=42))
    moved = frame.loc[frame["split"] != unmerged["split"], "lesion_id"]
    assert set(moved) <= set(pairs["lesion_id_a"]) | set(pairs["lesion_id_b"]) and len(moved) <= 36
    shares = frame["split"].value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.8, abs=0.01)
    assert shares["val"] == pytest.approx(0.1, abs=0.01)
    assert shares["test"] == pytest.approx(0.1, abs=0.01)
    # Every class, even vasc (142) and df (115), reaches every split.
    assert (frame.groupby(["label", "split"]).size().unstack() > 0).all().all()


@pytest.mark.shared_data
def test_real_isic_archive_adds_only_new_images_to_training():
    ham_root, archive_root = SHARED_DATA / "ham10000", SHARED_DATA / "isic-archive-9class"
    if not (ham_root / "HAM10000_metadata.csv").is_file() or not (archive_root / "labels.csv").is_file():
        pytest.skip(
            f"needs the shared HAM10000 and ISIC-archive data under {SHARED_DATA} (absent in a fresh clone)"
        )
    ham = split_by_group(load_dataset(ham_root), SplitConfig(seed=42))
    archive = load_dataset(archive_root, label_map="isic-archive")

    merged, _ = add_to_training(ham, [archive])

    added = merged[merged["train_only"]]
    listed = pd.read_csv(archive_root / "labels.csv").query("not in_ham10000")
    # The archive lists some images under two classes (melanoma and seborrheic keratosis): those stay out.
    one_class = listed.groupby("image_id")["label"].nunique() == 1
    assert sorted(added["image_id"]) == sorted(one_class.index[one_class])
    assert len(added) > 650
    assert (added["split"] == "train").all() and added["label"].value_counts().idxmax() == "mel"
    assert fingerprint(merged[~merged["train_only"]]) == fingerprint(ham)
