"""The quantization modes: named factories, checked arguments, JSON summaries."""

import json

import numpy as np
import pytest

from converters.quantization import QuantizationConfig


def test_factories_name_their_variant_and_io_types():
    assert QuantizationConfig.for_float32().variant == "float32"
    assert QuantizationConfig.for_float16().variant == "float16"
    assert QuantizationConfig.for_dynamic().variant == "dynamic"
    int8 = QuantizationConfig.for_int8([np.zeros((4, 4, 3), np.uint8)])
    assert (int8.variant, int8.io_type) == ("int8", "uint8")  # what MediaPipe Tasks accepts
    assert QuantizationConfig.for_int8(None, io_type="int8").io_type == "int8"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"variant": "int4"}, "variant must be one of"),
        ({"variant": "float16", "io_type": "uint8"}, "io_type for float16"),
        ({"variant": "int8", "io_type": "int16"}, "io_type for int8"),
        ({"variant": "dynamic", "representative_data": []}, "only used by the int8"),
        ({"variant": "int8", "calibration_steps": 0}, "calibration_steps"),
    ],
)
def test_bad_arguments_are_refused_with_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QuantizationConfig(**kwargs)


def test_a_one_shot_iterator_is_read_once_so_the_config_is_reusable():
    images = (np.full((4, 4, 3), i, np.uint8) for i in range(10))
    config = QuantizationConfig.for_int8(images, calibration_steps=3)
    assert len(config.representative_data) == 3
    assert len(list(config.representative_data)) == 3  # a second pass sees the same images


def test_to_dict_is_json_and_leaves_out_the_pixels():
    summary = QuantizationConfig.for_int8([np.zeros((4, 4, 3), np.uint8)]).to_dict()
    assert json.loads(json.dumps(summary)) == {
        "variant": "int8",
        "io_type": "uint8",
        "calibrated": True,
        "calibration_steps": 500,
    }


def test_every_variant_row_has_a_factory_and_every_factory_a_row():
    from converters.quantization import FACTORIES
    from edge.variants import VARIANTS

    assert set(FACTORIES) == {row.quantization for row in VARIANTS}
    for row in VARIANTS:
        assert FACTORIES[row.quantization] == getattr(QuantizationConfig, f"for_{row.quantization}")


def test_for_variant_builds_each_row_s_quantization():
    from converters.quantization import for_variant, needs_calibration

    pixels = [np.zeros((4, 4, 3), np.uint8)]
    assert for_variant("float16", pixels) == QuantizationConfig.for_float16()  # no calibration to use
    assert for_variant("int8-qat").variant == "int8" and for_variant("int8-qat").representative_data is None
    assert for_variant("int8-ptq", pixels).representative_data == pixels
    assert [needs_calibration(name) for name in ("int8", "int8-ptq", "dynamic")] == [True, True, False]
    with pytest.raises(ValueError, match="unknown variant 'int4'"):
        for_variant("int4")


def test_a_new_row_with_its_factory_is_all_a_variant_needs(monkeypatch):
    from converters import quantization
    from edge import variants

    row = variants.Variant(
        "int8-fp32io",
        "model_int8-fp32io.tflite",
        "int8 with float I/O",
        variants.ParityGate(0.98, 1.0),
        quantization="int8-fp32io",
    )
    monkeypatch.setattr(variants, "VARIANTS", (*variants.VARIANTS, row))
    monkeypatch.setitem(
        quantization.FACTORIES,
        "int8-fp32io",
        lambda pixels: QuantizationConfig.for_int8(pixels, io_type="float32"),
    )
    monkeypatch.setattr(quantization, "CALIBRATED", (*quantization.CALIBRATED, "int8-fp32io"))
    config = quantization.for_variant("int8-fp32io", [np.zeros((4, 4, 3), np.uint8)])
    assert (config.variant, config.io_type) == ("int8", "float32")
