"""Calibration and the abstain head inside the exported file: what MediaPipe Tasks returns on a phone."""

from __future__ import annotations

import numpy as np
import pytest

from converters.validate import ParityGate, check_gate, run_tflite, validate_tflite
from edge.classifier import apply_temperature
from edge.preprocess import normalize
from tests.conftest import TINY_LABELS, TINY_SPEC, tiny_training_set
from tests.converters.conftest import DISPLAY_NAMES

TEMPERATURE = 0.5  # far from 1, so a missing or doubled fold shows


def _noise_images(n: int = 8, seed: int = 0) -> list[np.ndarray]:
    from build.make.negatives import synthetic_images

    return [
        image
        for images in synthetic_images(n // 4 or 1, (TINY_SPEC.height, TINY_SPEC.width), seed=seed).values()
        for image in images
    ]


@pytest.fixture(scope="session")
def heads(tiny_keras_model, qat_model_path):
    """AbstainHead fitted on the float model's features, and one on the QAT model's; it learns to refuse
    another draw of synthetic images than the tests show it."""
    from converters.abstain_head import fit_abstain_head
    from converters.export import load_keras_model

    train, train_labels = tiny_training_set()
    val, val_labels = tiny_training_set(n_per_class=12, seed=2)
    return {
        source: fit_abstain_head(
            model,
            list(train),
            list(val),
            _noise_images(40, seed=1),
            input_spec=TINY_SPEC,
            train_labels=train_labels,
            val_labels=val_labels,
            # The tiny model pools 3 classes into few features: at the shipped default (0.003) one
            # class's fresh images sit on the limit in float already, and int8 then refuses half of them.
            regularization=0.001,
        )
        for source, model in (("float", tiny_keras_model), ("qat", load_keras_model(qat_model_path)))
    }


@pytest.fixture(scope="session")
def safe_exports(tmp_path_factory, tiny_keras_model, qat_model_path, calibration_pixels, heads):
    """Files exported with the temperature folded in and the abstain head: float32, float16, int8 (PTQ
    and QAT)."""
    from converters.export import export_tflite
    from converters.quantization import QuantizationConfig

    folder = tmp_path_factory.mktemp("safe")
    jobs = {
        "float32": (tiny_keras_model, QuantizationConfig.for_float32(), heads["float"]),
        "float16": (tiny_keras_model, QuantizationConfig.for_float16(), heads["float"]),
        "int8": (tiny_keras_model, QuantizationConfig.for_int8(calibration_pixels), heads["float"]),
        "int8-qat": (qat_model_path, QuantizationConfig.for_int8(None), heads["qat"]),
    }
    return {
        name: export_tflite(
            model,
            folder / f"{name}.tflite",
            config,
            input_spec=TINY_SPEC,
            labels=TINY_LABELS,
            display_names=DISPLAY_NAMES,
            temperature=TEMPERATURE,
            abstain_head=head,
        )
        for name, (model, config, head) in jobs.items()
    }


def test_the_file_returns_calibrated_scores_and_the_model_is_left_as_it_was(
    tmp_path, tiny_keras_model, exported, safe_exports, validation_set
):
    pixels, _ = validation_set
    before = np.asarray(tiny_keras_model(normalize(pixels[:4], TINY_SPEC)))
    plain, _ = run_tflite(exported["float32"].path, pixels, TINY_SPEC)
    calibrated, _ = run_tflite(safe_exports["float32"].path, pixels, TINY_SPEC)
    np.testing.assert_allclose(calibrated, apply_temperature(plain, TEMPERATURE), atol=1e-4)
    assert calibrated.max(axis=1).mean() > plain.max(axis=1).mean()  # T < 1 sharpens
    np.testing.assert_allclose(np.asarray(tiny_keras_model(normalize(pixels[:4], TINY_SPEC))), before)
    assert safe_exports["float32"].temperature == TEMPERATURE and safe_exports["float32"].abstain_head


@pytest.mark.parametrize("variant", ["float32", "float16", "int8", "int8-qat"])
def test_calibrated_files_pass_their_gate_against_the_calibrated_reference(
    safe_exports, tiny_keras_model, qat_model_path, validation_set, variant
):
    pixels, labels = validation_set
    reference = qat_model_path if variant == "int8-qat" else tiny_keras_model
    report = validate_tflite(
        safe_exports[variant].path,
        reference,
        pixels,
        labels,
        input_spec=TINY_SPEC,
        variant=variant.split("-")[0],
        temperature=TEMPERATURE,
    )
    assert check_gate(report, ParityGate.for_variant(report.variant)) == []


@pytest.mark.parametrize("variant", ["int8", "int8-qat"])
def test_int8_files_with_both_heads_stay_full_integer(safe_exports, variant):
    result = safe_exports[variant]
    assert (result.input_dtype, result.output_dtype, result.float_tensors) == ("uint8", "uint8", 0)


def _uniform_noise(n: int, seed: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return list(rng.integers(0, 256, (n, TINY_SPEC.height, TINY_SPEC.width, 3), dtype=np.uint8))


@pytest.mark.parametrize("variant", ["float32", "float16", "int8", "int8-qat"])
def test_the_files_head_decides_as_the_fitted_head_answers_training_like_images_and_refuses_noise(
    safe_exports, heads, tiny_keras_model, qat_model_path, variant
):
    from ai_edge_litert.interpreter import Interpreter

    from converters.abstain_head import pooled_features, with_quantization_aware_head
    from converters.export import load_keras_model

    interpreter = Interpreter(model_path=str(safe_exports[variant].path))
    interpreter.allocate_tensors()
    source, (scores, head) = interpreter.get_input_details()[0], interpreter.get_output_details()
    assert (int(scores["shape"][-1]), int(head["shape"][-1])) == (len(TINY_LABELS), 2)

    def other(pixels: np.ndarray) -> float:
        tensor = pixels[None] if source["dtype"] == np.uint8 else normalize(pixels, TINY_SPEC)[None]
        interpreter.set_tensor(source["index"], tensor.astype(source["dtype"]))
        interpreter.invoke()
        scale, zero_point = head["quantization"]
        value = interpreter.get_tensor(head["index"]).astype(np.float64)[0, 1]
        return (value - zero_point) * scale if scale else value

    # Fresh training-like images, synthetic images of every kind and uniform noise: the file refuses
    # where its source graph refuses (the head in numpy on the float model's features; for QAT, the
    # fake-quantized two-headed model the converter reads).
    shaded, _ = tiny_training_set(n_per_class=10, seed=5)
    images = list(shaded) + _noise_images(20) + _uniform_noise(10)
    if variant == "int8-qat":
        graph = with_quantization_aware_head(load_keras_model(qat_model_path), heads["qat"])
        expected = np.asarray(graph(normalize(np.stack(images), TINY_SPEC))[1])[:, 1]
    else:
        expected = heads["float"].scores(pooled_features(tiny_keras_model, images, TINY_SPEC))[:, 1]
    got = np.array([other(image) for image in images])
    agreement = np.mean((got >= 0.5) == (expected >= 0.5))
    assert agreement >= {"int8": 0.9, "int8-qat": 0.95}.get(variant, 0.98)
    # The limit keeps 96.5 % of validation images. The float head answers 87 % of these fresh ones, a
    # tenth of which sit within rounding of the limit; the post-training int8 file reads the tiny model's
    # 16 pooled features on coarse levels, so those round either way.
    answered = {"int8": 0.75}.get(variant, 0.8)
    assert np.mean(got[: len(shaded)] < 0.5) >= answered
    assert np.all(got[-10:] >= 0.5)


@pytest.mark.parametrize("variant", ["int8-qat", "float32"])
def test_mediapipe_returns_the_abstain_head_as_the_second_classification(safe_exports, variant):
    import mediapipe as mp

    vision = pytest.importorskip("mediapipe.tasks.python.vision", reason="MediaPipe Tasks is not installed")
    from mediapipe.tasks.python import BaseOptions

    options = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_path=str(safe_exports[variant].path)), max_results=-1
    )
    shaded, labels = tiny_training_set(n_per_class=3, seed=7)
    expected, _ = run_tflite(safe_exports[variant].path, shaded, TINY_SPEC)
    answered = []
    with vision.ImageClassifier.create_from_options(options) as classifier:

        def classify(pixels):
            return classifier.classify(
                mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(pixels))
            ).classifications

        for pixels, label, scores in zip(shaded, labels, expected):
            scores_head, abstain = classify(pixels)
            assert scores_head.categories[0].category_name == TINY_LABELS[label]
            tolerance = 1 / 256 + 1e-6 if variant.startswith("int8") else 1e-4
            got = {c.category_name: c.score for c in scores_head.categories}
            np.testing.assert_allclose([got[code] for code in TINY_LABELS], scores, atol=tolerance)
            assert abstain.head_name == "in_distribution"
            assert {c.category_name for c in abstain.categories} == {"dermoscopy", "other"}
            answered.append(abstain.categories[0].category_name == "dermoscopy")
        assert np.mean(answered) >= 0.75  # the threshold keeps 96.5 % of validation images
        for pixels in _uniform_noise(4):
            assert classify(pixels)[1].categories[0].category_name == "other"


