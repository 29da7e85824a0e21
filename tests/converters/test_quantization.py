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


@pytest.mark.parametrize("kwargs, message", [
    ({"variant": "int4"}, "variant must be one of"),
    ({"variant": "float16", "io_type": "uint8"}, "io_type for float16"),
    ({"variant": "int8", "io_type": "int16"}, "io_type for int8"),
    ({"variant": "dynamic", "representative_data": []}, "only used by the int8"),
    ({"variant": "int8", "calibration_steps": 0}, "calibration_steps"),
])
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
    assert json.loads(json.dumps(summary)) == {"variant": "int8", "io_type": "uint8", "calibrated": True,
                                               "calibration_steps": 500}
