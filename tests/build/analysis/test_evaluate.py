"""Evaluating a model end to end: images on disk -> production preprocessing -> metrics, plots, report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from build.analysis.evaluate import METRICS_FILE, PREDICTIONS_FILE, evaluate_model
from build.analysis.report import REPORT_HTML, REPORT_MD
from edge.card import CARD_FILE
from tests.conftest import TINY_COLOURS, TINY_LABELS

pytest.importorskip("tensorflow", reason="evaluating Keras and TFLite models needs the [build] extra")


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory) -> pd.DataFrame:
    """Twelve noisy solid-colour PNGs (four per tiny class) with labels and metadata, like load_dataset."""
    folder = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(7)
    rows = []
    for i in range(12):
        label = i % 3
        pixels = np.clip(np.float32(TINY_COLOURS[label]) + rng.normal(0, 10, (40, 48, 3)), 0, 255)
        path = folder / f"img_{i:02d}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        rows.append(
            {
                "path": str(path),
                "image_id": path.stem,
                "label": TINY_LABELS[label],
                "age": 30.0 + 5 * i,
                "sex": "female" if i < 6 else "male",
                "localization": "back",
            }
        )
    return pd.DataFrame(rows)


def _predictions(model, frame, out_dir, **options) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, abstained) per image, as evaluate_model's predictions.csv records them."""
    evaluate_model(model, frame, out_dir, **options)
    table = pd.read_csv(out_dir / PREDICTIONS_FILE)
    assert list(table["image_id"]) == list(frame["image_id"])
    return table[[f"p_{code}" for code in TINY_LABELS]].to_numpy(), table["abstained"].to_numpy()


def test_keras_model_predicts_every_image_in_output_order(tiny_keras_model, labelled_folder, tmp_path):
    probabilities, abstained = _predictions(tiny_keras_model, labelled_folder, tmp_path, labels=TINY_LABELS)
    assert probabilities.shape == (12, 3) and not abstained.any()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert [TINY_LABELS[i] for i in probabilities.argmax(axis=1)] == list(labelled_folder["label"])


def test_bundle_matches_keras_reference_and_tta(tiny_bundle, tiny_keras_model, labelled_folder, tmp_path):
    reference, _ = _predictions(tiny_keras_model, labelled_folder, tmp_path / "keras", labels=TINY_LABELS)
    bundle, abstained = _predictions(tiny_bundle, labelled_folder, tmp_path / "bundle", variant="float32")
    assert abstained.dtype == bool and len(abstained) == 12
    np.testing.assert_allclose(bundle, reference, atol=1e-3)
    with_tta, _ = _predictions(tiny_bundle, labelled_folder, tmp_path / "tta", variant="float32", tta=True)
    assert np.array_equal(with_tta.argmax(axis=1), bundle.argmax(axis=1))


def test_evaluate_model_writes_metrics_predictions_and_report(tiny_bundle, labelled_folder, tmp_path):
    metrics = evaluate_model(
        tiny_bundle, labelled_folder, tmp_path / "eval", variant="int8", context={"data": "synthetic colours"}
    )
    assert metrics.accuracy == 1.0 and metrics.n == 12
    assert metrics.malignant is not None and metrics.malignant["sensitivity"] == 1.0  # rdl is malignant
    assert {r["attribute"] for r in metrics.subgroups} == {"sex", "age band", "body site"}
    saved = json.loads((tmp_path / "eval" / METRICS_FILE).read_text())
    assert saved["balanced_accuracy"] == 1.0 and saved["classes"] == list(TINY_LABELS)
    predictions = pd.read_csv(tmp_path / "eval" / PREDICTIONS_FILE)
    assert list(predictions["predicted"]) == list(labelled_folder["label"])
    page = (tmp_path / "eval" / REPORT_HTML).read_text()
    assert "synthetic colours" in page and "data:image/png;base64," in page
    assert (tmp_path / "eval" / REPORT_MD).is_file()


def test_labels_the_model_does_not_know_are_refused(tiny_bundle, labelled_folder, tmp_path):
    frame = labelled_folder.assign(label=["mel"] * len(labelled_folder))
    with pytest.raises(ValueError, match="'mel'"):
        evaluate_model(tiny_bundle, frame, tmp_path / "eval", variant="float32")