def test_the_metadata_names_both_heads(safe_exports):
    from converters.metadata import read_metadata

    metadata = read_metadata(safe_exports["int8"].path.read_bytes())
    assert metadata.labels == TINY_LABELS
    assert metadata.heads == ("probability", "in_distribution")
    assert metadata.abstain_labels == ("dermoscopy", "other")


def test_a_head_fitted_on_another_model_is_refused(heads):
    import dataclasses

    from converters.abstain_head import with_abstain_head
    from tests.conftest import _build_tiny_model

    wrong = dataclasses.replace(heads["float"], weights=np.zeros(5))
    with pytest.raises(ValueError, match="fitted on 5 features"):
        with_abstain_head(_build_tiny_model(), wrong)


def test_a_non_positive_temperature_is_refused(tiny_keras_model):
    from converters.temperature import temperature_folded

    with pytest.raises(ValueError, match="positive finite number, got 0"):
        with temperature_folded(tiny_keras_model, 0):
            pass


def test_edge_refuses_with_the_files_own_head(safe_exports, tiny_images):
    from edge.classifier import Classifier

    classifier = Classifier(safe_exports["int8-qat"].path, labels=TINY_LABELS)
    assert classifier.has_abstain_head
    red = classifier.classify(tiny_images["red"])
    assert red.top.label == "rdl"
    noise = classifier.classify(_uniform_noise(1)[0])
    assert noise.abstained and "abstain head" in noise.abstain_reason


