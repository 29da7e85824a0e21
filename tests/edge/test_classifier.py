"""Classifying synthetic images: ranking, calibration, malignant probability, abstain, TTA, labels."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from edge.card import ClassInfo
from edge.classifier import Classifier, apply_temperature
from edge.errors import ImageError, SkinlesionError
from edge.preprocess import normalize
from tests.edge.conftest import CLASSES, LABELS, SPEC, asymmetric, solid


@pytest.fixture(scope="module")
def float_classifier(edge_bundle):
    return Classifier(edge_bundle, variant="float32")


@pytest.mark.parametrize("colour", ["red", "green", "blue"])
def test_solid_colours_get_their_class_ranked_first(float_classifier, colour):
    prediction = float_classifier.classify(solid(colour))
    assert prediction.top.label == colour
    assert prediction.top.score > 0.95
    assert [c.label for c in prediction.categories] != [] and len(prediction.categories) == 3
    scores = [c.score for c in prediction.categories]
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0, abs=1e-6)
    assert prediction.top.display_name == {c.code: c.display_name for c in CLASSES}[colour]


def test_tflite_matches_the_keras_model_on_the_same_pixels(float_classifier, tiny_models):
    pixels = float_classifier.preprocess(asymmetric())
    expected = tiny_models.keras_model(normalize(pixels, SPEC)[None]).numpy()[0]
    got = float_classifier.probabilities_from_pixels(pixels)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_keras_backend_runs_the_reference(edge_bundle, float_classifier):
    keras_classifier = Classifier(edge_bundle, backend="keras")
    assert keras_classifier.interpreter_name == "tf_keras" and keras_classifier.variant == "reference"
    image = asymmetric()
    np.testing.assert_allclose(
        keras_classifier.probabilities(image), float_classifier.probabilities(image), atol=1e-5
    )


def test_keras_backend_averages_the_views_the_bundles_files_take(make_bundle, tiny_models):
    keras_classifier = Classifier(make_bundle(("reference",), test_time_views=8), backend="keras")
    pixels = keras_classifier.preprocess(asymmetric())
    turned = pixels.transpose(1, 0, 2)
    views = [
        image[::dy, ::dx] for image in (pixels, turned) for dy, dx in ((1, 1), (1, -1), (-1, 1), (-1, -1))
    ]
    expected = np.mean(
        [tiny_models.keras_model(normalize(np.ascontiguousarray(v), SPEC)[None]).numpy()[0] for v in views],
        axis=0,
    )
    assert np.abs(expected - tiny_models.keras_model(normalize(pixels, SPEC)[None]).numpy()[0]).max() > 1e-3
    np.testing.assert_allclose(keras_classifier.probabilities_from_pixels(pixels), expected, atol=1e-5)
    # Test-time augmentation asks for the mean of the same 8 views: it is not computed 8 times over.
    calls, run = [], keras_classifier.model.run
    keras_classifier.model.run = lambda tensor: calls.append(tensor.shape) or run(tensor)
    np.testing.assert_allclose(
        keras_classifier.probabilities_from_pixels(pixels, tta=True), expected, atol=1e-5
    )
    assert len(calls) == 1


def test_int8_with_uint8_input_agrees_with_float(edge_bundle, float_classifier):
    int8 = Classifier(edge_bundle)  # int8 is preferred
    assert int8.variant == "int8"
    assert int8.model.input.dtype == np.uint8 and int8.model.output.dtype == np.int8
    for image in (solid("red"), solid("green"), solid("blue"), asymmetric()):
        np.testing.assert_allclose(
            int8.probabilities(image), float_classifier.probabilities(image), atol=0.03
        )


def test_malignant_probability_sums_the_malignant_classes(make_bundle):
    classes = (CLASSES[0], ClassInfo("green", "Green", True), CLASSES[2])
    prediction = Classifier(make_bundle(classes=classes)).classify(asymmetric())
    scores = {c.label: c.score for c in prediction.categories}
    assert prediction.malignant_probability == pytest.approx(scores["red"] + scores["green"])


def test_no_malignant_class_means_no_malignant_probability(make_bundle):
    classes = tuple(ClassInfo(c.code, c.display_name, False) for c in CLASSES)
    assert Classifier(make_bundle(classes=classes)).classify(solid("red")).malignant_probability is None


def test_temperature_softens_probabilities(make_bundle):
    image = solid("red")
    plain = Classifier(make_bundle()).probabilities(image)
    softened = Classifier(make_bundle(temperature=2.0)).probabilities(image)
    expected = np.exp(np.log(plain + 1e-7) / 2.0)
    np.testing.assert_allclose(softened, expected / expected.sum(), rtol=1e-4)
    assert softened.max() < plain.max() and softened.argmax() == plain.argmax()


def test_apply_temperature_math():
    probabilities = np.array([0.7, 0.2, 0.1])
    np.testing.assert_allclose(apply_temperature(probabilities, 1.0), probabilities, atol=1e-6)
    sharpened = apply_temperature(probabilities, 0.5)
    np.testing.assert_allclose(sharpened, probabilities**2 / (probabilities**2).sum(), atol=1e-6)
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(probabilities, 0.0)


def test_abstains_on_an_unsure_answer(make_bundle):
    classifier = Classifier(make_bundle(abstain={"min_confidence": 0.5}))
    grey = classifier.classify(solid("grey"))
    assert grey.abstained and "unsure" in grey.abstain_reason
    red = classifier.classify(solid("red"))
    assert not red.abstained and red.abstain_reason is None


def test_tta_averages_the_eight_views(float_classifier):
    pixels = asymmetric()
    views = [
        np.rot90(pixels, k)[:, ::-1] if flip else np.rot90(pixels, k) for k in range(4) for flip in (0, 1)
    ]
    expected = np.mean(
        [float_classifier.probabilities_from_pixels(np.ascontiguousarray(v)) for v in views], axis=0
    )
    with_tta = float_classifier.classify(pixels, tta=True)
    got = np.array([{c.label: c.score for c in with_tta.categories}[label] for label in LABELS])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert np.abs(got - float_classifier.probabilities(pixels)).max() > 1e-4  # the views do differ


def test_prediction_to_dict_is_json(float_classifier):
    data = json.loads(json.dumps(float_classifier.classify(solid("blue")).to_dict()))
    assert data["top"]["label"] == "blue" and data["categories"][0] == data["top"]
    assert set(data) == {
        "source",
        "top",
        "categories",
        "malignant_probability",
        "abstained",
        "abstain_reason",
    }
    assert data["source"].startswith("<array uint8")


def test_preprocess_is_the_crop_the_model_sees(float_classifier):
    pixels = float_classifier.preprocess(solid("red", 300, 400))
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8


def test_unreadable_image_names_its_source(float_classifier, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageError, match="broken.jpg"):
        float_classifier.classify(broken)


def test_encoded_images_classify_like_arrays(float_classifier):
    buffer = io.BytesIO()
    Image.fromarray(solid("green")).save(buffer, format="PNG")
    assert float_classifier.classify(buffer.getvalue()).top.label == "green"
    assert float_classifier.classify(Image.open(buffer)).top.label == "green"


def test_concurrent_calls_give_the_sequential_answers(float_classifier):
    images = [solid(c) for c in ("red", "green", "blue")] * 8 + [asymmetric(seed) for seed in range(8)]
    sequential = [float_classifier.probabilities(image) for image in images]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(float_classifier.probabilities, images))
    for a, b in zip(sequential, concurrent, strict=True):
        np.testing.assert_array_equal(a, b)


# -- bare .tflite files -------------------------------------------------------------------------------------


def test_bare_tflite_labels_from_argument_or_labels_txt(tiny_models, tmp_path):
    assert Classifier(tiny_models.float32, labels=LABELS).classify(solid("red")).top.label == "red"
    model = tmp_path / "model.tflite"
    shutil.copyfile(tiny_models.float32, model)
    (tmp_path / "labels.txt").write_text("r\ng\nb\n")
    classifier = Classifier(model)
    assert classifier.labels == ("r", "g", "b") and classifier.card is None and classifier.variant is None
    prediction = classifier.classify(solid("blue"))
    assert prediction.top.display_name == "b" and prediction.malignant_probability is None
    assert not prediction.abstained


def test_bare_tflite_labels_from_packed_metadata(tiny_models, tmp_path):
    model = tmp_path / "with_metadata.tflite"
    shutil.copyfile(tiny_models.int8, model)
    with zipfile.ZipFile(model, "a") as archive:  # how the TFLite metadata writer packs associated files
        archive.writestr("labels.txt", "\n".join(LABELS) + "\n")
    classifier = Classifier(model)
    assert classifier.labels == LABELS
    assert classifier.classify(solid("green")).top.label == "green"


def test_bare_tflite_without_or_with_wrong_labels(tiny_models, tmp_path):
    model = tmp_path / "model.tflite"
    shutil.copyfile(tiny_models.float32, model)
    with pytest.raises(SkinlesionError, match="no labels for"):
        Classifier(model)
    with pytest.raises(SkinlesionError, match="gives 2 labels but .* outputs 3"):
        Classifier(model, labels=["a", "b"])
    with pytest.raises(ValueError, match="selects a file inside a bundle"):
        Classifier(model, labels=LABELS, variant="int8")


def test_uint8_input_is_requantized_when_the_card_normalizes_differently(make_bundle, caplog):
    # A card saying "pixels / 255" while the int8 file's input quantization encodes x/127.5 - 1: raw pixels
    # would be wrong, so the runtime normalizes per the card, re-quantizes, and warns.
    spec = dataclasses.replace(SPEC, mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0))
    float32 = Classifier(make_bundle(("float32",), spec=spec))
    int8 = Classifier(make_bundle(("int8",), spec=spec))
    assert "re-quantizing" in caplog.text
    for image in (solid("red"), solid("blue"), asymmetric()):
        np.testing.assert_allclose(int8.probabilities(image), float32.probabilities(image), atol=0.03)


def test_keras_backend_refuses_interpreter_options(edge_bundle):
    with pytest.raises(ValueError, match="leave them out"):
        Classifier(edge_bundle, backend="keras", num_threads=2)


def test_temperature_applies_row_by_row_to_a_batch():
    from edge.classifier import apply_temperature

    batch = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    calibrated = apply_temperature(batch, 0.5)
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0)
    for row, expected in zip(batch, calibrated):
        np.testing.assert_allclose(apply_temperature(row, 0.5), expected)
