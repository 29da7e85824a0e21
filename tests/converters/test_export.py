"""Export: every variant converts, runs with the configured I/O dtypes, and says the right class."""

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from converters.export import export_tflite, load_keras_model
from converters.input_rounding import pinned_input_range
from converters.quantization import QuantizationConfig
from converters.validate import run_tflite
from edge.preprocess import InputSpec, load_image, normalize
from tests.conftest import TINY_LABELS, TINY_SPEC

EXPECTED_IO = {
    "float32": ("float32", "float32"),
    "float16": ("float32", "float32"),
    "dynamic": ("float32", "float32"),
    "int8": ("uint8", "uint8"),
    "int8_io_int8": ("int8", "int8"),
}


def _solid_pixels(tiny_images):
    return np.stack([load_image(tiny_images[name], TINY_SPEC) for name in ("red", "green", "blue")])


@pytest.mark.parametrize("name", sorted(EXPECTED_IO))
def test_every_variant_runs_with_its_io_dtypes_and_ranks_the_right_class(exported, tiny_images, name):
    result = exported[name]
    assert result.path.is_file() and result.path.stat().st_size == result.bytes > 0
    assert (result.input_dtype, result.output_dtype) == EXPECTED_IO[name]
    if name.startswith("int8"):
        assert result.float_tensors == 0
    else:
        assert result.float_tensors > 0
    probabilities, io_types = run_tflite(result.path, _solid_pixels(tiny_images), TINY_SPEC)
    assert io_types == EXPECTED_IO[name]
    assert list(probabilities.argmax(axis=1)) == [0, 1, 2]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=0.02)
    assert result.seconds > 0


def test_uint8_input_takes_raw_pixels(exported):
    # Pixel p must dequantize to (p - 127.5) / 127.5 within a step, or MediaPipe's raw feed is off.
    result = exported["int8"]
    assert result.input_scale == pytest.approx(1 / 127.5, rel=1e-3)
    assert result.input_zero_point in (127, 128)


@pytest.mark.slow
def test_int8_from_a_qat_model_file(tmp_path, qat_model_path, tiny_images):
    config = QuantizationConfig.for_int8(None)  # a QAT model carries its own ranges
    result = export_tflite(
        qat_model_path, tmp_path / "model_int8.tflite", config, input_spec=TINY_SPEC, labels=TINY_LABELS
    )
    assert (result.input_dtype, result.output_dtype) == ("uint8", "uint8")
    tensors = Interpreter(model_path=str(result.path)).get_tensor_details()
    assert {np.dtype(t["dtype"]).name for t in tensors} <= {"uint8", "int8", "int32"}  # integer-only graph
    assert result.float_tensors == 0
    probabilities, _ = run_tflite(result.path, _solid_pixels(tiny_images), TINY_SPEC)
    assert list(probabilities.argmax(axis=1)) == [0, 1, 2]


def test_a_qat_model_is_not_exported_as_float(tmp_path, qat_model_path):
    with pytest.raises(ValueError, match="QAT model, which exports only as int8"):
        export_tflite(
            qat_model_path,
            tmp_path / "m.tflite",
            QuantizationConfig.for_float16(),
            input_spec=TINY_SPEC,
            labels=TINY_LABELS,
        )


def test_int8_from_a_float_model_needs_representative_data(tmp_path, tiny_keras_model):
    with pytest.raises(ValueError, match="needs representative data"):
        export_tflite(
            tiny_keras_model,
            tmp_path / "m.tflite",
            QuantizationConfig.for_int8(None),
            input_spec=TINY_SPEC,
            labels=TINY_LABELS,
        )


