"""Bootstrap intervals and paired comparisons: a real difference is called, noise is not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from build.cli import main
from build.analysis.significance import balanced_accuracy_interval, compare_predictions, read_predictions

CLASSES = ("akiec", "df", "nv")


def predictions(hit_rates: dict[str, float], n_per_class: int, seed: int = 0) -> pd.DataFrame:
    """A predictions.csv table whose model finds each class at the given rate (misses are called nv/akiec)."""
    rng = np.random.default_rng(seed)
    rows = []
    for code, rate in hit_rates.items():
        hits = rng.permutation(np.arange(n_per_class) < round(rate * n_per_class))
        wrong = "akiec" if code == "nv" else "nv"
        rows += [
            {"image_id": f"{code}_{i}", "label": code, "predicted": code if hit else wrong}
            for i, hit in enumerate(hits)
        ]
    return pd.DataFrame(rows)


def test_the_interval_holds_the_score_and_narrows_with_more_images():
    def interval(n):
        table = predictions({"akiec": 0.6, "df": 0.5, "nv": 0.9}, n)
        y_true, y_pred = (table[c].map(CLASSES.index).to_numpy() for c in ("label", "predicted"))
        return balanced_accuracy_interval(y_true, y_pred)

    small, large = interval(12), interval(600)
    assert small[0] < 2 / 3 < small[1] and large[0] < 2 / 3 < large[1]
    assert large[1] - large[0] < 0.06 < 0.2 < small[1] - small[0]


def test_a_clearly_better_model_is_called_better_either_way_round():
    worse = predictions({"akiec": 0.5, "df": 0.4, "nv": 0.9}, 200)
    better = predictions({"akiec": 0.7, "df": 0.6, "nv": 0.9}, 200, seed=1)
    forward, backward = compare_predictions(worse, better), compare_predictions(better, worse)
    assert forward.verdict == "B is better" and forward.interval[0] > 0 and forward.b_better_share > 0.99
    assert backward.verdict == "A is better" and backward.difference == pytest.approx(-forward.difference)


def test_one_more_rare_image_found_is_no_measurable_difference():
    a = predictions({"akiec": 0.5, "df": 0.5, "nv": 0.9}, 12)
    b = a.copy()
    first_miss = b.index[(b.label == "df") & (b.predicted != "df")][0]
    b.loc[first_miss, "predicted"] = "df"
    comparison = compare_predictions(a, b)
    assert comparison.difference == pytest.approx(1 / 12 / 3)
    assert (
        comparison.verdict == "no measurable difference"
        and comparison.interval[0] <= 0 < comparison.interval[1]
    )


def test_evaluations_of_different_images_are_refused():
    a = predictions({"akiec": 0.5, "df": 0.5, "nv": 0.9}, 10)
    with pytest.raises(
        ValueError, match=r"share 20 images of 30 and 20: evaluate both .*same --data and --split"
    ):
        compare_predictions(a, a[a.label != "nv"])


def test_a_folder_without_predictions_says_what_to_pass(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"no predictions.csv; pass the --out folder of `skinlesion evaluate`"
    ):
        read_predictions(tmp_path)


def test_skinlesion_compare_prints_both_scores_and_the_verdict(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    predictions({"akiec": 0.5, "df": 0.4, "nv": 0.9}, 200).to_csv(
        tmp_path / "a" / "predictions.csv", index=False
    )
    predictions({"akiec": 0.7, "df": 0.6, "nv": 0.9}, 200, seed=1).to_csv(tmp_path / "b.csv", index=False)
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b.csv")]) == 0
    out = capsys.readouterr().out
    assert "A 0.600" in out and "B 0.733" in out and "B - A +13.3 pt" in out and "B is better" in out
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "nope")]) == 2


def test_each_class_recall_gets_its_own_interval():
    worse = predictions({"akiec": 0.5, "df": 0.4, "nv": 0.9}, 200)
    better = predictions({"akiec": 0.5, "df": 0.8, "nv": 0.9}, 200, seed=1)

    rows = compare_predictions(worse, better).per_class

    assert set(rows) == set(CLASSES) and rows["df"]["n"] == 200
    assert rows["df"]["recall_a"] == pytest.approx(0.4) and rows["df"]["recall_b"] == pytest.approx(0.8)
    assert rows["df"]["interval"][0] > 0.25  # a real gain in the rare class
    assert rows["akiec"]["interval"][0] < 0 < rows["akiec"]["interval"][1]  # same rate: noise


def test_releases_with_slightly_different_splits_compare_on_the_images_both_hold():
    a = predictions({"akiec": 0.5, "df": 0.5, "nv": 0.9}, 20)
    b = pd.concat([a.iloc[3:], pd.DataFrame([{"image_id": "new_1", "label": "nv", "predicted": "nv"}])])

    comparison = compare_predictions(a, b, shared_only=True)

    assert comparison.n == 57 and comparison.left_out == {"a": 3, "b": 1}
    assert comparison.verdict == "no measurable difference" and comparison.difference == 0


def test_compare_pools_validation_and_test_and_can_keep_to_shared_images(tmp_path, capsys):
    for name, rates, seed in (
        ("a-val", {"akiec": 0.5, "df": 0.4, "nv": 0.9}, 0),
        ("b-val", {"akiec": 0.7, "df": 0.6, "nv": 0.9}, 1),
    ):
        (tmp_path / name).mkdir()
        predictions(rates, 100, seed).to_csv(tmp_path / name / "predictions.csv", index=False)
    for name, seed in (("a-test", 2), ("b-test", 3)):
        table = predictions({"akiec": 0.6, "df": 0.5, "nv": 0.9}, 100, seed)
        table["image_id"] = "test_" + table["image_id"]
        (tmp_path / name).mkdir()
        table.to_csv(tmp_path / name / "predictions.csv", index=False)

    pooled = lambda side: f"{tmp_path / (side + '-val')}+{tmp_path / (side + '-test')}"  # noqa: E731
    assert main(["compare", pooled("a"), pooled("b")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("600 images") and "recall per class" in out and "df" in out

    assert main(["compare", pooled("a"), str(tmp_path / "b-val")]) == 2  # 300 of A's images not in B
    assert main(["compare", pooled("a"), str(tmp_path / "b-val"), "--shared-only"]) == 0
    assert "left out: 300 images only A was evaluated on" in capsys.readouterr().out


def _with_probabilities(table: pd.DataFrame, sharpness: float, seed: int) -> pd.DataFrame:
    """``table`` with p_<class> columns: the predicted class scores highest; ``sharpness`` sets how far
    the true class stands out among the rest (so two tables can decide alike and rank differently)."""
    rng = np.random.default_rng(seed)
    table = table.copy()
    scores = rng.uniform(0, 1, size=(len(table), len(CLASSES)))
    scores[np.arange(len(table)), table["label"].map(CLASSES.index)] += sharpness
    scores[np.arange(len(table)), table["predicted"].map(CLASSES.index)] = 10  # its decision stays
    scores = np.round(scores / scores.sum(axis=1, keepdims=True), 2)  # ties, as an int8 output has
    for k, code in enumerate(CLASSES):
        table[f"p_{code}"] = scores[:, k]
    return table


def _same_decisions_ranked_apart() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two tables with the same decisions; the second ranks the true class higher among the rest."""
    decisions = predictions({"akiec": 0.6, "df": 0.5, "nv": 0.9}, 150)
    return _with_probabilities(decisions, 0.0, seed=1), _with_probabilities(decisions, 1.5, seed=2)


