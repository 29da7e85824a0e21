"""Test-time views in the graph: the file returns the mean of the model's scores over mirror images, the
int8 file stays full-integer with each view at the QAT model's input levels, and MediaPipe reads it."""

from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from converters.export import export_tflite, load_keras_model
from converters.quantization import QuantizationConfig
from converters.validate import run_tflite, validate_tflite
from converters.views import check_views
from edge.preprocess import InputSpec, normalize
from tests.conftest import TINY_LABELS, TINY_SPEC, tiny_training_set


def _numpy_views(pixels: np.ndarray, views: int) -> list[np.ndarray]:
    """The dihedral views, written independently of converters.views."""
    flips = [pixels, pixels[:, :, ::-1], pixels[:, ::-1], pixels[:, ::-1, ::-1]]
    turned = pixels.transpose(0, 2, 1, 3)
    flips += [turned, turned[:, :, ::-1], turned[:, ::-1], turned[:, ::-1, ::-1]]
    return [np.ascontiguousarray(v) for v in flips[:views]]


def _lopsided_images(n: int = 12) -> np.ndarray:
    """Training-like images with a bright corner, so that every view looks different to the model."""
    pixels, _ = tiny_training_set(n_per_class=n // 3, seed=5)
    pixels = pixels.copy()
    pixels[:, :8, :12] = 255
    return pixels


@pytest.fixture(scope="module")
def view_files(tmp_path_factory, tiny_keras_model, qat_model_path):
    folder = tmp_path_factory.mktemp("views")
    jobs = {
        "float32-8": (tiny_keras_model, QuantizationConfig.for_float32(), 8),
        "float32-1": (tiny_keras_model, QuantizationConfig.for_float32(), 1),
        "int8-qat-4": (qat_model_path, QuantizationConfig.for_int8(None), 4),
    }
    return {
        name: export_tflite(
            model, folder / f"{name}.tflite", config, input_spec=TINY_SPEC, labels=TINY_LABELS, views=views
        )
        for name, (model, config, views) in jobs.items()
    }


def test_the_file_returns_the_mean_of_the_models_scores_over_the_views(view_files, tiny_keras_model):
    pixels = _lopsided_images()
    expected = np.mean(
        [np.asarray(tiny_keras_model(normalize(v, TINY_SPEC))) for v in _numpy_views(pixels, 8)], axis=0
    )
    got, io_types = run_tflite(view_files["float32-8"].path, pixels, TINY_SPEC)
    assert io_types == ("float32", "float32") and view_files["float32-8"].views == 8
    np.testing.assert_allclose(got, expected, atol=1e-5)
    single, _ = run_tflite(view_files["float32-1"].path, pixels, TINY_SPEC)
    assert np.abs(single - got).max() > 1e-3  # the views change the scores: they are not all one image
    # Weights are stored once, however many views the file takes: the views add a few ops, not a copy.
    assert view_files["float32-8"].bytes - view_files["float32-1"].bytes < 4096


def test_an_int8_file_with_views_stays_full_integer_and_follows_its_qat_model(view_files, qat_model_path):
    result = view_files["int8-qat-4"]
    assert (result.input_dtype, result.output_dtype) == ("uint8", "uint8") and result.float_tensors == 0
    interpreter = Interpreter(model_path=str(result.path))
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()
    (quantize,) = [
        op for op in ops if op["op_name"] == "QUANTIZE" and tensors[op["inputs"][0]]["dtype"] == np.uint8
    ]  # the uint8 photo into int8
    copies = [op for op in ops if op["op_name"] in ("REVERSE_V2", "CONCATENATION")]
    assert len(copies) == 4  # three mirror images and the batch of four
    # Every view reaches the network at the levels the QAT model trained on, not only the first.
    levels = tensors[quantize["outputs"][0]]["quantization"]
    assert {tensors[op["outputs"][0]]["quantization"] for op in copies} == {levels}

    pixels, labels = tiny_training_set(n_per_class=12, seed=2)
    report = validate_tflite(
        result.path, qat_model_path, pixels, labels, input_spec=TINY_SPEC, variant="int8", views=4
    )
    assert report.top1_agreement >= 0.95 and report.mean_abs_diff < 0.03


def test_mediapipe_scores_one_photo_as_the_batched_check_does(view_files):
    import mediapipe as mp

    vision = pytest.importorskip("mediapipe.tasks.python.vision", reason="MediaPipe Tasks is not installed")
    from mediapipe.tasks.python import BaseOptions

    path = view_files["int8-qat-4"].path
    pixels = _lopsided_images(6)
    expected, _ = run_tflite(path, pixels, TINY_SPEC)  # batches of several images through the views
    options = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_path=str(path)), max_results=-1
    )
    with vision.ImageClassifier.create_from_options(options) as classifier:
        for image, scores in zip(pixels, expected):
            result = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=image))
            got = {c.category_name: c.score for c in result.classifications[0].categories}
            np.testing.assert_allclose([got[code] for code in TINY_LABELS], scores, atol=1 / 256 + 1e-6)


def test_view_counts_the_input_cannot_take_are_refused(tiny_keras_model, tmp_path):
    with pytest.raises(ValueError, match="one of 1, 2, 4, 8"):
        check_views(3, TINY_SPEC)
    wide = InputSpec(height=24, width=32, mean=TINY_SPEC.mean, std=TINY_SPEC.std)
    with pytest.raises(ValueError, match="square input.*24x32: use 4 views"):
        check_views(8, wide)
    check_views(4, wide)
    with pytest.raises(ValueError, match="got 6"):
        export_tflite(
            load_keras_model(tiny_keras_model),
            tmp_path / "six.tflite",
            QuantizationConfig.for_float32(),
            input_spec=TINY_SPEC,
            labels=TINY_LABELS,
            views=6,
        )
    assert not (tmp_path / "six.tflite").exists()
