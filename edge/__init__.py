"""The on-device runtime: numpy, Pillow and a TFLite interpreter, never TensorFlow.

    >>> from edge import Classifier, DEFAULT_BUNDLE
    >>> Classifier(DEFAULT_BUNDLE).classify("lesion.jpg").top

Names are imported on first use, so ``import edge.preprocess`` stays as light as numpy and Pillow.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Classifier": "edge.classifier",
    "Prediction": "edge.classifier",
    "Category": "edge.classifier",
    "Bundle": "edge.bundle",
    "load_bundle": "edge.bundle",
    "DEFAULT_BUNDLE": "edge.bundle",
    "InputSpec": "edge.preprocess",
    "load_image": "edge.preprocess",
    "SkinlesionError": "edge.errors",
    "ImageError": "edge.errors",
    "BundleError": "edge.errors",
    "LabelsError": "edge.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'edge' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
