"""The report renders: plots exist, the HTML stands alone, and the words follow the numbers."""

from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd
import pytest

from build.metrics import evaluate
from build.report import (
    PLOT_FILES,
    interpret,
    make_plots,
    plot_training_curves,
    recommendations,
    write_report,
)

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