def test_the_limit_answers_each_class_alike_when_the_labels_are_given():
    from converters.abstain_head import answering_limit

    # 90 common images scoring low, 10 of a rare class scoring high: a plain 90 % quantile refuses the
    # rare class entirely, the per-class limit answers 90 % of each class on average.
    logits = np.r_[np.linspace(-5, -1, 90), np.linspace(0, 2, 10)]
    labels = np.r_[np.zeros(90, int), np.ones(10, int)]
    plain = answering_limit(logits, 0.9)
    assert np.mean(logits[labels == 1] <= plain) == 0.0
    balanced = answering_limit(logits, 0.9, labels)
    shares = [np.mean(logits[labels == c] <= balanced) for c in (0, 1)]
    assert np.mean(shares) >= 0.9 and min(shares) >= 0.8


def test_labels_that_do_not_match_the_images_are_refused(tiny_keras_model):
    from converters.abstain_head import fit_abstain_head

    train, labels = tiny_training_set(n_per_class=4)
    with pytest.raises(ValueError, match="train_labels has 3 entries for 12 images"):
        fit_abstain_head(
            tiny_keras_model,
            list(train),
            list(train),
            _noise_images(8),
            input_spec=TINY_SPEC,
            train_labels=labels[:3],
        )


def test_the_build_gates_the_exported_files_head_on_what_it_answers_and_refuses(safe_exports):
    from build.config import ExportConfig
    from build.make.head_gate import head_failures, measure_head

    shaded, _ = tiny_training_set(n_per_class=10, seed=5)
    checks = measure_head(safe_exports["int8-qat"].path, TINY_SPEC, shaded, _uniform_noise(10))
    assert checks["n_val"] == 30 and checks["n_negatives"] == 10 and checks["n_synthetic"] == 200
    assert checks["val_answered"] >= 0.8 and checks["negatives_refused"] == 1.0
    export = ExportConfig(abstain_negatives=("clinical-photos",))
    passing = {**checks, "val_answered": 0.97, "negatives_refused": 0.95, "synthetic_refused": 1.0}
    assert head_failures("int8", passing, export) == []
    missed = head_failures(
        "int8", {**checks, "val_answered": 0.9, "negatives_refused": 0.5, "synthetic_refused": 0.99}, export
    )
    assert len(missed) == 3 and all(m.startswith("int8: the abstain head") for m in missed)
    assert "abstain_min_answered" in missed[0] and "clinical-photos" in missed[1] and "synthetic" in missed[2]


