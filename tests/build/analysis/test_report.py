"""The report renders: plots exist, the HTML stands alone, and the words follow the numbers."""

from __future__ import annotations

import base64
import dataclasses
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from build.analysis.metrics import evaluate
from build.analysis.findings import format_interval, interpret, recommendations
from build.analysis.plots import PLOT_FILES, make_plots, plot_training_curves
from build.analysis.report import write_report

CLASSES = ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
PNG_MAGIC = b"\x89PNG"


@pytest.fixture(scope="module")
def evaluation():
    """A model that is good on nevi and calls a third of the melanomas nevus."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(7), [10, 12, 20, 6, 30, 90, 8])
    pred = y.copy()
    melanomas = np.flatnonzero(y == 4)
    pred[melanomas[:10]] = 5  # mel -> nv: the dangerous confusion
    probs = np.full((len(y), 7), 0.02)
    probs[np.arange(len(y)), pred] = 0.88
    probs += rng.uniform(0, 0.01, probs.shape)
    probs /= probs.sum(axis=1, keepdims=True)
    meta = pd.DataFrame(
        {
            "age": rng.choice([25, 50, 70, 80], len(y)).astype(float),
            "sex": rng.choice(["male", "female"], len(y)),
            "localization": rng.choice(["back", "face"], len(y)),
        }
    )
    return y, probs, evaluate(y, probs, CLASSES, [0, 1, 4], metadata=meta)


def test_report_files_embed_plots_and_interpretation(tmp_path, evaluation):
    y, probs, metrics = evaluation
    log = tmp_path / "log.csv"
    pd.DataFrame(
        {
            "epoch": [1, 2, 1, 2],
            "stage": ["head", "head", "finetune", "finetune"],
            "loss": [1.2, 0.9, 0.7, 0.6],
            "val_loss": [1.1, 1.0, 0.8, 0.75],
            "val_balanced_accuracy": [0.4, 0.5, 0.6, 0.65],
            "lr": [1e-3, 1e-3, 1e-4, 1e-4],
        }
    ).to_csv(log, index=False)
    plots = make_plots(metrics, y, probs, tmp_path / "report", training_log=log)
    assert set(plots) == set(PLOT_FILES)
    for path in plots.values():
        assert path.read_bytes()[:4] == PNG_MAGIC

    md_path, html_path = write_report(
        tmp_path / "report", metrics, plots, title="Test run", context={"model": "unit-test model"}
    )
    page = html_path.read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) == len(plots)
    assert all(base64.b64decode(data)[:4] == PNG_MAGIC for data in embedded)
    assert 'src="confusion' not in page  # self-contained: no file links
    assert "10 of 30 mel images (33%) were called nv" in page
    assert "melanoma called a harmless mole" in page
    assert "unit-test model" in page and "<h2>Subgroups</h2>" in page and "75+" in page

    markdown = md_path.read_text()
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown):
        assert (md_path.parent / link).is_file()
    assert "Melanoma sensitivity | 66.7%" in markdown
    # The ten melanomas named nv score 0.06 malignant: the screen misses them as well.
    assert f"Melanomas flagged @ {metrics.malignant['threshold']:.2f} | 66.7%" in markdown
    low, high = metrics.balanced_accuracy_interval
    assert f"| Balanced accuracy | {metrics.balanced_accuracy:.1%} ({low:.1%}–{high:.1%}) |" in markdown


def test_words_follow_the_numbers(evaluation):
    _, _, metrics = evaluation
    text = " ".join(interpret(metrics))
    assert "67% of melanomas are called melanoma" in text
    assert "Strong: akiec (100% found)" in text
    assert "anywhere from" in text and "`skinlesion compare`" in text
    advice = " ".join(recommendations(metrics))
    assert "Melanoma sensitivity is below 80%" in advice
    assert "decision support" in advice


def test_melanomas_the_malignant_flag_catches_change_the_advice(evaluation):
    y, probs, _ = evaluation
    # The same model, but each melanoma it names nv still gets a malignant probability of 0.6:
    # the screen at 0.5 flags all of them while the class name misses a third.
    named_nv = (y == 4) & (probs.argmax(axis=1) == 5)
    shifted = probs.copy()
    shifted[named_nv] = [0.0, 0.3, 0.0, 0.0, 0.3, 0.4, 0.0]
    metrics = evaluate(y, shifted, CLASSES, [0, 1, 4], threshold=0.5)
    assert metrics.melanoma["sensitivity"] == pytest.approx(20 / 30) and metrics.melanoma["flagged"] == 1.0
    assert "100% of melanomas are flagged" in " ".join(interpret(metrics))
    advice = " ".join(recommendations(metrics))
    assert "the malignant flag catches 100% of melanomas" in advice
    assert "lower the malignant operating threshold" not in advice


def test_missing_plot_is_an_error(tmp_path, evaluation):
    _, _, metrics = evaluation
    with pytest.raises(FileNotFoundError, match="nothing.png"):
        write_report(tmp_path, metrics, {"roc": tmp_path / "nothing.png"}, title="x")


def test_training_curves_from_partial_log(tmp_path):
    log = tmp_path / "log.csv"
    pd.DataFrame({"epoch": [1, 2, 3], "loss": [1.0, 0.8, 0.7]}).to_csv(log, index=False)
    path = plot_training_curves(log, tmp_path / "curves.png")
    assert path.read_bytes()[:4] == PNG_MAGIC
    pd.DataFrame({"epoch": [1], "note": ["x"]}).to_csv(log, index=False)
    with pytest.raises(ValueError, match="no loss, accuracy or lr column"):
        plot_training_curves(log, tmp_path / "curves.png")


# -- the words say what is true of this model -------------------------------------------------------------


def _card(**fields):
    defaults = {"temperature": 1.0, "abstain": {}, "limitations": []}
    return SimpleNamespace(**{**defaults, **fields})


def test_calibration_advice_knows_whether_a_temperature_was_fitted(evaluation):
    _, _, metrics = evaluation
    poorly_calibrated = dataclasses.replace(metrics, ece=0.2)
    assert "Fit a calibration temperature" in " ".join(recommendations(poorly_calibrated))
    fitted = " ".join(recommendations(poorly_calibrated, _card(temperature=0.537)))
    assert "Fit a calibration temperature" not in fitted
    assert "still off after the fitted calibration temperature (0.54" in fitted


def test_the_closing_caution_uses_the_cards_own_training_data(evaluation):
    _, _, metrics = evaluation
    card = _card(limitations=["Trained on 763 clinical photos collected from the web; small."])
    advice = recommendations(metrics, card)[-1]
    assert "decision support" in advice and "763 clinical photos" in advice
    assert "dermoscopy" not in advice and "HAM10000" not in advice
    assert "no abstain rule" in advice
    assert (
        "abstain rule declines" in recommendations(metrics, _card(limitations=["x"], abstain={"rule": 1}))[-1]
    )
    assert "HAM10000" not in recommendations(metrics)[-1]  # no card: no claim about the training data


def test_the_shipped_msid_card_is_not_described_as_dermoscopy(evaluation):
    folder = Path(__file__).resolve().parents[3] / "models" / "pretrained" / "msid"
    if not (folder / "model_card.json").is_file():
        pytest.skip("models/pretrained/msid is not in this checkout")
    from edge.bundle import read_card

    advice = " ".join(recommendations(evaluation[2], read_card(folder / "model_card.json")))
    assert "dermoscopy" not in advice and "clinical photos" in advice


@pytest.mark.parametrize(
    "low, high, expected",
    [
        (0.2512, 0.2549, ("25.1%", "25.5%")),
        (0.2501, 0.2503, ("25.01%", "25.03%")),
        (0.61, 0.74, ("61%", "74%")),
        (0.25, 0.25, ("25.000%", "25.000%")),
    ],
)
def test_intervals_are_printed_to_the_precision_that_tells_the_bounds_apart(low, high, expected):
    assert format_interval(low, high) == expected


def test_a_narrow_interval_is_not_anywhere_from_25_to_25(evaluation):
    _, _, metrics = evaluation
    narrow = dataclasses.replace(metrics, balanced_accuracy_interval=(0.2512, 0.2549))
    text = " ".join(interpret(narrow))
    assert "anywhere from 25.1% to 25.5%" in text and "25% to 25%" not in text
