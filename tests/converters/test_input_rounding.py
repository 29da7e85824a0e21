"""The uint8 zero point that makes an int8 file round pixels as its QAT model did."""

import numpy as np
import pytest

from converters.input_rounding import matching_zero_points, qat_input_values, with_qat_input_rounding
from edge.preprocess import InputSpec
from tests.conftest import TINY_SPEC


def test_the_default_normalization_needs_zero_points_127_and_minus_1():
    # (p - 127.5) / 127.5 is half a level above level p - 128: fake quantization rounds it up, and
    # nudges the range to levels -127..128, so the int8 tensor's zero point moves to -1 with it.
    values = qat_input_values(TINY_SPEC)
    np.testing.assert_allclose(values, np.tile((np.arange(256) - 127) / 127.5, (3, 1)), atol=1e-5)
    assert matching_zero_points(TINY_SPEC, 1 / 127.5) == (127, -1)


def test_a_normalization_on_the_levels_keeps_its_zero_point():
    # (p - 128) / 127.5 lands on a level for every pixel: nothing to round, the converter's 128 is right.
    spec = InputSpec(height=32, width=32, mean=(128.0, 128.0, 128.0), std=(127.5, 127.5, 127.5))
    assert matching_zero_points(spec, 1 / 127.5) == (128, 0)


def test_channels_that_normalize_differently_have_no_single_zero_point():
    imagenet = InputSpec(height=32, width=32, mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4))
    assert matching_zero_points(imagenet, 0.0185) is None


@pytest.mark.slow
def test_a_float_input_file_is_left_unchanged(exported):
    data = exported["float16"].path.read_bytes()
    assert with_qat_input_rounding(data, TINY_SPEC) == data