def _reported(table: pd.DataFrame):
    """The metrics ``skinlesion evaluate`` reports for ``table``'s probabilities (akiec is malignant)."""
    from build.analysis.metrics import evaluate

    probabilities = table[[f"p_{code}" for code in CLASSES]].to_numpy()
    return evaluate(
        table["label"].map(CLASSES.index).to_numpy(), probabilities, CLASSES, malignant_indices=[0]
    )


def test_macro_auc_is_compared_on_the_same_resamples_and_matches_the_report():
    flat, ranked = _same_decisions_ranked_apart()
    comparison = compare_predictions(flat, ranked)
    # The same decisions: balanced accuracy cannot tell them apart, the ranking of the rest can.
    assert comparison.difference == 0 and comparison.verdict == "no measurable difference"
    auc = comparison.macro_auc
    assert auc["interval"][0] > 0 and auc["b_better_share"] > 0.99
    for table, value in ((flat, auc["a"]), (ranked, auc["b"])):
        assert value == pytest.approx(_reported(table).macro["auc"], abs=1e-12)
    assert compare_predictions(ranked, flat).macro_auc["difference"] == pytest.approx(-auc["difference"])


def test_tables_without_probabilities_are_compared_on_balanced_accuracy_alone():
    a = predictions({"akiec": 0.6, "df": 0.5, "nv": 0.9}, 30)
    comparison = compare_predictions(a, _with_probabilities(a, 1.0, seed=3))
    assert comparison.macro_auc is None


def test_the_screening_views_auc_is_compared_on_the_same_resamples_and_matches_the_report():
    flat, ranked = _same_decisions_ranked_apart()
    auc = compare_predictions(flat, ranked).malignant_auc
    # akiec is the one malignant class here: its probability ranks malignant above benign lesions.
    assert auc["classes"] == ["akiec"]
    assert auc["interval"][0] > 0 and auc["b_better_share"] > 0.99
    for table, value in ((flat, auc["a"]), (ranked, auc["b"])):
        assert value == pytest.approx(_reported(table).malignant["auc"], abs=1e-12)


def test_without_malignant_lesions_there_is_no_screening_auc():
    benign = _with_probabilities(predictions({"df": 0.5, "nv": 0.9}, 40), 1.0, seed=4)
    assert compare_predictions(benign, benign).malignant_auc is None