def test_mismatched_spec_or_labels_are_refused_and_the_old_file_is_kept(tmp_path, tiny_keras_model):
    target = tmp_path / "model_float32.tflite"
    target.write_bytes(b"previous good file")
    with pytest.raises(ValueError, match=r"inputs of shape \(32, 32, 3\), but input_spec says \(64, 64, 3\)"):
        export_tflite(
            tiny_keras_model,
            target,
            QuantizationConfig.for_float32(),
            input_spec=InputSpec(height=64, width=64),
            labels=TINY_LABELS,
        )
    with pytest.raises(ValueError, match="3 outputs but 2 labels"):
        export_tflite(
            tiny_keras_model,
            target,
            QuantizationConfig.for_float32(),
            input_spec=TINY_SPEC,
            labels=TINY_LABELS[:2],
        )
    assert target.read_bytes() == b"previous good file"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary files left


def test_bad_calibration_images_name_the_expected_shape(tmp_path, tiny_keras_model):
    config = QuantizationConfig.for_int8([np.zeros((16, 16, 3), np.uint8)])
    with pytest.raises(ValueError, match=r"uint8 of shape \(32, 32, 3\)"):
        export_tflite(
            tiny_keras_model, tmp_path / "m.tflite", config, input_spec=TINY_SPEC, labels=TINY_LABELS
        )
    assert not list(tmp_path.iterdir())


def test_missing_model_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.keras"):
        load_keras_model(tmp_path / "nowhere.keras")


@pytest.mark.slow
def test_qat_input_range_is_pinned_to_the_pixel_range_without_changing_the_model(tmp_path, qat_model_path):
    # Training images that never reach 0 or 255 would teach QAT a narrower input range; the exported
    # uint8 input must still take pixels as they are.
    model = load_keras_model(qat_model_path)
    layer = next(layer for layer in model.layers if type(layer).__name__ == "QuantizeLayer")
    low, high = (w for w in layer.weights if w.name.endswith(("_min:0", "_max:0")))
    low.assign(-0.5)
    high.assign(0.5)
    result = export_tflite(
        model,
        tmp_path / "model_int8.tflite",
        QuantizationConfig.for_int8(None),
        input_spec=TINY_SPEC,
        labels=TINY_LABELS,
    )
    assert result.input_scale == pytest.approx(1 / 127.5, rel=1e-3)
    assert result.input_zero_point in (127, 128)
    assert (float(low.numpy()), float(high.numpy())) == (-0.5, 0.5)


@pytest.mark.slow
def test_int8_from_a_qat_model_sees_every_pixel_at_the_qat_models_input_level(tmp_path, qat_model_path):
    # normalize(p) falls halfway between two input levels; the QAT model rounds it up, and the file
    # must feed the network that level, not the one below (every pixel a step darker, see input_rounding).
    from models.keras import keras

    result = export_tflite(
        qat_model_path,
        tmp_path / "model_int8.tflite",
        QuantizationConfig.for_int8(None),
        input_spec=TINY_SPEC,
        labels=TINY_LABELS,
    )
    ramp = np.resize(np.arange(256, dtype=np.uint8), (1, 32, 32, 3))
    interpreter = Interpreter(model_path=str(result.path), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], ramp)
    interpreter.invoke()
    quantize_op = next(op for op in interpreter._get_ops_details() if op["op_name"] == "QUANTIZE")
    tensor = interpreter.get_tensor_details()[quantize_op["outputs"][0]]
    scale, zero_point = tensor["quantization"]
    seen = (interpreter.get_tensor(tensor["index"]).astype(np.float32) - zero_point) * scale

    model = load_keras_model(qat_model_path)
    layer = next(layer for layer in model.layers if type(layer).__name__ == "QuantizeLayer")
    low, high = pinned_input_range(TINY_SPEC)  # as the export pins it
    for weight in layer.weights:
        if weight.name.endswith("_min:0"):
            weight.assign(low)
        elif weight.name.endswith("_max:0"):
            weight.assign(high)
    trained = keras.Model(model.input, layer.output).predict(normalize(ramp, TINY_SPEC), verbose=0)
    np.testing.assert_allclose(seen, trained, atol=1e-6)
    assert result.input_zero_point == 127
