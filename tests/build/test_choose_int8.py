"""Which int8 file ships when the build has both a QAT and a post-training one."""

from __future__ import annotations

import pytest

from build.make.export import choose_int8
from converters.validate import ParityGate


def _report(agreement: float, delta: float) -> dict:
    return {
        "variant": "int8",
        "model": "model_int8.tflite",
        "n": 1000,
        "top1_agreement": agreement,
        "max_abs_diff": 0.5,
        "mean_abs_diff": 0.05,
        "mean_kl": 0.1,
        "balanced_accuracy_reference": 0.67,
        "balanced_accuracy_tflite": 0.67 + delta,
        "balanced_accuracy_delta": delta,
        "input_dtype": "uint8",
        "output_dtype": "uint8",
        "seconds": 1.0,
    }


GATE = ParityGate(min_top1_agreement=0.70, max_balanced_accuracy_drop=2.0)


def test_best_ships_the_file_that_passes_the_gate_even_with_lower_agreement():
    # Measured on the release: PTQ agreed more often but lost 5.5 points of balanced accuracy.
    reports = {"int8-qat": _report(0.721, +0.012), "int8-ptq": _report(0.759, -0.055)}
    assert choose_int8(reports, "best", GATE) == "qat"


def test_best_ships_the_higher_agreement_when_both_pass_or_both_fail():
    both_pass = {"int8-qat": _report(0.90, 0.0), "int8-ptq": _report(0.95, 0.0)}
    assert choose_int8(both_pass, "best", GATE) == "ptq"
    both_fail = {"int8-qat": _report(0.50, -0.1), "int8-ptq": _report(0.60, -0.1)}
    assert choose_int8(both_fail, "best", GATE) == "ptq"
    assert choose_int8({"int8-qat": _report(0.9, 0.0), "int8-ptq": _report(0.9, 0.0)}, "best", GATE) == "qat"


def test_a_named_source_ships_as_asked_and_a_missing_one_is_refused():
    reports = {"int8-ptq": _report(0.9, 0.0)}
    assert choose_int8(reports, "ptq", GATE) == "ptq"
    with pytest.raises(ValueError, match="no QAT int8 file"):
        choose_int8(reports, "qat", GATE)
