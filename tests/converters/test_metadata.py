"""Metadata: MediaPipe Tasks' ImageClassifier reads our class names and normalization from the file."""

import numpy as np
import pytest

from converters.metadata import add_metadata, read_metadata
from converters.validate import run_tflite
from edge.preprocess import load_image
from tests.conftest import TINY_LABELS, TINY_SPEC
from tests.converters.conftest import DISPLAY_NAMES

vision = pytest.importorskip("mediapipe.tasks.python.vision", reason="MediaPipe Tasks is not installed")


def _mediapipe_scores(path, pixels):
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions

    options = vision.ImageClassifierOptions(
        base_options=BaseOptions(model_asset_path=str(path)), max_results=-1
    )
    with vision.ImageClassifier.create_from_options(options) as classifier:
        results = []
        for image in pixels:
            categories = classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=image))
            results.append(sorted(categories.classifications[0].categories, key=lambda c: c.index))
    return results


@pytest.mark.parametrize("variant", ["float32", "float16", "dynamic", "int8"])
def test_metadata_reads_back_with_labels_and_normalization(exported, variant):
    metadata = read_metadata(exported[variant].path.read_bytes())
    assert metadata.labels == TINY_LABELS
    assert metadata.display_names == DISPLAY_NAMES
    assert (metadata.mean, metadata.std) == (TINY_SPEC.mean, TINY_SPEC.std)


@pytest.mark.parametrize("variant", ["int8", "float32"])
def test_mediapipe_returns_our_names_and_the_litert_scores(exported, tiny_images, variant):
    path = exported[variant].path
    pixels = np.stack([load_image(image, TINY_SPEC) for image in tiny_images.values()])
    expected, _ = run_tflite(path, pixels, TINY_SPEC)
    # One output quantization step for uint8 scores; float inputs are normalized by MediaPipe itself.
    tolerance = 1 / 256 + 1e-6 if variant == "int8" else 1e-4
    for categories, scores in zip(_mediapipe_scores(path, pixels), expected):
        assert [c.category_name for c in categories] == list(TINY_LABELS)
        assert [c.display_name for c in categories] == list(DISPLAY_NAMES)
        np.testing.assert_allclose([c.score for c in categories], scores, atol=tolerance)


def test_mediapipe_ranks_the_solid_colours_as_trained(exported, tiny_images):
    pixels = np.stack([load_image(tiny_images[name], TINY_SPEC) for name in ("red", "green", "blue")])
    ranked = [
        max(categories, key=lambda c: c.score).category_name
        for categories in _mediapipe_scores(exported["int8"].path, pixels)
    ]
    assert ranked == list(TINY_LABELS)


def test_bad_labels_are_refused(exported):
    flatbuffer = exported["float32"].path.read_bytes()
    with pytest.raises(ValueError, match="display_names has 2 entries but labels has 3"):
        add_metadata(flatbuffer, labels=TINY_LABELS, input_spec=TINY_SPEC, name="x", display_names=("a", "b"))
    with pytest.raises(ValueError, match="single-line"):
        add_metadata(flatbuffer, labels=("a", "b\nc", "d"), input_spec=TINY_SPEC, name="x")


def test_a_model_without_metadata_is_reported(exported):
    with pytest.raises(ValueError, match="no TFLite metadata"):
        read_metadata(_strip_metadata(exported["float32"].path.read_bytes()))


def _strip_metadata(model: bytes) -> bytes:
    import flatbuffers
    from mediapipe.tasks.metadata import schema_py_generated as schema_fb

    tflite = schema_fb.ModelT.InitFromObj(schema_fb.Model.GetRootAsModel(model, 0))
    tflite.metadata = [m for m in tflite.metadata if m.name != b"TFLITE_METADATA"]
    builder = flatbuffers.Builder(0)
    builder.Finish(tflite.Pack(builder), b"TFL3")
    return bytes(builder.Output())


def test_a_file_exported_without_a_licence_says_where_to_find_it(exported):
    from edge.tasks import UNSTATED_LICENSE

    assert read_metadata(exported["float32"].path.read_bytes()).license == UNSTATED_LICENSE != ""


@pytest.mark.parametrize("task", ["ham10000", "msid"])
def test_the_shipped_files_carry_their_task_row_s_licence_and_names(task):
    from edge.bundle import DEFAULT_BUNDLE, load_bundle
    from edge.tasks import TASKS

    bundle = load_bundle(DEFAULT_BUNDLE.parent / task)
    row = TASKS[task]
    for variant in bundle.variants:
        metadata = read_metadata(bundle.path(variant).read_bytes())
        assert metadata.license == row.license
        assert metadata.display_names == tuple(row.class_info(code).display_name for code in metadata.labels)
