"""Risk bands come from the card's operating points, and say in plain words what a band has meant."""

from __future__ import annotations

import dataclasses

import pytest

from edge.card import ModelCard
from edge.tasks import HAM10000_CLASSES
from edge.preprocess import InputSpec
from gradio_app import bands, texts

OLD_CARD = ModelCard(
    name="skinlesion-ham10000",
    version="1.0.0",
    created="",
    task="dermoscopic images, 7 classes",
    classes=HAM10000_CLASSES,
    input=InputSpec(224, 224),
)
FITTED = {
    "screening": {"threshold": 0.12, "sensitivity": 0.91, "specificity": 0.55, "fitted_on": "val"},
    "high": {"threshold": 0.45, "sensitivity": 0.7, "specificity": 0.85, "fitted_on": "val"},
}
FITTED_CARD = dataclasses.replace(OLD_CARD, operating_points=FITTED)


@pytest.mark.parametrize(
    "probability, band",
    [(0.11, "low"), (0.12, "moderate"), (0.19, "moderate"), (0.44, "moderate"), (0.45, "high")],
)
def test_band_thresholds_are_read_from_the_card(probability, band):
    assert texts.risk_band(probability, FITTED_CARD).name == band


def test_a_new_release_moves_the_bands_with_its_card():
    moved = dataclasses.replace(
        FITTED_CARD,
        operating_points={
            "screening": {**FITTED["screening"], "threshold": 0.3},
            "high": {**FITTED["high"], "threshold": 0.6},
        },
    )
    assert texts.risk_band(0.25, FITTED_CARD).name == "moderate"
    assert texts.risk_band(0.25, moved).name == "low"


def test_fitted_bands_say_what_they_mean_in_plain_words():
    scale = bands.risk_scale(FITTED_CARD)
    low, moderate, high = (band.meaning for band in scale.bands)
    assert scale.fitted
    assert moderate == (
        "About 9 in 10 skin cancers land here or higher, and so do about 4 in 10 harmless "
        "spots: many spots here turn out harmless."
    )
    assert high == "About 7 in 10 skin cancers land here, and only about 2 in 10 harmless spots do."
    assert "about 1 in 10 skin cancers also landed here" in low and "does not rule skin cancer out" in low


def test_the_badge_shows_the_band_and_its_meaning():
    badge = texts.risk_html(0.2, FITTED_CARD)
    assert "<b>Moderate</b>" in badge and "20%" in badge
    assert "About 9 in 10 skin cancers land here or higher" in badge


def test_a_card_without_operating_points_says_its_thresholds_are_defaults():
    scale = bands.risk_scale(OLD_CARD)
    assert not scale.fitted
    assert [band.lower for band in scale.bands] == [0.0, bands.DEFAULT_SCREENING, 0.5]
    assert all(
        "default thresholds (20% and 50%), not ones fitted for this model" in band.meaning
        for band in scale.bands
    )
    assert "default thresholds" in texts.risk_html(0.3, OLD_CARD)


def test_without_operating_points_the_high_band_starts_at_the_cards_malignant_threshold():
    card = dataclasses.replace(OLD_CARD, malignant_threshold=0.4)
    assert texts.risk_band(0.39, card).name == "moderate"
    assert texts.risk_band(0.4, card).name == "high"


@pytest.mark.parametrize(
    "points, message",
    [
        (
            {"screening": {"sensitivity": 0.9}, "high": {"threshold": 0.5}},
            "'screening' needs a numeric 'threshold'",
        ),
        ({"screening": {"threshold": 1.2}, "high": {"threshold": 0.5}}, "strictly between 0 and 1, got 1.2"),
        ({"screening": {"threshold": 0.6}, "high": {"threshold": 0.5}}, "must lie below the high one"),
    ],
)
def test_malformed_operating_points_are_refused_with_the_value(points, message):
    with pytest.raises(ValueError, match=message):
        bands.risk_scale(dataclasses.replace(OLD_CARD, operating_points=points))


def test_the_model_page_lists_the_bands_and_where_their_thresholds_come_from():
    fitted, old = texts.card_markdown(FITTED_CARD), texts.card_markdown(OLD_CARD)
    assert "Thresholds fitted for this model on its validation images." in fitted
    assert "| Moderate | 12% | About 9 in 10 skin cancers" in fitted
    assert "Default thresholds: this model's card does not carry fitted operating points." in old


@pytest.mark.parametrize(
    "share, words",
    [(0.91, "about 9 in 10"), (0.97, "almost all"), (0.02, "almost none"), (0.06, "about 1 in 10")],
)
def test_shares_read_as_in_ten(share, words):
    assert bands.in_ten(share) == words