def _features_leaning_on_one_feature(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled features (training, validation, negatives) where one feature barely varies on lesions and
    sets the negatives apart, while the rest of the evidence is spread thinly over 400 features: the
    regression leans on the one with a weight over 50x its 99th percentile, as a distilled QAT model's did."""
    rng = np.random.default_rng(seed)

    def draw(n: int, negative: bool) -> np.ndarray:
        features = np.abs(rng.normal(1.0, 0.6, (n, 1280)))
        features[:, :400] += 0.1 if negative else 0.0
        features[:, 0] = rng.normal(2.5 if negative else 0.5, 0.15, n)
        return features.astype(np.float32)

    return draw(1500, False), draw(500, False), draw(500, True)


def test_the_int8_head_answers_what_it_was_fitted_to_when_one_weight_dominates():
    from ai_edge_litert.interpreter import Interpreter

    from converters.abstain_head import fit_on_features, pin_int8_ranges, with_abstain_head
    from models.keras import keras, tf

    train, val, negative = _features_leaning_on_one_feature()
    head = fit_on_features(train, val, negative)
    pooled = keras.Input((train.shape[1],))
    classifier = keras.Model(pooled, keras.layers.Dense(3, activation="softmax")(pooled))
    converter = tf.lite.TFLiteConverter.from_keras_model(with_abstain_head(classifier, head))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.representative_dataset = lambda: ([row[None]] for row in train[:300])
    interpreter = Interpreter(model_content=pin_int8_ranges(converter.convert()))
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    (output,) = [details for details in interpreter.get_output_details() if details["shape"][-1] == 2]

    def refused(features: np.ndarray) -> np.ndarray:
        other = []
        for row in features:
            interpreter.set_tensor(source["index"], row[None])
            interpreter.invoke()
            other.append(interpreter.get_tensor(output["index"])[0, 1])
        return np.array(other) >= 0.5

    # The fitted head answers 96.5 % of validation; per-tensor rounding of its kernel used to leave the
    # file answering 66 % of them.
    assert head.val_accepted >= 0.96
    assert np.mean(~refused(val)) >= 0.95
    assert np.mean(refused(negative)) >= 0.99


def test_the_int8_kernel_refuses_no_fewer_negatives_than_the_regression_it_holds():
    from converters.abstain_head import INT8_KERNEL_LEVELS, answering_limit, int8_kernel_weights

    # A fine-tuned model's regression: heavy-tailed weights over 1,280 non-negative pooled features, the
    # negatives set apart along many of them. Kept whole, the largest weights span the kernel's 255
    # levels and the rest round to a few steps; scored by how far the logits move, the bound kept them
    # and the file refused fewer negatives than the float regression (as three MSID runs measured).
    rng = np.random.default_rng(5)
    features = 1280
    weights = rng.standard_t(2, features) * 0.05
    scale = np.abs(rng.normal(1.0, 0.5, features)) + 0.05
    apart = rng.normal(0, 1, features) * scale * 0.15 + np.sign(weights) * 0.1 * scale
    val = np.abs(rng.normal(1, 1, (1000, features))) * scale
    negative = np.abs(rng.normal(1, 1, (600, features))) * scale + apart
    bias = -float(np.median(val @ weights))

    def refused(kernel: np.ndarray) -> float:
        limit = answering_limit(val @ kernel + bias, 0.965)
        return float(np.mean(negative @ kernel + bias > limit))

    kernel = int8_kernel_weights(weights, bias, val, negative)
    assert refused(kernel) >= refused(weights)
    assert len(np.unique(np.abs(kernel))) <= INT8_KERNEL_LEVELS + 1  # on one 255-level grid


def test_of_several_strengths_the_head_takes_the_one_that_refuses_new_negatives_best():
    from converters.abstain_head import fit_on_features

    # Few negative photos, each in three near-identical views: a close fit memorizes them. Scored on its
    # own negatives, or with one photo's views split across folds, the loosest fit looks best.
    rng = np.random.default_rng(0)
    features = 200
    apart = np.r_[np.full(20, 0.5), np.zeros(features - 20)]

    def negatives(photos: int) -> tuple[np.ndarray, np.ndarray]:
        base = rng.normal(0, 1, (photos, features)) + apart
        views = [base + rng.normal(0, 0.2, base.shape) for _ in range(3)]
        return np.concatenate(views), np.tile(np.arange(photos), 3)

    train, val = rng.normal(0, 1, (900, features)), rng.normal(0, 1, (500, features))
    negative, groups = negatives(80)
    new, _ = negatives(400)
    candidates = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 1.0)
    fixed = {c: fit_on_features(train, val, negative, regularization=c) for c in candidates}
    refused_new = {c: float(np.mean(head.logit(new) > 0)) for c, head in fixed.items()}
    closest_fit = max(candidates, key=lambda c: fixed[c].negative_refused)

    head = fit_on_features(train, val, negative, regularization=candidates, negative_groups=groups)
    assert np.mean(head.logit(new) > 0) >= max(refused_new.values()) - 0.03
    assert np.mean(head.logit(new) > 0) > refused_new[closest_fit] + 0.03
    ungrouped = fit_on_features(train, val, negative, regularization=candidates)
    assert np.mean(head.logit(new) > 0) > np.mean(ungrouped.logit(new) > 0) + 0.03
    card = head.to_card()
    assert card["regularization"] == head.regularization
    assert set(card["cross_validated_refused"]) == {str(c) for c in candidates}