def test_abstain_share_is_reported_only_when_the_bundle_has_a_rule(tiny_bundle, labelled_folder, tmp_path):
    without = evaluate_model(tiny_bundle, labelled_folder, tmp_path / "plain", variant="float32")
    assert without.abstained is None
    strict = tmp_path / "strict_bundle"
    shutil.copytree(tiny_bundle, strict)
    card = json.loads((strict / CARD_FILE).read_text())
    card["abstain"] = {"min_confidence": 0.999999}  # nothing the tiny model says is that sure
    (strict / CARD_FILE).write_text(json.dumps(card))
    with_rule = evaluate_model(strict, labelled_folder, tmp_path / "strict", variant="float32")
    assert with_rule.abstained == 1.0
    assert "declined to answer for 100.0%" in (tmp_path / "strict" / REPORT_MD).read_text()


def test_the_report_names_a_bundle_file_relative_to_its_bundle(tiny_bundle, labelled_folder, tmp_path):
    evaluate_model(tiny_bundle, labelled_folder, tmp_path / "eval", variant="int8")
    markdown = (tmp_path / "eval" / REPORT_MD).read_text()
    card = json.loads((Path(tiny_bundle) / "model_card.json").read_text())
    assert f"| model | model_int8.tflite (int8) of {card['name']} {card['version']} |" in markdown
    assert str(Path(tiny_bundle).resolve()) not in markdown  # no build-machine path in a shipped report


@pytest.mark.shared_data
@pytest.mark.parametrize("by", ["path", "shipped name"])
def test_a_card_from_before_the_duplicate_merge_gets_its_own_split_back(by):
    from build.analysis.evaluate import images_to_evaluate

    repo = Path(__file__).resolve().parents[3]
    data, bundle = repo.parent / "shared" / "data" / "ham10000", repo / "models" / "pretrained" / "ham10000"
    if not (data / "HAM10000_metadata.csv").is_file():
        pytest.skip(f"needs the shared HAM10000 data at {data} (absent in a fresh clone)")
    card = json.loads((bundle / CARD_FILE).read_text())
    if "duplicate_lesions_merged" in card["training"]["split"]:
        pytest.skip("the shipped card was built with the merge; nothing old to re-derive")

    model = bundle if by == "path" else "ham10000"  # `skinlesion evaluate ham10000 --split val`
    counts = {s: len(images_to_evaluate(model, data, split=s)) for s in ("val", "test")}

    assert counts == {s: card["training"]["split"]["counts"][s] for s in ("val", "test")}


def _class_folders(root: Path, indices: range) -> Path:
    """A folder per tiny class holding images img_<i>.png, the same pixels for the same i."""
    for i in indices:
        label = i % 3
        pixels = np.clip(
            np.float32(TINY_COLOURS[label]) + np.random.default_rng(i).normal(0, 10, (40, 48, 3)), 0, 255
        )
        (root / TINY_LABELS[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8)).save(root / TINY_LABELS[label] / f"img_{i:02d}.png")
    return root


def test_images_the_training_data_also_holds_are_left_out_and_the_report_says_so(tiny_bundle, tmp_path):
    from build.analysis.evaluate import run_evaluate

    archive = _class_folders(tmp_path / "archive", range(12))
    training = _class_folders(tmp_path / "training", range(5))

    metrics = run_evaluate(tiny_bundle, archive, out=tmp_path / "eval", exclude=training)

    assert metrics.n == 7
    evaluated = pd.read_csv(tmp_path / "eval" / PREDICTIONS_FILE)["image_id"]
    assert sorted(Path(image).name for image in evaluated) == [f"img_{i:02d}" for i in range(5, 12)]
    assert f"5 images also in {training}" in (tmp_path / "eval" / REPORT_MD).read_text()
    with pytest.raises(ValueError, match=r"all 12 images are also in .*archive.*drop --exclude"):
        run_evaluate(tiny_bundle, archive, out=tmp_path / "nothing", exclude=archive)


def test_an_image_listed_twice_counts_once_and_one_listed_under_two_classes_not_at_all(tiny_bundle, tmp_path):
    from build.analysis.evaluate import images_to_evaluate

    data = _class_folders(tmp_path / "data", range(6))
    rows = [(f"{TINY_LABELS[i % 3]}/img_{i:02d}.png", f"img_{i:02d}", TINY_LABELS[i % 3]) for i in range(6)]
    rows.append(rows[0])  # the same image filed twice under its class
    rows.append((rows[1][0], rows[1][1], TINY_LABELS[2]))  # and one under a second class
    pd.DataFrame(rows, columns=["path", "image_id", "label"]).to_csv(data / "labels.csv", index=False)

    frame = images_to_evaluate(tiny_bundle, data)

    assert sorted(frame["image_id"]) == ["img_00", "img_02", "img_03", "img_04", "img_05"]
