"""Metrics against cases small enough to compute by hand."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from build.analysis.metrics import (
    Metrics,
    age_band,
    evaluate,
    expected_calibration_error,
    reliability_bins,
    subgroup_table,
)

CLASSES = ("mel", "nv", "bcc")  # mel and bcc malignant
# Six images: two of each class. Predictions: mel, nv | nv, nv | bcc, mel.
Y = np.array([0, 0, 1, 1, 2, 2])
PROBS = np.array(
    [
        [0.7, 0.2, 0.1],  # mel -> mel
        [0.3, 0.6, 0.1],  # mel -> nv   (the dangerous miss)
        [0.1, 0.8, 0.1],  # nv  -> nv
        [0.2, 0.7, 0.1],  # nv  -> nv
        [0.1, 0.1, 0.8],  # bcc -> bcc
        [0.5, 0.1, 0.4],  # bcc -> mel
    ]
)


def test_headline_numbers_match_hand_computation():
    m = evaluate(Y, PROBS, CLASSES, malignant_indices=[0, 2])
    assert m.n == 6 and m.n_per_class == {"mel": 2, "nv": 2, "bcc": 2}
    assert m.accuracy == pytest.approx(4 / 6)
    assert m.balanced_accuracy == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert m.confusion_matrix == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    # mel: predicted twice (one right) -> precision 1/2, recall 1/2.
    assert m.per_class["mel"]["precision"] == pytest.approx(0.5)
    assert m.per_class["nv"]["precision"] == pytest.approx(2 / 3)
    assert m.per_class["nv"]["recall"] == pytest.approx(1.0)
    assert m.per_class["nv"]["f1"] == pytest.approx(0.8)
    assert m.macro["recall"] == pytest.approx(m.balanced_accuracy)
    assert m.weighted["recall"] == pytest.approx(m.accuracy)


def test_balanced_accuracy_comes_with_a_bootstrap_interval_that_survives_saving(tmp_path):
    m = evaluate(Y, PROBS, CLASSES, malignant_indices=[0, 2])
    low, high = m.balanced_accuracy_interval
    # Two images per class: one more or less found moves the score a lot, and the interval says so.
    assert low < m.balanced_accuracy < high and high - low > 0.3
    assert Metrics.load(m.save(tmp_path / "metrics.json")) == m


def test_melanoma_and_malignant_operating_point():
    m = evaluate(Y, PROBS, CLASSES, malignant_indices=[0, 2], threshold=0.5)
    # Top class mel on images 0 and 5: one of two melanomas, one of four others. The screen flags the
    # melanoma the top class finds (malignant .8) but not the one called nv (.4).
    assert m.melanoma == {
        "sensitivity": pytest.approx(0.5),
        "specificity": pytest.approx(0.75),
        "flagged": pytest.approx(0.5),
    }
    # Malignant probability (mel + bcc): .8 .4 .2 .3 .9 .9 -> flagged at 0.5: images 0, 4, 5.
    assert m.malignant["sensitivity"] == pytest.approx(3 / 4)
    assert m.malignant["specificity"] == pytest.approx(1.0)
    assert m.malignant["n_malignant"] == 4 and m.malignant["threshold"] == 0.5
    # Malignant scores .8 .4 .9 .9 vs benign .2 .3: every malignant ranks above every benign.
    assert m.malignant["auc"] == pytest.approx(1.0)
    stricter = evaluate(Y, PROBS, CLASSES, malignant_indices=[0, 2], threshold=0.35)
    assert stricter.malignant["sensitivity"] == pytest.approx(1.0)
    # The missed melanoma (.4) is flagged at the lower point although its top class stays nv.
    assert stricter.melanoma["flagged"] == pytest.approx(1.0) and stricter.melanoma["sensitivity"] == 0.5


def test_melanoma_is_not_counted_as_flagged_when_it_is_not_a_malignant_class():
    m = evaluate(Y, PROBS, CLASSES, malignant_indices=[2])
    assert m.melanoma["flagged"] is None and m.melanoma["sensitivity"] == pytest.approx(0.5)


def test_one_vs_rest_auc_per_class():
    m = evaluate(Y, PROBS, CLASSES, malignant_indices=[0, 2])
    # mel scores: positives .7 .3, negatives .1 .2 .1 .5 -> 7 of 8 pairs ranked right (.3 < .5).
    assert m.per_class["mel"]["auc"] == pytest.approx(7 / 8)
    assert m.per_class["nv"]["auc"] == pytest.approx(1.0)


def test_class_labels_as_codes_and_unknown_labels():
    codes = [CLASSES[i] for i in Y]
    assert evaluate(codes, PROBS, CLASSES).accuracy == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="'scc'"):
        evaluate(["scc"] + codes[1:], PROBS, CLASSES)
    with pytest.raises(ValueError, match="shape"):
        evaluate(Y, PROBS[:, :2], CLASSES)


def test_absent_class_has_no_auc_and_json_stays_valid(tmp_path):
    m = evaluate(Y[:4], PROBS[:4], CLASSES, malignant_indices=[0, 2])  # no bcc image
    assert m.per_class["bcc"]["auc"] is None
    assert m.balanced_accuracy == pytest.approx((0.5 + 1.0) / 2)  # over the classes present
    path = m.save(tmp_path / "eval" / "metrics.json")
    assert json.loads(path.read_text())["per_class"]["bcc"]["auc"] is None
    assert Metrics.load(path) == m


def test_ece_by_hand():
    # Two images at confidence 0.9, one right: |0.5 - 0.9| = 0.4 in the only filled bin.
    probs = np.array([[0.9, 0.1], [0.9, 0.1]])
    assert expected_calibration_error(probs, np.array([0, 1])) == pytest.approx(0.4)
    # Perfectly calibrated: confidence 0.6, 3 of 5 right ... in one bin -> 0.
    probs = np.tile([0.6, 0.4], (5, 1))
    assert expected_calibration_error(probs, np.array([0, 0, 0, 1, 1])) == pytest.approx(0.0)
    confidence, accuracy, counts = reliability_bins(probs, np.array([0, 0, 0, 1, 1]))
    assert counts.sum() == 5 and counts[8] == 5  # 0.6 lies in (8/15, 9/15]
    assert accuracy[8] == pytest.approx(0.6) and confidence[8] == pytest.approx(0.6)
    assert np.isnan(accuracy[0]) and counts[0] == 0


def test_age_bands():
    assert [age_band(a) for a in (5, 29.9, 30, 44, 45, 60, 74, 75, 90)] == [
        "<30",
        "<30",
        "30-44",
        "30-44",
        "45-59",
        "60-74",
        "60-74",
        "75+",
        "75+",
    ]
    assert age_band(float("nan")) is None and age_band(None) is None


def test_subgroup_table_by_sex_age_and_site():
    n = 24
    y = np.arange(n) % 2
    pred = y.copy()
    pred[:12] = 1 - pred[:12]  # every female image (the first 12) is wrong
    meta = pd.DataFrame(
        {
            "sex": ["female"] * 12 + ["male"] * 10 + ["unknown"] * 2,
            "age": [25.0] * 12 + [80.0] * 12,
            "localization": ["back"] * n,
        }
    )
    rows = {(r["attribute"], r["group"]): r for r in subgroup_table(y, pred, meta)}
    assert ("sex", "unknown") not in rows
    assert rows[("sex", "female")]["accuracy"] == 0.0 and rows[("sex", "female")]["n"] == 12
    assert rows[("sex", "male")]["balanced_accuracy"] == 1.0
    assert rows[("age band", "<30")]["accuracy"] == 0.0 and rows[("age band", "75+")]["accuracy"] == 1.0
    assert rows[("body site", "back")]["n"] == n
    metrics = evaluate(y, np.eye(2)[pred] * 0.8 + 0.1, ("nv", "mel"), metadata=meta)
    assert metrics.subgroups == subgroup_table(y, pred, meta)
