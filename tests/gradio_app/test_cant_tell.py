""" "I can't tell" in each shipped task's words: what was wrong with the photo, what to do, which model fits.

Run on the shipped cards and models, with the shared photos where this checkout has them.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from edge.card import CARD_FILE, ModelCard
from edge.preprocess import load_image
from gradio_app import photo_check, tasks, texts
from tests.gradio_app.conftest import PRETRAINED, RASH_PHOTO, TEST_SPLIT_MELANOMA, shared_photo

SHIPPED = ("ham10000", "msid")
JARGON = ("units", "dermatoscope", "dermoscop", "distance", "statistics", "limit is")


def shipped_card(name: str) -> ModelCard:
    return ModelCard.from_dict(json.loads((PRETRAINED / name / CARD_FILE).read_text()))


def pixels_of(image: Image.Image | str, card: ModelCard) -> np.ndarray:
    return load_image(image, card.input)


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("unlike_training", [True, False])
def test_each_shipped_task_abstains_in_plain_words(name, unlike_training):
    card = shipped_card(name)
    words = texts.cant_tell(card, unlike_training=unlike_training, problems=("The photo is too dark.",))

    assert words.startswith("### I can't tell from this photo")
    for jargon in JARGON:
        assert jargon not in words.lower(), jargon
    assert "see a doctor" in words
    for tip in tasks.task_texts(card).tips:
        assert tip in words
    lowered = words.lower()
    assert "sharp" in lowered and "light" in lowered  # what any patient can change


def test_the_skin_spot_model_asks_for_a_close_sharp_centred_photo():
    words = texts.cant_tell(shipped_card("ham10000"), unlike_training=True)
    assert "close-ups of single skin spots" in words
    assert "from close up" in words and "in the middle of the picture" in words


def test_the_rash_model_speaks_of_rashes_not_of_the_skin_spot_models_photos():
    words = texts.cant_tell(shipped_card("msid"), unlike_training=True)
    assert "photos of skin rashes this model learned from" in words
    assert "single skin spot" not in words and "mole" not in words


def test_an_unsure_model_says_so_without_blaming_the_photo():
    words = texts.cant_tell(shipped_card("ham10000"), unlike_training=False)
    assert "The model is unsure" in words and "does not look like" not in words


def test_the_other_model_is_offered_by_its_menu_name():
    words = texts.cant_tell(shipped_card("ham10000"), unlike_training=True, better=shipped_card("msid"))
    assert "This looks more like a photo of a skin rash" in words
    assert '"Rashes: mpox, measles, chickenpox"' in words and "Model menu" in words


def test_shipped_cards_pick_their_own_task_rows():
    assert tasks.task_texts(shipped_card("ham10000")).key == "ham10000"
    assert tasks.task_texts(shipped_card("msid")).key == "msid"
    renamed = ModelCard.from_dict({**shipped_card("msid").to_dict(), "name": "my-rash-model"})
    assert tasks.task_texts(renamed).key == "other"  # "clinical photos, 4 classes" names no task word


def test_menu_labels_fit_a_phone():
    for name in SHIPPED:
        assert len(tasks.menu_label(shipped_card(name), name)) <= 35


@pytest.fixture(scope="module")
def melanoma():
    return Image.open(shared_photo(TEST_SPLIT_MELANOMA)).convert("RGB")


def test_a_dark_photo_is_called_dark(melanoma):
    card = shipped_card("ham10000")
    dark = pixels_of(ImageEnhance.Brightness(melanoma).enhance(0.3), card)
    assert photo_check.refused_by_pixel_check(dark, card)
    assert photo_check.photo_problems(dark, card.abstain["pixel_check"])[0] == "The photo is too dark."


def test_a_spot_in_the_corner_is_called_off_centre(melanoma):
    card = shipped_card("ham10000")
    canvas = Image.new("RGB", (melanoma.width * 3, melanoma.height * 3), melanoma.getpixel((5, 5)))
    canvas.paste(melanoma, (0, 0))
    pixels = pixels_of(canvas, card)
    assert photo_check.refused_by_pixel_check(pixels, card)
    assert "The spot is not in the middle of the picture." in photo_check.photo_problems(
        pixels, card.abstain["pixel_check"]
    )


def test_a_good_close_up_shows_no_problem(melanoma):
    card = shipped_card("ham10000")
    pixels = pixels_of(melanoma, card)
    assert not photo_check.refused_by_pixel_check(pixels, card)
    assert photo_check.better_fit(pixels, "ham10000", {name: shipped_card(name) for name in SHIPPED}) is None


def test_a_rash_photo_refused_by_the_skin_spot_model_is_offered_to_the_rash_model():
    cards = {name: shipped_card(name) for name in SHIPPED}
    pixels = pixels_of(str(shared_photo(RASH_PHOTO)), cards["ham10000"])
    assert photo_check.refused_by_pixel_check(pixels, cards["ham10000"])
    assert photo_check.better_fit(pixels, "ham10000", cards) == "msid"
    assert photo_check.better_fit(pixels, "msid", cards) is None  # the rash model answers it itself


def test_the_page_abstains_on_a_rash_photo_in_the_skin_spot_models_words_and_offers_the_rash_model(
    shipped_models,
):
    from gradio_app.server import AppConfig
    from gradio_app.service import Service

    service = Service(shipped_models, AppConfig())
    upload = {"path": str(shared_photo(RASH_PHOTO)), "orig_name": "arm.png"}
    label, risk, advice, crop, raw = service.analyse(upload, "ham10000")

    assert raw["abstained"] and label == texts.CANT_TELL_LABEL and risk == ""
    assert "close-ups of single skin spots" in advice and '"Rashes: mpox, measles, chickenpox"' in advice
    for jargon in JARGON:
        assert jargon not in advice.lower(), jargon
    button = service.offer(crop, raw, "ham10000")
    assert button["visible"] and button["value"] == "Ask the rash model instead"
    assert service.switch(crop, raw, "ham10000")["value"] == "msid"


def test_the_rash_model_refuses_noise_in_its_own_words(shipped_models, tmp_path):
    from gradio_app.server import AppConfig
    from gradio_app.service import Service

    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)).save(noise)
    _, _, advice, _, raw = Service(shipped_models, AppConfig()).analyse(
        {"path": str(noise), "orig_name": "noise.png"}, "msid"
    )

    assert raw["abstained"]
    assert "photos of skin rashes this model learned from" in advice
    assert "dermoscop" not in advice.lower() and "skin spots" not in advice
