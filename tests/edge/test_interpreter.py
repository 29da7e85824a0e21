"""Interpreter selection, fallback and delegate errors."""

from __future__ import annotations

import ctypes.util
import sys
import types

import numpy as np
import pytest

from edge.classifier import Classifier
from edge.errors import SkinlesionError
from edge.interpreter import TensorInfo, dequantize, find_runtime, open_interpreter, quantize, tensor_info
from tests.edge.conftest import LABELS, solid


def _block(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    """Makes ``import module`` raise ImportError, as if the package were not installed."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def _fake_tflite_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    package = types.ModuleType("tflite_runtime")
    module = types.ModuleType("tflite_runtime.interpreter")
    module.Interpreter = type("Interpreter", (), {})
    module.load_delegate = lambda library, options=None: None
    package.interpreter = module
    monkeypatch.setitem(sys.modules, "tflite_runtime", package)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", module)


def test_litert_is_preferred_when_installed():
    assert find_runtime().name == "ai_edge_litert"


def test_falls_back_to_tflite_runtime_without_litert(monkeypatch):
    _block(monkeypatch, "ai_edge_litert", "ai_edge_litert.interpreter")
    _fake_tflite_runtime(monkeypatch)
    runtime = find_runtime()
    assert runtime.name == "tflite_runtime"
    assert runtime.interpreter_class is sys.modules["tflite_runtime.interpreter"].Interpreter


def test_falls_back_to_tensorflow_and_reports_it(monkeypatch, tiny_models):
    reference = Classifier(tiny_models.float32, labels=LABELS).probabilities(solid("red"))
    _block(
        monkeypatch,
        "ai_edge_litert",
        "ai_edge_litert.interpreter",
        "tflite_runtime",
        "tflite_runtime.interpreter",
    )
    classifier = Classifier(tiny_models.float32, labels=LABELS)
    assert classifier.interpreter_name == "tensorflow.lite"
    np.testing.assert_allclose(classifier.probabilities(solid("red")), reference, atol=1e-5)


def test_no_runtime_says_what_to_install(monkeypatch):
    _block(
        monkeypatch,
        "ai_edge_litert",
        "ai_edge_litert.interpreter",
        "tflite_runtime",
        "tflite_runtime.interpreter",
        "tensorflow",
    )
    with pytest.raises(SkinlesionError, match="pip install ai-edge-litert"):
        find_runtime()


def test_missing_delegate_library_path_is_a_clear_error(tiny_models, tmp_path):
    with pytest.raises(SkinlesionError, match="does not exist"):
        Classifier(tiny_models.float32, labels=LABELS, delegate=str(tmp_path / "libnothere.so"))


def test_a_file_that_is_not_a_delegate_is_refused(tiny_models, tmp_path):
    fake = tmp_path / "libfake_delegate.so"
    fake.write_bytes(b"not a shared library")
    with pytest.raises(SkinlesionError, match="cannot load .*libfake_delegate.so"):
        Classifier(tiny_models.float32, labels=LABELS, delegate=str(fake))
    libc = ctypes.util.find_library("c")  # a real shared library that is not a delegate
    if libc:
        with pytest.raises(SkinlesionError, match="not a TFLite delegate"):
            Classifier(tiny_models.float32, labels=LABELS, delegate=libc)


def test_edgetpu_without_its_runtime_says_what_to_install(tiny_models):
    with pytest.raises(SkinlesionError, match="Edge TPU runtime"):
        Classifier(tiny_models.float32, labels=LABELS, delegate="edgetpu")


def test_quantize_round_trips_within_half_a_step():
    info = TensorInfo(shape=(4,), dtype=np.dtype(np.int8), scale=0.05, zero_point=-3)
    values = np.array([-5.0, -0.01, 0.5, 6.0])
    restored = dequantize(quantize(values, info), info)
    np.testing.assert_allclose(restored, values, atol=0.025 + 1e-9)
    assert quantize(np.array([100.0]), info)[0] == 127  # saturates instead of wrapping around


def test_quantize_saturates_at_both_ends_of_uint8():
    info = TensorInfo(shape=(5,), dtype=np.dtype(np.uint8), scale=1 / 127.5, zero_point=128)
    quantized = quantize(np.array([-5.0, -1.0, 0.0, 1.0, 5.0]), info)
    assert quantized.dtype == np.uint8
    assert quantized.tolist() == [0, 0, 128, 255, 255]
    np.testing.assert_allclose(dequantize(quantized, info)[1:4], [-128 / 127.5, 0.0, 127 / 127.5])


def test_a_float_tensor_dequantizes_to_itself():
    info = TensorInfo(shape=(2,), dtype=np.dtype(np.float32))
    values = np.array([0.25, 0.75], np.float32)
    assert not info.quantized
    np.testing.assert_array_equal(dequantize(values, info), values)


def test_open_interpreter_reads_a_path_or_bytes_alike(tiny_models):
    by_path = open_interpreter(tiny_models.int8)
    by_bytes = open_interpreter(tiny_models.int8.read_bytes())
    for interpreter in (by_path, by_bytes):
        interpreter.allocate_tensors()
    assert tensor_info(by_path.get_input_details()[0]) == tensor_info(by_bytes.get_input_details()[0])
    assert tensor_info(by_path.get_output_details()[0]).quantized
